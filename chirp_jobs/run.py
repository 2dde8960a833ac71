"""The `run` entry point: settings in, a finished run's summary out.

A run is identified by its run id. An invocation with the run id of an earlier one
resumes it: calls with an outcome are skipped, calls that were in flight when the
earlier invocation died are recorded `unknown`, and only the rest are placed.
"""

from __future__ import annotations

import logging
import re
import secrets
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import httpx

from .client import SANDBOX_BASE_URL, SandboxTransport, build_client
from .errors import ConfigError, PlanChangedError, TargetChangedError
from .jobs import Job
from .loading import JOB_FILE_SUFFIXES
from .planning import PlannedCall, iter_plan, spaced_series
from .results import (
    FAILED,
    ResultsWriter,
    RunState,
    canonical_target,
    interrupted_record,
    load_run_state,
    parse_timestamp,
)
from .runner import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RATE,
    DEFAULT_RETRY_BUDGET,
    DRAIN_MARGIN_SECONDS,
    RecordListener,
    Runner,
    RunSettings,
    RunSummary,
)
from .sandbox import Sandbox
from .templates import expand_template

API_KEY_VARIABLE = "CHIRP_API_KEY"
SANDBOX_TARGET = "sandbox"
# A key the in-process sandbox accepts; it is a test key, so ids read call_test_...
SANDBOX_API_KEY = "sk_test_app_sandbox"
DEFAULT_RESULTS = "chirp-results/{job}.jsonl"
# `run --sandbox` keeps its results apart from real runs unless a path is given.
SANDBOX_RESULTS_SUFFIX = ".sandbox"
# Printable ASCII only: httpx cannot send anything else in a header, and would
# raise with a traceback once the run had started.
_APP_KEY = re.compile(r"sk_(?:live|test)_app_[!-~]+")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_IN_FLIGHT_AT_CRASH = (
    "an earlier invocation of this run stopped while this request was in flight; "
    "the call may have been placed"
)

logger = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """Settings of one `chirp-jobs run`. `timeout` is in seconds.

    An empty `run_id` starts a new run. `retry_failed` re-places the calls an
    earlier invocation of the run recorded as `failed`. `retry_statuses` are the
    5xx statuses retried although the call may have been placed. `fsync` forces
    each record to disk before the next step. `drain_seconds` is how long a stop
    waits for requests in flight; None means the timeout plus a margin.
    """

    results: Path
    base_url: str
    api_key: str | None
    sandbox: bool = False
    timeout: float = 10.0
    rate: float = DEFAULT_RATE
    concurrency: int = DEFAULT_CONCURRENCY
    run_id: str = ""
    retry_failed: bool = False
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    retry_budget: int = DEFAULT_RETRY_BUDGET
    retry_statuses: frozenset[int] = field(default_factory=frozenset)
    fsync: bool = True
    drain_seconds: float | None = None
    follow_rate_limit: bool = False

    @property
    def target(self) -> str:
        return SANDBOX_TARGET if self.sandbox else canonical_target(self.base_url)

    @property
    def key_mode(self) -> str:
        if self.sandbox:
            return SANDBOX_TARGET
        if self.api_key and self.api_key.startswith("sk_test_"):
            return "test"
        return "live"


def check_api_key(api_key: str | None) -> str:
    """Return the key if it is an app key, else raise `ConfigError` without it."""
    if not api_key:
        raise ConfigError(
            f"missing API key: set the {API_KEY_VARIABLE} environment variable to an "
            "app key (sk_live_app_... or sk_test_app_...), or pass --sandbox to try "
            "the job against the built-in sandbox"
        )
    if api_key.startswith("sk_admin_"):
        raise ConfigError(
            f"{API_KEY_VARIABLE} contains an admin key, which the calls endpoint "
            "rejects; use an app key (sk_live_app_... or sk_test_app_...)"
        )
    if not _APP_KEY.fullmatch(api_key):
        raise ConfigError(
            f"{API_KEY_VARIABLE} does not look like a Chirp app key: app keys start "
            "with sk_live_app_ or sk_test_app_"
        )
    return api_key


def check_base_url(base_url: str) -> str:
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as error:
        raise ConfigError(f"invalid base URL {base_url!r}: {error}") from None
    if url.userinfo:
        # Never echo it: the part before @ may be a key.
        raise ConfigError(
            "invalid base URL: it contains a user name or password; the key goes in "
            "CHIRP_API_KEY, and the URL needs only the scheme and host"
        )
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(
            f"invalid base URL {base_url!r}: use http:// or https:// and a host name"
        )
    return base_url.rstrip("/")


def check_target(options: RunOptions) -> None:
    """Raise `ConfigError` now if the key or URL would stop the run before sending."""
    if not options.sandbox:
        check_api_key(options.api_key)
        check_base_url(options.base_url)


def new_run_id() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def expand_run_id(template: str | None, job: Job) -> str:
    """Return a new run id, or `template` with `{job}`, `{date}`, `{time}` replaced.

    Raises `ConfigError` for an unknown placeholder or a character outside
    letters, digits and `._:-`, since the run id is sent as metadata and compared
    across invocations.
    """
    if not template:
        return new_run_id()
    run_id = expand_template(template, datetime.now().astimezone(), job.name)
    if not _RUN_ID.fullmatch(run_id):
        raise ConfigError(
            f"invalid run id {run_id!r}: use 1 to 128 letters, digits, '.', '_', ':' "
            "or '-', starting with a letter or digit"
        )
    return run_id


def check_retry_statuses(statuses: Iterable[int]) -> frozenset[int]:
    """Return the statuses if each is a 5xx, else raise `ConfigError`."""
    chosen = frozenset(statuses)
    for status in sorted(chosen):
        if not 500 <= status <= 599:
            raise ConfigError(
                f"invalid retry status {status}: only 5xx statuses can be retried; "
                "429 and connection failures are retried anyway"
            )
    return chosen


def results_path(template: str, job: Job, run_id: str) -> Path:
    """Return the results file of a run, or raise `ConfigError` for a bad path."""
    now = datetime.now().astimezone()
    text = expand_template(template, now, job.name, run_id)
    path = Path(text)
    if not text.strip() or not path.name or path.name in (".", "..") or path.is_dir():
        raise ConfigError(
            f"invalid results file {text!r}: name a file, such as "
            "chirp-results/{job}.jsonl"
        )
    if path.suffix.lower() in JOB_FILE_SUFFIXES:
        raise ConfigError(
            f"invalid results file {text!r}: it ends like a job file; results are "
            "JSON lines, such as chirp-results/{job}.jsonl"
        )
    return path


def execute_job(
    job: Job,
    options: RunOptions,
    transport: httpx.BaseTransport | None = None,
    on_record: RecordListener | None = None,
    plan: Callable[[], Iterable[PlannedCall]] | None = None,
) -> RunSummary:
    """Check the settings, then send the job's plan and write its results.

    `plan` returns the plan to run in place of the job's whole plan, for a saved
    plan or one shard. It is called once more when a resume checks the plan. Raises
    `ConfigError` before anything is sent when the key or URL is unusable, and
    `ResultsLockedError` when another process writes the results file. SIGINT and
    SIGTERM stop the run (see `Runner.stop`) while it executes in the main thread.
    """
    if options.sandbox:
        api_key = SANDBOX_API_KEY
        base_url = SANDBOX_BASE_URL
        transport = transport or SandboxTransport(Sandbox())
    else:
        api_key = check_api_key(options.api_key)
        base_url = check_base_url(options.base_url)
    settings = _run_settings(job, options)
    client = build_client(
        base_url,
        api_key,
        options.timeout,
        transport=transport,
        max_connections=options.concurrency,
    )
    with client, ResultsWriter(options.results, fsync=options.fsync) as writer:
        state = load_run_state(
            options.results,
            settings.run_id,
            settings.target,
            settings.key_mode,
            spaced_series(job),
        )
        make_plan = plan or (lambda: iter_plan(job))
        _check_same_plan(state, make_plan(), options.results)
        _check_other_targets(state, settings, options.results)
        summary = RunSummary()
        _record_in_flight(state, writer, on_record)
        settings.elapsed_seconds = _elapsed_since(state.first_sent_at)
        runner = Runner(
            client,
            writer,
            settings,
            on_record=on_record,
            summary=summary,
            earlier_sends=_seconds_since(state.last_sent),
        )
        unfinished = _unfinished(make_plan(), state, options.retry_failed, summary)
        with _stop_on_signals(runner):
            return runner.execute(unfinished)


def _run_settings(job: Job, options: RunOptions) -> RunSettings:
    drain = options.drain_seconds
    if drain is None:
        drain = options.timeout + DRAIN_MARGIN_SECONDS
    return RunSettings(
        job=job.name,
        run_id=options.run_id or new_run_id(),
        target=options.target,
        key_mode=options.key_mode,
        follow_rate_limit=options.follow_rate_limit,
        rate=options.rate,
        concurrency=options.concurrency,
        max_attempts=options.max_attempts,
        retry_budget=options.retry_budget,
        retry_statuses=options.retry_statuses,
        drain_seconds=drain,
    )


def _check_other_targets(state: RunState, settings: RunSettings, results: Path) -> None:
    """Reject a live run whose run id placed live calls through another URL.

    Records of a sandbox or a test key placed no real call, so they only get a
    warning. Live calls through another base URL may have rung the same people,
    and a resume here would ring them again.
    """
    others = sorted(state.other_targets)
    live = [target for target, mode in others if mode == "live"]
    if settings.key_mode == "live" and live:
        raise TargetChangedError(
            f"run {state.run_id} in {results} placed live calls through {live[0]}, "
            f"not {settings.target}: resuming here could ring the same people "
            f"again. Resume with --base-url {live[0]}, or use a new --run-id"
        )
    for target, mode in others:
        logger.warning(
            "run %s also has records for %s (%s key) in the results file; they do "
            "not stand for its calls through %s (%s key), so those are placed here",
            state.run_id,
            target,
            mode,
            settings.target,
            settings.key_mode,
        )


def _record_in_flight(
    state: RunState, writer: ResultsWriter, on_record: RecordListener | None
) -> None:
    """Record as `unknown` each request an earlier invocation left in flight."""
    for key, intent in sorted(state.in_flight.items()):
        logger.warning(
            "%s was in flight when an earlier invocation of run %s stopped; "
            "recording it as unknown, not sending it again",
            key,
            state.run_id,
        )
        record = interrupted_record(intent, _IN_FLIGHT_AT_CRASH)
        writer.write(record)
        state.outcomes[key] = record
        if on_record is not None:
            on_record(record)
    state.in_flight.clear()


def _unfinished(
    plan: Iterable[PlannedCall],
    state: RunState,
    retry_failed: bool,
    summary: RunSummary,
) -> Iterator[PlannedCall]:
    """Yield the planned calls still to place, counting the others in `summary`.

    A call whose outcome is `created` or `unknown` is never placed again, because
    it may ring its recipient twice. A `failed` one is placed again only when
    `retry_failed` is set.
    """
    for planned in plan:
        earlier = state.outcomes.get(planned.key)
        if earlier is None or (retry_failed and earlier["outcome"] == FAILED):
            yield planned
            continue
        summary.count(earlier["outcome"])
        summary.earlier += 1


def _check_same_plan(
    state: RunState, plan: Iterable[PlannedCall], results: Path
) -> None:
    """Raise `PlanChangedError` if the run recorded calls that this plan lacks.

    Keys follow the request bodies, so an edited job gives its edited calls new
    keys. Resuming would then place them again, ringing people the run already
    rang, so the resume is refused.
    """
    recorded = set(state.outcomes) | set(state.in_flight)
    if not recorded:
        return
    stray = recorded - {planned.key for planned in plan}
    if stray:
        raise PlanChangedError(
            f"run {state.run_id} in {results} recorded {len(stray)} calls that are "
            f"not in this plan (such as {min(stray)}): the job changed since the "
            "run started, and resuming would place the changed calls again. Restore "
            "the job to finish the run, or use a new --run-id to place the job as "
            "it is now"
        )


def _elapsed_since(first_sent_at: str | None) -> float:
    """Return seconds since the run's first request, so offsets keep their time."""
    started = parse_timestamp(first_sent_at)
    if started is None:
        return 0.0
    return max(0.0, (datetime.now(UTC) - started).total_seconds())


def _seconds_since(moments: dict[str, datetime]) -> dict[str, float]:
    """Return how long ago each moment was; one in the future counts as now."""
    now = datetime.now(UTC)
    return {
        name: max(0.0, (now - moment).total_seconds())
        for name, moment in moments.items()
    }


@contextmanager
def _stop_on_signals(runner: Runner) -> Iterator[None]:
    """Turn SIGINT and SIGTERM into `runner.stop` while the block runs.

    Signal handlers can only be set from the main thread; elsewhere (a test
    calling this from a worker thread) the block runs without them.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signal_number: int, frame: FrameType | None) -> None:
        runner.stop(signal_number)

    previous = {
        number: signal.signal(number, handle)
        for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
