"""The `chirp-jobs` command line. The only module that imports click or exits."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from . import __version__
from .errors import EXIT_INVALID, EXIT_OK, ChirpJobsError
from .planning import iter_plan
from .reporting import iter_plan_table, plan_json_line
from .validation import load_job, validate_paths

if TYPE_CHECKING:
    from .runner import RunSummary

F = TypeVar("F", bound=Callable[..., Any])

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
    loaded = load_job(job)
    if output_format == "json":
        for planned in iter_plan(loaded):
            click.echo(plan_json_line(planned))
        return
    for line in iter_plan_table(iter_plan(loaded)):
        click.echo(line)
    click.echo(_plan_total(loaded.planned_count, len(loaded.calls)))
    click.echo("Dry run: nothing was sent.")


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
@click.option(
    "--run-id",
    "run_id_template",
    default=None,
    help="Run id; {job}, {date} and {time} are replaced. An invocation with the run "
    "id of an earlier one resumes it, placing only calls with no outcome yet. "
    "Default: a new run id each time.",
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="When resuming, place again the calls whose outcome is failed "
    "(never those whose outcome is unknown).",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1, max=100),
    default=5,
    show_default=True,
    help="Attempts per call, at most, for retried failures.",
)
@click.option(
    "--retry-budget",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Retries allowed in the whole run, so an outage does not cause a storm.",
)
@click.option(
    "--retry-on-status",
    "retry_statuses",
    type=int,
    multiple=True,
    metavar="STATUS",
    help="Also retry this 5xx status (repeatable). Risky: the API may have placed "
    "the call before failing, so a retry can ring the recipient twice.",
)
@click.option(
    "--fsync/--no-fsync",
    default=True,
    show_default=True,
    help="Force each results record to disk before going on, so a power loss "
    "loses none.",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds to wait for requests in flight after Ctrl-C or SIGTERM. "
    "Default: --timeout plus 2.",
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
    run_id_template: str | None,
    retry_failed: bool,
    max_attempts: int,
    retry_budget: int,
    retry_statuses: tuple[int, ...],
    fsync: bool,
    drain_timeout: float | None,
    quiet: bool,
) -> None:
    """Place the calls of JOB and append each outcome to the results file.

    The API key is read from the CHIRP_API_KEY environment variable only.
    Ctrl-C or SIGTERM stops sending, waits for requests in flight and exits
    130 or 143; run again with the same --run-id to finish.
    """
    from .run import (
        RunOptions,
        check_retry_statuses,
        execute_job,
        expand_run_id,
        results_path,
    )

    loaded = load_job(job)
    run_id = expand_run_id(run_id_template, loaded)
    options = RunOptions(
        results=results_path(results_template, loaded, run_id),
        base_url=base_url,
        api_key=os.environ.get("CHIRP_API_KEY"),
        sandbox=sandbox,
        timeout=timeout,
        rate=rate,
        concurrency=concurrency,
        run_id=run_id,
        retry_failed=retry_failed,
        max_attempts=max_attempts,
        retry_budget=retry_budget,
        retry_statuses=check_retry_statuses(retry_statuses),
        fsync=fsync,
        drain_seconds=drain_timeout,
    )
    if not quiet:
        for line in iter_plan_table(iter_plan(loaded)):
            click.echo(line)
        click.echo(_plan_total(loaded.planned_count, len(loaded.calls)))
        click.echo(_target_line(options.sandbox, base_url))
    summary = execute_job(loaded, options)
    if not quiet:
        click.echo(
            f"{summary.created} created, {summary.failed} failed, "
            f"{summary.unknown} unknown of {loaded.planned_count} planned calls "
            f"in run {run_id}; results in {options.results}"
            + (" (sandbox: no real calls were placed)" if sandbox else "")
        )
        if summary.earlier:
            click.echo(
                f"{summary.earlier} of them had an outcome from an earlier "
                "invocation of this run and were not sent again"
            )
    _warn_unfinished(summary, loaded.planned_count, run_id)
    sys.exit(summary.exit_code)


def _warn_unfinished(summary: RunSummary, planned: int, run_id: str) -> None:
    if summary.unknown:
        click.echo(
            f"warning: {summary.unknown} calls have an unknown outcome: they may have "
            "been placed; check them before placing them again",
            err=True,
        )
    if summary.stopped_by is not None:
        click.echo(
            f"warning: stopped by signal {summary.stopped_by} with "
            f"{planned - summary.total} planned calls not sent; run again with "
            f"--run-id {run_id} to place them",
            err=True,
        )


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
@click.option(
    "--rate-limit-per-second",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Enforce this many requests per second per key, with 429 and Retry-After.",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed of call ids and of which requests meet a fault; the same seed and "
    "plan give the same faults.",
)
@click.option(
    "--throttle-first",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Respond 429 to the first N requests of each plan key.",
)
@click.option(
    "--throttle-retry-after",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Retry-After of those 429 responses, in seconds.",
)
@click.option(
    "--server-error-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of POST /v1/calls that get 500, 502 or 503 (half of them after "
    "creating the call).",
)
@click.option(
    "--drop-after-create-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of POST /v1/calls that create the call, then close the connection "
    "without answering.",
)
@click.option(
    "--late-answer-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of POST /v1/calls that create the call, then respond after "
    "--late-answer-seconds.",
)
@click.option(
    "--late-answer-seconds",
    type=click.FloatRange(min=0),
    default=3.0,
    show_default=True,
    help="Delay of late responses, in seconds.",
)
@click.option(
    "--latency",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Delay added to every response, in seconds.",
)
@click.option(
    "--refuse-seconds",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Refuse connections for this many seconds after starting.",
)
@_reports_errors
def sandbox_command(
    host: str,
    port: int,
    assigned_numbers: tuple[str, ...],
    rate_limit: int,
    **faults: Any,
) -> None:
    """Serve a local Chirp-compatible API over HTTP until stopped (Ctrl-C).

    The fault options make it misbehave on purpose, to try how a run copes.
    """
    from .sandbox import Sandbox, SandboxConfig, SandboxServer

    config = SandboxConfig(
        assigned_numbers=frozenset(assigned_numbers) if assigned_numbers else None,
        rate_limit=rate_limit,
        latency_seconds=faults.pop("latency"),
        **faults,
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
