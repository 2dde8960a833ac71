"""The `chirp-jobs` command line. The only module that imports click or exits.

Each command imports the modules it needs when it runs, so `--help` and `validate`
do not pay for httpx, the planner or the runner.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from . import __version__
from .errors import EXIT_INVALID, EXIT_OK, ChirpJobsError

if TYPE_CHECKING:
    from .jobs import Job
    from .plan_sources import PlanSource
    from .planning import PlannedCall
    from .run import RunOptions
    from .runner import RunSummary
    from .sharding import Shard

F = TypeVar("F", bound=Callable[..., Any])
# The log formats of chirp_jobs.logs, named here so `--help` need not import it.
LOG_FORMATS = ("text", "json")
# Lines written to stdout per write by `plan` and `run`.
_ECHO_BATCH = 1000

# Bounds of time and rate options: an hour per request or wait, and far more
# requests a second than any API allows.
MAX_SECONDS = 3600.0
MAX_RATE = 1_000_000.0


class FiniteFloat(click.FloatRange):
    """A float range that also rejects nan and inf, which compare false to bounds."""

    name = "float"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


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
    from .logs import redact

    text = redact(str(error))
    if "\n" in text or text.startswith(("/", ".")) or ":" in text.split(" ", 1)[0]:
        return text
    return f"error: {text}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="chirp-jobs")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log each API request (INFO) to stderr; -vv adds debug output.",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Log errors only, and print nothing on stdout unless asked.",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="text",
    envvar="CHIRP_LOG_FORMAT",
    show_default=True,
    help="text for people; json prints one JSON object per log line "
    "(env CHIRP_LOG_FORMAT).",
)
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool, log_format: str) -> None:
    """Validate, plan and place the calls described in job files."""
    # Imported here, not at the top, because `--help` never gets this far and
    # logging and json added about 13 ms to its start-up of about 100 ms.
    from .logs import NORMAL, QUIET, add_secret, configure_logging

    verbosity = QUIET if quiet else NORMAL + verbose
    configure_logging(verbosity, log_format)
    add_secret(os.environ.get("CHIRP_API_KEY", ""))
    ctx.obj = {"quiet": quiet}


@main.command()
@click.argument(
    "paths", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="PATH..."
)
def validate(paths: tuple[Path, ...]) -> None:
    """Check job files, and the job files in folders, against the schema.

    Prints each problem as path:line:column: field: message, at most 50 per
    file. Exits 0 when every file is valid and 2 otherwise.
    """
    from .validation import validate_paths

    count, errors = validate_paths(paths)
    for error in errors:
        click.echo(str(error))
    if count == 0:
        click.echo("error: no job files (*.yaml, *.yml, *.toml) found", err=True)
        sys.exit(EXIT_INVALID)
    if errors:
        problems = _count(sum(len(error.problems) for error in errors), "problem")
        # Checking stopped early in at least one file, so the total is not known.
        if any(error.more for error in errors):
            problems = f"more than {problems}"
        click.echo(
            f"{problems} in {len(errors)} of {_count(count, 'job file')}", err=True
        )
        sys.exit(EXIT_INVALID)
    click.echo(f"{_count(count, 'job file')} valid")


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"


def _format_option(json_help: str) -> Callable[[F], F]:
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help=f"table for people; {json_help}",
    )


_shard_option = click.option(
    "--shard",
    "shard_text",
    envvar="CHIRP_SHARD",
    metavar="I/N",
    help="Only part I of N (0-based) of the plan, split by key; auto/N takes I "
    "from JOB_COMPLETION_INDEX (env CHIRP_SHARD).",
)


@main.command()
@_job_argument
@_format_option("json prints one JSON object per planned call.")
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="PLAN.json",
    help="Also save the plan, with a fingerprint of its inputs, for "
    "`chirp-jobs run PLAN.json`.",
)
@_shard_option
@_reports_errors
def plan(
    job: Path, output_format: str, output: Path | None, shard_text: str | None
) -> None:
    """Show the exact requests a run of JOB would send. Sends nothing."""
    from .planning import iter_plan
    from .reporting import iter_plan_json
    from .saved_plans import write_plan
    from .sharding import parse_shard, select_shard
    from .validation import load_job

    _reject_empty_environment()
    shard = parse_shard(shard_text) if shard_text is not None else None
    loaded = load_job(job)
    if output is not None:
        write_plan(job, output, loaded, shard)
    planned = select_shard(iter_plan(loaded), shard)
    if output_format == "json":
        _echo_lines(iter_plan_json(planned))
        return
    _echo_plan(loaded, planned, shard)
    if output is not None:
        click.echo(f"Plan saved to {output}; run it with `chirp-jobs run {output}`.")
    click.echo("Dry run: nothing was sent.")


def _echo_plan(job: Job, planned: Iterable[PlannedCall], shard: Shard | None) -> None:
    from .reporting import PlanTotals, iter_plan_table

    totals = PlanTotals()
    _echo_lines(iter_plan_table(totals.counted(planned)))
    if shard is None:
        click.echo(_plan_total(totals.calls, len(job.calls)))
    else:
        click.echo(
            f"{totals.calls:,} planned calls in shard {shard} "
            f"of {job.planned_count:,} in the job"
        )
    for line in totals.lines():
        click.echo(line)


def _reject_empty_environment() -> None:
    """Raise `ConfigError` for a CHIRP_* variable that is set but empty.

    click reads an empty variable as unset and falls back to the default, so an
    empty CHIRP_SHARD would place every call on every host, and an empty
    CHIRP_BASE_URL would send to the production API.
    """
    from .errors import ConfigError

    for name in ("CHIRP_SHARD", "CHIRP_BASE_URL", "CHIRP_RESULTS"):
        if os.environ.get(name) == "":
            raise ConfigError(f"{name} is set but empty; give it a value or unset it")


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
@click.argument(
    "job", type=click.Path(path_type=Path, dir_okay=False), metavar="JOB|PLAN.json"
)
@click.option(
    "--results",
    "results_template",
    envvar="CHIRP_RESULTS",
    help="Results file (JSON lines, appended; env CHIRP_RESULTS; default "
    "chirp-results/{job}.jsonl). {job}, {date}, {time}, {run} and {shard} are "
    "replaced by the job name, the local date and time, the run id and the shard.",
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
    type=FiniteFloat(min=0.1, max=MAX_SECONDS),
    envvar="CHIRP_TIMEOUT",
    help="Timeout of each request, in seconds (env CHIRP_TIMEOUT; default 10).",
)
@click.option(
    "--rate",
    type=FiniteFloat(min=0.01, max=MAX_RATE),
    envvar="CHIRP_RATE",
    help="Requests started per second, at most (env CHIRP_RATE). Default: 2, "
    "then 98% of the X-RateLimit-Limit the API reports.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=64),
    envvar="CHIRP_CONCURRENCY",
    help="Requests in flight at once, at most (env CHIRP_CONCURRENCY; default 4).",
)
@_shard_option
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
    type=FiniteFloat(min=0, max=MAX_SECONDS),
    default=None,
    help="Seconds to wait for requests in flight after Ctrl-C or SIGTERM. "
    "Default: --timeout plus 2.",
)
@click.option(
    "-q", "--quiet", is_flag=True, help="Print no plan, summary or progress bar."
)
@click.option(
    "--print",
    "print_always",
    is_flag=True,
    help="Print the plan and the summary even when stdout is not a terminal.",
)
@click.pass_context
@_reports_errors
def run(
    ctx: click.Context,
    job: Path,
    results_template: str | None,
    sandbox: bool,
    base_url: str,
    timeout: float | None,
    rate: float | None,
    concurrency: int | None,
    shard_text: str | None,
    run_id_template: str | None,
    retry_failed: bool,
    max_attempts: int,
    retry_budget: int,
    retry_statuses: tuple[int, ...],
    fsync: bool,
    drain_timeout: float | None,
    quiet: bool,
    print_always: bool,
) -> None:
    """Place the calls of JOB, or of a saved plan, and record each outcome.

    On a terminal it prints the plan, a progress bar and a summary. Otherwise,
    as under cron, it prints nothing on success unless --print is given, and
    reports failures on stderr with a non-zero exit. The API key is read from
    the CHIRP_API_KEY environment variable only. Ctrl-C or SIGTERM stops
    sending, waits for requests in flight and exits 130 or 143; run again with
    the same --run-id to finish.
    """
    from .plan_sources import open_plan_source
    from .progress import RunWatcher
    from .run import check_retry_statuses, check_target, execute_job
    from .sharding import check_unsharded, parse_shard

    _reject_empty_environment()
    shard = parse_shard(shard_text) if shard_text is not None else None
    source = open_plan_source(job, shard)
    if source.shard is None:
        check_unsharded()
    options = _run_options(
        source,
        results_template,
        base_url,
        sandbox,
        timeout,
        rate,
        concurrency,
        run_id_template,
    )
    options = _with_reliability(
        options,
        retry_failed=retry_failed,
        max_attempts=max_attempts,
        retry_budget=retry_budget,
        retry_statuses=check_retry_statuses(retry_statuses),
        fsync=fsync,
        drain_seconds=drain_timeout,
    )
    # A missing key or a bad URL is reported before the plan is printed, so the
    # output never reads as if a run had started.
    check_target(options)
    silent = quiet or ctx.obj["quiet"]
    show = not silent and (print_always or _is_terminal(sys.stdout))
    if show:
        _echo_plan(source.job, source.calls(), source.shard)
        click.echo(_target_line(options))
    watcher = RunWatcher.for_stream(source.count, sys.stderr, enabled=not silent)
    try:
        summary = execute_job(source.job, options, on_record=watcher, plan=source.calls)
    finally:
        watcher.close()
    planned = source.count() if summary.stopped_by is not None else summary.total
    _echo_summary(summary, options, show, planned)
    _warn_stopped(summary, planned, options.run_id)
    sys.exit(summary.exit_code)


def _run_options(
    source: PlanSource,
    results_template: str | None,
    base_url: str,
    sandbox: bool,
    timeout: float | None,
    rate: float | None,
    concurrency: int | None,
    run_id_template: str | None,
) -> RunOptions:
    from .run import RunOptions, expand_run_id, results_path
    from .settings import resolve_results_template, resolve_setting

    job = source.job
    run_id = expand_run_id(run_id_template, job)
    template = resolve_results_template(
        results_template, job, source.job_path, source.shard, sandbox
    )
    return RunOptions(
        results=results_path(template, job, run_id),
        base_url=base_url,
        api_key=os.environ.get("CHIRP_API_KEY"),
        sandbox=sandbox,
        timeout=resolve_setting("timeout", timeout, job),
        rate=resolve_setting("rate", rate, job),
        # A rate the user chose is a ceiling; the default follows the API's limit.
        follow_rate_limit=rate is None and "rate" not in job.settings,
        concurrency=resolve_setting("concurrency", concurrency, job),
        run_id=run_id,
    )


def _with_reliability(options: RunOptions, **settings: Any) -> RunOptions:
    """Return `options` with the retry, fsync and stop settings of `run` set."""
    from dataclasses import replace

    return replace(options, **settings)


def _warn_stopped(summary: RunSummary, planned: int, run_id: str) -> None:
    if summary.stopped_by is None:
        return
    click.echo(
        f"warning: stopped by signal {summary.stopped_by} with "
        f"{planned - summary.total} planned calls not sent; run again with "
        f"--run-id {run_id} to place them",
        err=True,
    )


def _echo_summary(
    summary: RunSummary, options: RunOptions, show: bool, planned: int
) -> None:
    line = _summary_line(summary, planned, options.results, options.sandbox)
    if show:
        click.echo(line)
        if summary.earlier:
            click.echo(
                f"{summary.earlier} of them had an outcome from an earlier "
                f"invocation of run {options.run_id} and were not sent again"
            )
    elif summary.exit_code:
        # A stop alone is not an error, and the warning printed next lists what
        # was not sent.
        level = "error" if summary.failed or summary.unknown else "warning"
        click.echo(f"{level}: {line}", err=True)
    if summary.unknown:
        click.echo(f"warning: {_unknown_warning(summary.unknown)}", err=True)


def _unknown_warning(count: int) -> str:
    if count == 1:
        return (
            "1 call has an unknown outcome: it may have been placed; check it "
            "before placing it again"
        )
    return (
        f"{count} calls have an unknown outcome: they may have been placed; check "
        "them before placing them again"
    )


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _summary_line(
    summary: RunSummary, planned: int, results: Path, sandbox: bool
) -> str:
    noun = "planned call" if planned == 1 else "planned calls"
    return (
        f"{summary.created} created, {summary.failed} failed, "
        f"{summary.unknown} unknown of {planned} {noun}; "
        f"results in {results}"
        + (" (sandbox: no real calls were placed)" if sandbox else "")
    )


def _target_line(options: RunOptions) -> str:
    if options.sandbox:
        return "Target: the built-in sandbox (in-process, no network, no real calls)"
    if options.key_mode == "test":
        # What the Chirp API does with calls made with a test key is not documented.
        return (
            f"Target: {options.base_url} with a test key (sk_test_app_...); "
            "test-mode calls may still ring"
        )
    return f"Target: {options.base_url} with a live key: real, billed calls"


@main.command()
@click.argument(
    "results_files",
    nargs=-1,
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="RESULTS...",
)
@_format_option("json prints the report as one JSON object.")
@click.option(
    "--refresh",
    is_flag=True,
    help="First fetch the current state of each created call (GET /v1/calls/{id}) "
    "and append it to its results file. Needs CHIRP_API_KEY.",
)
@click.option(
    "--base-url",
    envvar="CHIRP_BASE_URL",
    default="https://api.buildwithchirp.com",
    show_default=True,
    help="Chirp API base URL for --refresh; only calls created through it are "
    "fetched (env CHIRP_BASE_URL).",
)
@click.option(
    "--rate",
    type=FiniteFloat(min=0.01, max=MAX_RATE),
    envvar="CHIRP_RATE",
    default=2.0,
    show_default=True,
    help="Requests started per second by --refresh, at most (env CHIRP_RATE).",
)
@click.option(
    "--timeout",
    type=FiniteFloat(min=0.1, max=MAX_SECONDS),
    envvar="CHIRP_TIMEOUT",
    default=10.0,
    show_default=True,
    help="Timeout of each --refresh request, in seconds (env CHIRP_TIMEOUT).",
)
@_reports_errors
def report(
    results_files: tuple[Path, ...],
    output_format: str,
    refresh: bool,
    base_url: str,
    rate: float,
    timeout: float,
) -> None:
    """Summarise results files, merged: outcomes, call states, failures, unknowns.

    Give the results files of every shard of a job to see the job as a whole.
    """
    from .report import build_report, iter_report_table, read_results_files

    results = read_results_files(results_files)
    if refresh:
        _refresh(results, base_url, rate, timeout)
    summary = build_report(results)
    if output_format == "json":
        import json

        click.echo(json.dumps(summary, ensure_ascii=False))
        return
    for line in iter_report_table(summary):
        click.echo(line)


def _refresh(results: Any, base_url: str, rate: float, timeout: float) -> None:
    from .client import build_client
    from .refresh import refresh_states
    from .run import check_api_key, check_base_url

    api_key = check_api_key(os.environ.get("CHIRP_API_KEY"))
    target = check_base_url(base_url)
    with build_client(target, api_key, timeout) as client:
        counts = refresh_states(results, client, target, rate)
    if counts.other_target:
        click.echo(
            f"note: {counts.other_target} created calls were made through another "
            f"target than {target} and were not fetched",
            err=True,
        )


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
    type=FiniteFloat(min=0, min_open=True),
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
    type=FiniteFloat(0, 1),
    default=0.0,
    show_default=True,
    help="Share of POST /v1/calls that get 500, 502 or 503 (half of them after "
    "creating the call).",
)
@click.option(
    "--drop-after-create-rate",
    type=FiniteFloat(0, 1),
    default=0.0,
    show_default=True,
    help="Share of POST /v1/calls that create the call, then close the connection "
    "without answering.",
)
@click.option(
    "--late-answer-rate",
    type=FiniteFloat(0, 1),
    default=0.0,
    show_default=True,
    help="Share of POST /v1/calls that create the call, then respond after "
    "--late-answer-seconds.",
)
@click.option(
    "--late-answer-seconds",
    type=FiniteFloat(min=0),
    default=3.0,
    show_default=True,
    help="Delay of late responses, in seconds.",
)
@click.option(
    "--latency",
    type=FiniteFloat(min=0),
    default=0.0,
    show_default=True,
    help="Delay added to every response, in seconds.",
)
@click.option(
    "--refuse-seconds",
    type=FiniteFloat(min=0),
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
