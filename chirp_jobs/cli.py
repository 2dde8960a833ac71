"""The `chirp-jobs` command line. The only module that imports click or exits.

Each command imports the modules it needs when it runs, so `--help` and `validate`
do not pay for httpx, the planner or the runner.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from .errors import EXIT_INVALID, EXIT_OK, ChirpJobsError

F = TypeVar("F", bound=Callable[..., Any])
# Lines written to stdout per write by `plan --format json`.
_ECHO_BATCH = 1000

_job_argument = click.argument(
    "job", type=click.Path(path_type=Path, dir_okay=False), metavar="JOB"
)


def _reports_errors(command: F) -> F:
    """Turn a `ChirpJobsError` into its message on stderr and its exit code."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ChirpJobsError as error:
            click.echo(_error_text(error), err=True)
            sys.exit(error.exit_code)

    wrapper.__name__ = command.__name__
    wrapper.__doc__ = command.__doc__
    return wrapper  # type: ignore[return-value]


def _error_text(error: ChirpJobsError) -> str:
    text = str(error)
    if "\n" in text or text.startswith(("/", ".")) or ":" in text.split(" ", 1)[0]:
        return text
    return f"error: {text}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="chirp-jobs")
@click.option(
    "-v", "--verbose", is_flag=True, help="Log each API request (INFO) to stderr."
)
def main(verbose: bool) -> None:
    """Validate, plan and place the calls described in job files."""
    import logging

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO with the full URL; chirp-jobs logs its own.
    logging.getLogger("httpx").setLevel(logging.WARNING)


@main.command()
@click.argument(
    "paths", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="PATH..."
)
def validate(paths: tuple[Path, ...]) -> None:
    """Check job files, and the job files in folders, against the schema.

    Prints each problem as path:line:column: field: message. Exits 0 when every
    file is valid and 2 otherwise.
    """
    from .validation import validate_paths

    count, problems = validate_paths(paths)
    for problem in problems:
        click.echo(str(problem))
    if count == 0:
        click.echo("error: no job files (*.yaml, *.yml, *.toml) found", err=True)
        sys.exit(EXIT_INVALID)
    if problems:
        files = len({problem.path for problem in problems})
        click.echo(
            f"{len(problems)} problems in {files} of {count} job files", err=True
        )
        sys.exit(EXIT_INVALID)
    click.echo(f"{count} job files valid")


@main.command()
@_job_argument
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people; json prints one JSON object per planned call.",
)
@_reports_errors
def plan(job: Path, output_format: str) -> None:
    """Show the exact requests a run of JOB would send. Sends nothing."""
    from .planning import iter_plan
    from .reporting import iter_plan_json, iter_plan_table
    from .validation import load_job

    loaded = load_job(job)
    if output_format == "json":
        _echo_lines(iter_plan_json(iter_plan(loaded)))
        return
    _echo_lines(iter_plan_table(iter_plan(loaded)))
    click.echo(_plan_total(loaded.planned_count, len(loaded.calls)))
    click.echo("Dry run: nothing was sent.")


def _echo_lines(lines: Iterable[str]) -> None:
    # One echo per batch of lines, because each click.echo call checks the stream
    # and flushes it, which cost more than encoding a planned call.
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) == _ECHO_BATCH:
            click.echo("\n".join(batch))
            batch.clear()
    if batch:
        click.echo("\n".join(batch))


def _plan_total(planned: int, calls: int) -> str:
    planned_noun = "planned call" if planned == 1 else "planned calls"
    entry_noun = "entry" if calls == 1 else "entries"
    return f"{planned:,} {planned_noun} from {calls:,} {entry_noun} in `calls`"


@main.command()
@_job_argument
@click.option(
    "--results",
    "results_template",
    default="chirp-results/{job}.jsonl",
    show_default=True,
    help="Results file (JSON lines, appended). {job}, {date}, {time} and {run} are "
    "replaced by the job name, the local date and time, and the run id.",
)
@click.option(
    "--sandbox",
    is_flag=True,
    help="Send to a sandbox inside this process: no network, no real calls.",
)
@click.option(
    "--base-url",
    envvar="CHIRP_BASE_URL",
    default="https://api.buildwithchirp.com",
    show_default=True,
    help="Chirp API base URL (env CHIRP_BASE_URL).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Timeout of each request, in seconds.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.01),
    default=2.0,
    show_default=True,
    help="Requests started per second, at most.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=64),
    default=4,
    show_default=True,
    help="Requests in flight at once, at most.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print no plan and no summary.")
@_reports_errors
def run(
    job: Path,
    results_template: str,
    sandbox: bool,
    base_url: str,
    timeout: float,
    rate: float,
    concurrency: int,
    quiet: bool,
) -> None:
    """Place the calls of JOB and append each outcome to the results file.

    The API key is read from the CHIRP_API_KEY environment variable only.
    """
    from .planning import iter_plan
    from .reporting import iter_plan_table
    from .run import RunOptions, execute_job, new_run_id, results_path
    from .validation import load_job

    loaded = load_job(job)
    run_id = new_run_id()
    options = RunOptions(
        results=results_path(results_template, loaded, run_id),
        base_url=base_url,
        api_key=os.environ.get("CHIRP_API_KEY"),
        sandbox=sandbox,
        timeout=timeout,
        rate=rate,
        concurrency=concurrency,
        run_id=run_id,
    )
    if not quiet:
        _echo_lines(iter_plan_table(iter_plan(loaded)))
        click.echo(_plan_total(loaded.planned_count, len(loaded.calls)))
        click.echo(_target_line(options.sandbox, base_url))
    summary = execute_job(loaded, options)
    if not quiet:
        click.echo(
            f"{summary.created} created, {summary.failed} failed, "
            f"{summary.unknown} unknown of {summary.total} planned calls; "
            f"results in {options.results}"
            + (" (sandbox: no real calls were placed)" if sandbox else "")
        )
    if summary.unknown:
        click.echo(
            f"warning: {summary.unknown} calls have an unknown outcome: they may have "
            "been placed; check them before placing them again",
            err=True,
        )
    sys.exit(summary.exit_code)


def _target_line(sandbox: bool, base_url: str) -> str:
    if sandbox:
        return "Target: the built-in sandbox (in-process, no network, no real calls)"
    return f"Target: {base_url} (real calls)"


@main.command("sandbox")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8787,
    show_default=True,
    help="TCP port to listen on; 0 picks a free one.",
)
@click.option(
    "--assigned-number",
    "assigned_numbers",
    multiple=True,
    help="A number assigned to the app (repeatable); default: any number is.",
)
@click.option(
    "--rate-limit",
    type=click.IntRange(min=1),
    default=120,
    show_default=True,
    help="Requests per minute per key, reported in X-RateLimit-* headers.",
)
@click.option(
    "--enforce-rate-limit",
    is_flag=True,
    help="Respond 429 with Retry-After once a key uses up its rate limit.",
)
def sandbox_command(
    host: str,
    port: int,
    assigned_numbers: tuple[str, ...],
    rate_limit: int,
    enforce_rate_limit: bool,
) -> None:
    """Serve a local Chirp-compatible API over HTTP until stopped (Ctrl-C)."""
    from .sandbox import Sandbox, SandboxConfig, SandboxServer

    config = SandboxConfig(
        assigned_numbers=frozenset(assigned_numbers) if assigned_numbers else None,
        rate_limit=rate_limit,
        enforce_rate_limit=enforce_rate_limit,
    )
    try:
        server = SandboxServer(Sandbox(config), host, port)
    except OSError as error:
        click.echo(f"error: cannot listen on {host}:{port}: {error.strerror}", err=True)
        sys.exit(EXIT_INVALID)
    click.echo(f"Sandbox listening on {server.url} (no real calls are placed)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.exit(EXIT_OK)


@main.command()
def schema() -> None:
    """Print the JSON Schema of job files."""
    from .schema import schema_text

    click.echo(schema_text(), nl=False)
