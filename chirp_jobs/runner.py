"""Execute a plan: send each planned call once, paced and concurrent, and record it.

The Chirp API documents no idempotency key, so a create that may have reached the
server is never sent again. Only failures that prove the request was not processed
(no connection was made, or the API returned 429) are retried, unless the user
opts in to retrying chosen 5xx statuses. Everything else that is not a clear
response is recorded as `unknown`. Before each attempt an `intent` record is
written, so an invocation that dies mid-request leaves a trace the next one reads.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from .errors import EXIT_CALLS_NOT_CREATED, EXIT_OK, ResultsWriteError
from .jobs import RUN_METADATA
from .planning import PlannedCall
from .results import (
    CREATED,
    FAILED,
    INTENT,
    NOT_PLACED,
    UNKNOWN,
    Outcome,
    ResultsWriter,
    interrupted_record,
    result_record,
    utc_now,
)
from .scheduling import Schedule

logger = logging.getLogger(__name__)

# The documented limit for app keys is 120 requests a minute.
DEFAULT_RATE = 2.0
DEFAULT_CONCURRENCY = 4
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_RETRY_BUDGET = 100
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
# After 429s the pacer slows down to at most this many times its base spacing
# between starts, then speeds up again.
MAX_SLOWDOWN = 8
# With no --rate given, a run paces at this share of the X-RateLimit-Limit the API
# reports.
LIMIT_SHARE = 0.98
# The maximum wait the API can impose through Retry-After, or through no requests
# remaining until X-RateLimit-Reset. A longer wait is cut to this, so a wrong header
# cannot hold a run for hours, and the next 429 requests a new wait.
MAX_WAIT_SECONDS = 300.0
# Extra time allowed for in-flight requests after a stop, on top of their timeout.
DRAIN_MARGIN_SECONDS = 2.0

# Errors raised before any byte of the request left this machine.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_IN_FLIGHT_AT_STOP = (
    "the run stopped while this request was in flight; the call may have been placed"
)


@dataclass
class RunSettings:
    """Settings of the runner.

    `rate` is in requests per second. `retry_budget` caps the retries of the whole
    run. `retry_statuses` are the 5xx statuses the user accepts to retry although
    the call may have been placed. `drain_seconds` is how long a stop waits for
    requests in flight. `elapsed_seconds` is how long ago the run first started,
    so a resumed run keeps the plan's offsets. `key_mode` is `live`, `test` or
    `sandbox`, recorded with `target` so a resume counts only its own target's
    records. With `follow_rate_limit`, the rate follows the X-RateLimit-Limit the
    API reports, up or down; without it, the headers can only slow the run.
    """

    job: str
    run_id: str
    target: str
    key_mode: str = "live"
    follow_rate_limit: bool = False
    rate: float = DEFAULT_RATE
    concurrency: int = DEFAULT_CONCURRENCY
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    retry_budget: int = DEFAULT_RETRY_BUDGET
    retry_statuses: frozenset[int] = frozenset()
    drain_seconds: float = 10.0 + DRAIN_MARGIN_SECONDS
    elapsed_seconds: float = 0.0


@dataclass
class RunSummary:
    """Outcome counts of one run, earlier invocations of it included.

    `earlier` counts the planned calls skipped because an earlier invocation had
    recorded their outcome. `stopped_by` is the signal number that stopped the run.
    """

    created: int = 0
    failed: int = 0
    unknown: int = 0
    earlier: int = 0
    retries: int = 0
    stopped_by: int | None = None

    @property
    def total(self) -> int:
        return self.created + self.failed + self.unknown

    @property
    def exit_code(self) -> int:
        # A stopped run exits as a shell reports a death by that signal: 128 + N.
        if self.stopped_by is not None:
            return 128 + self.stopped_by
        if self.failed or self.unknown:
            return EXIT_CALLS_NOT_CREATED
        return EXIT_OK

    def count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)


class Pacer:
    """Space request starts at least `interval` seconds apart, across threads.

    The interval starts at `1 / rate`. It doubles after a 429, once per interval,
    so a burst of 429s for requests sent together counts once. It shrinks back by
    10% after each success. The X-RateLimit-* headers of each response can widen
    it, so a long run slows down before the API has to reject it.
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
        follow_limit: bool = False,
    ) -> None:
        self.base_interval = 1.0 / rate if rate > 0 else 0.0
        self.follow_limit = follow_limit
        # Set once the first response has reported the API's limit. Until then a
        # run that follows the limit sends only its first request, so the others
        # are spaced by the reported limit rather than the default guess.
        self._limit_known = threading.Event()
        self._first_sent = False
        self._last_slot = 0.0
        self.interval = self.base_interval
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._next = 0.0
        self._slowed_at: float | None = None

    def wait(self) -> None:
        if self.follow_limit and not self._limit_known.is_set():
            with self._lock:
                first = not self._first_sent
                self._first_sent = True
            if not first:
                self._limit_known.wait(timeout=self.base_interval)
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._last_slot = slot
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)

    def hold(self, seconds: float) -> None:
        """Start nothing for `seconds`, as the Retry-After header of a 429 requests."""
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)

    def slow_down(self) -> None:
        with self._lock:
            now = self._clock()
            if self._slowed_at is not None and now - self._slowed_at < self.interval:
                return
            self._slowed_at = now
            slowest = MAX_SLOWDOWN * self.base_interval
            self.interval = min(self.interval * 2, slowest)

    def speed_up(self) -> None:
        with self._lock:
            self.interval = max(self.base_interval, self.interval * 0.9)

    def observe_limits(self, headers: httpx.Headers) -> None:
        """Spread the requests the API still allows over the time until its reset.

        `X-RateLimit-Reset` is a Unix timestamp. With nothing remaining, nothing
        starts before the reset.
        """
        if self.follow_limit:
            self._follow(_header_number(headers, "X-RateLimit-Limit"))
        remaining = _header_number(headers, "X-RateLimit-Remaining")
        reset = _header_number(headers, "X-RateLimit-Reset")
        if remaining is None or reset is None:
            return
        seconds = reset - self._wall_clock()
        if not 0 < seconds < float("inf"):
            return
        seconds = min(seconds, MAX_WAIT_SECONDS)
        if remaining <= 0:
            logger.warning(
                "the API reports no requests remaining; waiting %.0f s for its "
                "X-RateLimit-Reset",
                seconds,
            )
            self.hold(seconds)
            return
        with self._lock:
            self.interval = max(self.interval, min(seconds / remaining, 60.0))

    def _follow(self, limit: float | None) -> None:
        # X-RateLimit-Limit counts requests a minute, as the Chirp docs give it
        # (120 for app keys). Pacing a little under it leaves room for timing
        # jitter, so a steady run gets no 429.
        if limit is None or not 0 < limit < float("inf"):
            self._limit_known.set()
            return
        base = 60.0 / (limit * LIMIT_SHARE)
        with self._lock:
            self.base_interval = base
            if self._slowed_at is None:
                self.interval = base
                self._next = min(self._next, self._last_slot + base)
            else:
                # After a 429 the run keeps its slower pace and recovers by
                # speed_up, within the usual bound.
                self.interval = max(base, min(self.interval, MAX_SLOWDOWN * base))
        self._limit_known.set()


def _header_number(headers: httpx.Headers, name: str) -> float | None:
    try:
        return float(headers[name])
    except (KeyError, ValueError):
        return None


class RetryBudget:
    """A count of retries shared by every planned call of one run."""

    def __init__(self, retries: int) -> None:
        self.remaining = retries
        self._lock = threading.Lock()
        self._warned = False

    def take(self) -> bool:
        with self._lock:
            if self.remaining > 0:
                self.remaining -= 1
                return True
            if not self._warned:
                self._warned = True
                logger.warning(
                    "the retry budget of this run is used up: "
                    "failures are no longer retried"
                )
            return False


@dataclass
class _Attempt:
    outcome: str  # the outcome if no further attempt is made
    status: int | None = None
    call: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    retry_after: float | None = None
    retryable: bool = False  # another attempt may be sent
    not_placed: bool = False  # the request provably placed no call


@dataclass
class _InFlight:
    planned: PlannedCall
    request: dict[str, Any]
    attempts: int
    sent_at: str


# Called with each outcome record right after it is written, from a worker thread
# but never from two at once; progress displays use it. Progress records (intent,
# not_placed) are not passed.
RecordListener = Callable[[dict[str, Any]], None]


class StopRequested(Exception):
    """Raised inside a worker when the run stops before a request is sent."""


@dataclass
class Runner:
    """Send planned calls through `client` and write each outcome to `writer`.

    `stop()` (from a signal handler, say) ends the run early: no new request is
    sent, requests in flight get `settings.drain_seconds` to finish, and those
    still unanswered then are recorded `unknown`. `earlier_sends` is how long ago
    each series (a plan key without its repeat index) last had a request sent by
    an earlier invocation of the run, so its next repeat keeps the interval.
    """

    client: httpx.Client
    writer: ResultsWriter
    settings: RunSettings
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] | None = None
    on_record: RecordListener | None = None
    summary: RunSummary = field(default_factory=RunSummary)
    earlier_sends: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stopping = threading.Event()
        self._hurry = threading.Event()
        # Waits end early on stop, unless a test passes its own sleep.
        self._wait: Callable[[float], object] = self.sleep or self._stopping.wait
        self.pacer = Pacer(
            self.settings.rate,
            self.clock,
            self._wait,
            follow_limit=self.settings.follow_rate_limit,
        )
        self.budget = RetryBudget(self.settings.retry_budget)
        self._write_lock = threading.Lock()
        self._failure: BaseException | None = None
        self._in_flight: dict[str, _InFlight] = {}
        self._abandoned: set[str] = set()
        self._closed = False
        # Joined once: httpx parses and joins a relative URL on every request,
        # about a tenth of a fast run's CPU time.
        base = self.client.base_url
        self._calls_url = base.copy_with(raw_path=base.raw_path + b"v1/calls")

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self, signal_number: int | None = None) -> None:
        """Stop sending; a second call also stops waiting for requests in flight."""
        if self._stopping.is_set():
            self._hurry.set()
            return
        if signal_number is not None:
            self.summary.stopped_by = signal_number
        self._stopping.set()
        logger.warning(
            "stopping: no new requests are sent; waiting up to %.0f s for those in "
            "flight (stop again to stop waiting)",
            self.settings.drain_seconds,
        )

    def execute(self, plan: Iterable[PlannedCall]) -> RunSummary:
        """Send every planned call once it is due; return the counts.

        A call is due at its offset, and a repeat also no sooner than its
        interval after the latest request sent to the same recipient (see
        `Schedule`). Each worker thread takes the next planned call itself when
        it is free, so the lazy plan is read no further ahead than the calls
        being sent. An error in a worker (a results file that cannot be written,
        say) stops the run as a signal does, and is raised here once the others
        have finished.
        """
        self._schedule = Schedule(
            plan,
            self.settings.elapsed_seconds,
            self.earlier_sends,
            self.clock,
            self._stopping,
            self.sleep,
        )
        # Daemon threads: once the drain gives up on a request, its thread must
        # not hold the process open until the request times out.
        workers = [
            threading.Thread(target=self._work, name=f"chirp-call-{n}", daemon=True)
            for n in range(self.settings.concurrency)
        ]
        for worker in workers:
            worker.start()
        self._drain(workers)
        if self._failure is not None:
            raise self._failure
        return self.summary

    def _work(self) -> None:
        try:
            while (planned := self._schedule.next_call()) is not None:
                self._place(planned)
        except BaseException as error:
            with self._write_lock:
                if self._failure is None:
                    self._failure = error
            self._stopping.set()

    def _drain(self, workers: list[threading.Thread]) -> None:
        """Wait for the workers; after a stop, for `drain_seconds` at most."""
        deadline: float | None = None
        while alive := [worker for worker in workers if worker.is_alive()]:
            if self.stopping and deadline is None:
                deadline = time.monotonic() + self.settings.drain_seconds
                self._schedule.wake()
            if deadline is not None and (
                self._hurry.is_set() or time.monotonic() >= deadline
            ):
                break
            alive[0].join(timeout=0.1)
        with self._write_lock:
            self._closed = True
            for key, entry in sorted(self._in_flight.items()):
                logger.warning("%s: no response before the stop; outcome unknown", key)
                self._abandoned.add(key)
                try:
                    self._write_interrupted(entry)
                except ResultsWriteError as error:
                    # The writer logged the record; the first error is reported.
                    self._failure = self._failure or error
            self._in_flight.clear()

    def _place(self, planned: PlannedCall) -> None:
        request = {
            **planned.request,
            "metadata": {
                **planned.request["metadata"],
                RUN_METADATA: self.settings.run_id,
            },
        }
        try:
            outcome = self._attempt_until_final(planned, request)
            self._finish(planned.key, self._record(planned, request, outcome))
        except StopRequested:
            return
        finally:
            self._schedule.finish(planned)

    def _attempt_until_final(
        self, planned: PlannedCall, request: dict[str, Any]
    ) -> Outcome:
        sent_at: str | None = None
        attempts = 0
        while True:
            self.pacer.wait()
            attempts += 1
            moment = self._write_intent(planned, request, attempts)
            self._schedule.note_sent(planned)
            sent_at = sent_at or moment
            attempt = self._send(planned.key, request)
            if not self._retries(planned, request, attempt, attempts):
                break
        return Outcome(
            outcome=attempt.outcome,
            http_status=attempt.status,
            call=attempt.call,
            error=attempt.error,
            attempts=attempts,
            sent_at=sent_at,
            finished_at=utc_now(),
        )

    def _retries(
        self,
        planned: PlannedCall,
        request: dict[str, Any],
        attempt: _Attempt,
        attempts: int,
    ) -> bool:
        """Decide whether to send `planned` again, and wait before it if so."""
        if not attempt.retryable or attempts >= self.settings.max_attempts:
            return False
        if self.stopping:
            return self._give_up(planned, request, attempt, attempts)

        if not self.budget.take():
            if attempt.error is not None:
                attempt.error["message"] = (
                    f"{attempt.error['message']} (the run's retry budget is used up)"
                )
            return False
        if attempt.not_placed:
            self._write_not_placed(planned, request, attempt, attempts)

        delay = self._backoff(attempts, attempt.retry_after)
        logger.warning(
            "retrying %s in %.1f s (attempt %d of %d)",
            planned.key,
            delay,
            attempts + 1,
            self.settings.max_attempts,
        )
        with self._write_lock:
            self.summary.retries += 1
        if attempt.status == 429:
            self.pacer.slow_down()
            self.pacer.hold(delay)

        self._wait(delay)
        if self.stopping and attempt.not_placed:
            raise StopRequested
        return not self.stopping

    def _give_up(
        self,
        planned: PlannedCall,
        request: dict[str, Any],
        attempt: _Attempt,
        attempts: int,
    ) -> bool:
        """On stop, leave a provably unplaced call for the next invocation."""
        if attempt.not_placed:
            self._write_not_placed(planned, request, attempt, attempts)
            raise StopRequested
        return False

    def _write_intent(
        self, planned: PlannedCall, request: dict[str, Any], attempts: int
    ) -> str:
        """Record that attempt `attempts` is about to be sent; return its time.

        Raises `StopRequested` instead once the run stops, so nothing is sent
        without its intent on record.
        """
        moment = utc_now()
        intent = Outcome(INTENT, None, None, None, attempts, moment, None)
        record = self._record(planned, request, intent)
        with self._write_lock:
            if self.stopping or self._closed:
                raise StopRequested
            self.writer.write(record)
            self._in_flight[planned.key] = _InFlight(planned, request, attempts, moment)
        # The intent must be on the disk before the request leaves, or a power loss
        # could hide a placed call from the resume.
        self.writer.sync()
        return moment

    def _write_not_placed(
        self,
        planned: PlannedCall,
        request: dict[str, Any],
        attempt: _Attempt,
        attempts: int,
    ) -> None:
        progress = Outcome(
            NOT_PLACED,
            attempt.status,
            None,
            attempt.error,
            attempts,
            None,
            utc_now(),
        )
        record = self._record(planned, request, progress)
        with self._write_lock:
            if self._closed or planned.key in self._abandoned:
                return
            self.writer.write(record)
            self._in_flight.pop(planned.key, None)

    def _record(
        self, planned: PlannedCall, request: dict[str, Any], outcome: Outcome
    ) -> dict[str, Any]:
        return result_record(
            planned,
            request,
            outcome,
            self.settings.job,
            self.settings.run_id,
            self.settings.target,
            self.settings.key_mode,
        )

    def _finish(self, key: str, record: dict[str, Any]) -> None:
        with self._write_lock:
            if self._closed or key in self._abandoned:
                # The stop already recorded this call as unknown, so the late
                # response is only logged, to drop nothing silently.
                logger.warning(
                    "%s: response arrived after the stop (outcome %s, call %s); "
                    "the results file records it as unknown",
                    key,
                    record["outcome"],
                    (record["call"] or {}).get("id"),
                )
                return
            self._in_flight.pop(key, None)
            self._emit(record)

    def _write_interrupted(self, entry: _InFlight) -> None:
        intent = self._record(
            entry.planned,
            entry.request,
            Outcome(INTENT, None, None, None, entry.attempts, entry.sent_at, None),
        )
        self._emit(interrupted_record(intent, _IN_FLIGHT_AT_STOP))

    def _emit(self, record: dict[str, Any]) -> None:
        """Write an outcome record and count it; the write lock must be held."""
        self.writer.write(record)
        self.summary.count(record["outcome"])
        if self.on_record is not None:
            self.on_record(record)

    def _send(self, key: str, request: dict[str, Any]) -> _Attempt:
        started = time.perf_counter()
        try:
            response = self.client.post(self._calls_url, json=request)
        except _NEVER_SENT as error:
            logger.warning("POST /v1/calls %s: not sent: %s", key, _describe(error))
            return _Attempt(
                FAILED,
                error=_transport_error(error, "not_sent"),
                retryable=True,
                not_placed=True,
            )
        except httpx.TransportError as error:
            # The body may have reached the server, which may have placed the call.
            logger.warning(
                "POST /v1/calls %s: outcome unknown: %s", key, _describe(error)
            )
            return _Attempt(UNKNOWN, error=_transport_error(error, "no_response"))
        except (
            httpx.HTTPError,
            ValueError,
            RecursionError,
            OverflowError,
            # A body too large to hold (httpx's transport reads it whole); the
            # memory is free again once this is handled.
            MemoryError,
        ) as error:
            # Raised after the request went out: a body that cannot be decoded, or
            # a response too odd to read. The call may exist, so it is unknown.
            logger.warning(
                "POST /v1/calls %s: unreadable response, outcome unknown: %s",
                key,
                _describe(error),
            )
            return _Attempt(UNKNOWN, error=_unreadable_error(error))
        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.info(
            "POST /v1/calls %d %.0f ms %s", response.status_code, elapsed_ms, key
        )
        self.pacer.observe_limits(response.headers)
        attempt = _classify(response, self.settings.retry_statuses)
        if attempt.outcome == CREATED:
            self.pacer.speed_up()
        return attempt

    def _backoff(self, attempts: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempts - 1))
        return random.uniform(ceiling / 2, ceiling)


def _classify(response: httpx.Response, retry_statuses: frozenset[int]) -> _Attempt:
    status = response.status_code
    body = _json_body(response)
    if 200 <= status < 300:
        if isinstance(body, dict) and isinstance(body.get("id"), str):
            return _Attempt(CREATED, status, call=body)
        # A 2xx without a call object is not a Chirp API response: a proxy page or
        # a wrong --base-url looks like this. The request did reach a server, so
        # whether a call exists is unknown, and it must not be sent again.
        error = {
            "type": "invalid_response",
            "code": "no_call_object",
            "message": f"HTTP {status} response without a call object",
            "param": None,
        }
        return _Attempt(UNKNOWN, status, error=error)
    error = api_error(body, response.text)
    if status == 429:
        return _Attempt(
            FAILED,
            status,
            error=error,
            retry_after=_retry_after(response),
            retryable=True,
            not_placed=True,
        )
    if 400 <= status < 500:
        return _Attempt(FAILED, status, error=error)
    # 5xx (and anything unexpected): the server may have acted before failing, so
    # only the statuses the user opted in to are sent again.
    return _Attempt(UNKNOWN, status, error=error, retryable=status in retry_statuses)


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, RecursionError):
        return None


def api_error(body: Any, text: str) -> dict[str, Any]:
    """Return the API error as `{type, code, message, param}`.

    The documented body is `{"error": {...}}`, but one documented 429 carries a
    plain string in `error`, so both shapes are read.
    """
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return {
            "type": error.get("type"),
            "code": error.get("code"),
            "message": error.get("message"),
            "param": error.get("param"),
        }
    message = error if isinstance(error, str) else text[:500]
    return {"type": None, "code": None, "message": message, "param": None}


def _retry_after(response: httpx.Response) -> float | None:
    """Return the 429's Retry-After in seconds, at most `MAX_WAIT_SECONDS`."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError):
            return None
        seconds = moment.timestamp() - time.time()
    if seconds != seconds:
        return None
    return min(MAX_WAIT_SECONDS, max(0.0, seconds))


def _unreadable_error(error: Exception) -> dict[str, Any]:
    return {
        "type": "invalid_response",
        "code": "unreadable_response",
        "message": _describe(error)[:500],
        "param": None,
    }


def _transport_error(error: httpx.TransportError, code: str) -> dict[str, Any]:
    return {
        "type": "transport_error",
        "code": code,
        "message": _describe(error),
        "param": None,
    }


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
