"""Execute a plan: send each planned call once, paced and concurrent, and record it.

The Chirp API documents no idempotency key, so a create that may have reached the
server is never sent again: only failures that prove the request was not processed
(no connection was made, or the API returned 429) are retried. Everything else that
is not a clear answer is recorded as `unknown`.
"""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from .errors import EXIT_CALLS_NOT_CREATED, EXIT_OK
from .jobs import RUN_METADATA
from .planning import PlannedCall
from .results import (
    CREATED,
    FAILED,
    UNKNOWN,
    Outcome,
    ResultsWriter,
    result_record,
    utc_now,
)

logger = logging.getLogger(__name__)

# The documented limit for app keys is 120 requests a minute.
DEFAULT_RATE = 2.0
DEFAULT_CONCURRENCY = 4
DEFAULT_MAX_ATTEMPTS = 5
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0

# Errors raised before any byte of the request left this machine.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass
class RunSettings:
    """Settings of the runner. `rate` is in requests per second."""

    job: str
    run_id: str
    target: str
    rate: float = DEFAULT_RATE
    concurrency: int = DEFAULT_CONCURRENCY
    max_attempts: int = DEFAULT_MAX_ATTEMPTS


@dataclass
class RunSummary:
    """Outcome counts of one run."""

    created: int = 0
    failed: int = 0
    unknown: int = 0

    @property
    def total(self) -> int:
        return self.created + self.failed + self.unknown

    @property
    def exit_code(self) -> int:
        if self.failed or self.unknown:
            return EXIT_CALLS_NOT_CREATED
        return EXIT_OK

    def count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)


class Pacer:
    """Space request starts at least `1 / rate` seconds apart, across threads."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)

    def hold(self, seconds: float) -> None:
        """Start nothing for `seconds`, as the Retry-After header of a 429 requests."""
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)


@dataclass
class _Attempt:
    outcome: str | None  # None: not sent or rejected unprocessed, so retry
    status: int | None = None
    call: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    retry_after: float | None = None


# Called with each results record right after it is written, from a worker thread
# but never from two at once; progress displays use it.
RecordListener = Callable[[dict[str, Any]], None]


@dataclass
class Runner:
    """Send planned calls through `client` and write each outcome to `writer`."""

    client: httpx.Client
    writer: ResultsWriter
    settings: RunSettings
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    on_record: RecordListener | None = None
    summary: RunSummary = field(default_factory=RunSummary)

    def __post_init__(self) -> None:
        self.pacer = Pacer(self.settings.rate, self.clock, self.sleep)
        self._write_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.settings.concurrency)

    def execute(self, plan: Iterable[PlannedCall]) -> RunSummary:
        """Send every planned call at or after its offset; return the counts."""
        start = self.clock()
        # Planned calls whose offset lies ahead wait in a heap, so the calls due now
        # are not held up behind a later repeat.
        waiting: list[tuple[int, int, PlannedCall]] = []
        futures: list[Future[None]] = []
        with ThreadPoolExecutor(self.settings.concurrency, "chirp-call") as pool:
            for order, planned in enumerate(plan):
                self._submit_due(pool, waiting, futures, start)
                if planned.offset_seconds > self.clock() - start:
                    heapq.heappush(waiting, (planned.offset_seconds, order, planned))
                else:
                    self._submit(pool, futures, planned)
            while waiting:
                offset = waiting[0][0]
                delay = start + offset - self.clock()
                if delay > 0:
                    self.sleep(delay)
                self._submit_due(pool, waiting, futures, start)
        for future in futures:
            future.result()
        return self.summary

    def _submit_due(
        self,
        pool: ThreadPoolExecutor,
        waiting: list[tuple[int, int, PlannedCall]],
        futures: list[Future[None]],
        start: float,
    ) -> None:
        while waiting and waiting[0][0] <= self.clock() - start:
            self._submit(pool, futures, heapq.heappop(waiting)[2])

    def _submit(
        self,
        pool: ThreadPoolExecutor,
        futures: list[Future[None]],
        planned: PlannedCall,
    ) -> None:
        # The semaphore keeps at most `concurrency` calls queued or in flight, so a
        # lazy plan is never read far ahead of what has been sent.
        self._slots.acquire()
        future = pool.submit(self._place, planned)
        future.add_done_callback(lambda _: self._slots.release())
        futures.append(future)
        # Finished futures are dropped so a long run does not keep one per call.
        if len(futures) > 4 * self.settings.concurrency:
            for done in [item for item in futures if item.done()]:
                done.result()
                futures.remove(done)

    def _place(self, planned: PlannedCall) -> None:
        request = {
            **planned.request,
            "metadata": {
                **planned.request["metadata"],
                RUN_METADATA: self.settings.run_id,
            },
        }
        sent_at: str | None = None
        attempts = 0
        while True:
            self.pacer.wait()
            attempts += 1
            if sent_at is None:
                sent_at = utc_now()
            attempt = self._send(planned.key, request)
            if attempt.outcome is not None or attempts >= self.settings.max_attempts:
                break
            delay = self._backoff(attempts, attempt.retry_after)
            logger.warning(
                "retrying %s in %.1f s (attempt %d of %d)",
                planned.key,
                delay,
                attempts + 1,
                self.settings.max_attempts,
            )
            if attempt.retry_after is not None:
                self.pacer.hold(delay)
            self.sleep(delay)
        outcome = Outcome(
            outcome=attempt.outcome or FAILED,
            http_status=attempt.status,
            call=attempt.call,
            error=attempt.error,
            attempts=attempts,
            sent_at=sent_at,
            finished_at=utc_now(),
        )
        record = result_record(
            planned,
            request,
            outcome,
            self.settings.job,
            self.settings.run_id,
            self.settings.target,
        )
        with self._write_lock:
            self.writer.write(record)
            self.summary.count(outcome.outcome)
            if self.on_record is not None:
                self.on_record(record)

    def _send(self, key: str, request: dict[str, Any]) -> _Attempt:
        started = time.perf_counter()
        try:
            response = self.client.post("/v1/calls", json=request)
        except _NEVER_SENT as error:
            logger.warning("POST /v1/calls %s: not sent: %s", key, _describe(error))
            return _Attempt(None, error=_transport_error(error, "not_sent"))
        except httpx.TransportError as error:
            # The body may have reached the server, which may have placed the call.
            logger.warning(
                "POST /v1/calls %s: outcome unknown: %s", key, _describe(error)
            )
            return _Attempt(UNKNOWN, error=_transport_error(error, "no_response"))
        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.info(
            "POST /v1/calls %d %.0f ms %s", response.status_code, elapsed_ms, key
        )
        return _classify(response)

    def _backoff(self, attempts: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempts - 1))
        return random.uniform(ceiling / 2, ceiling)


def _classify(response: httpx.Response) -> _Attempt:
    status = response.status_code
    body = _json_body(response)
    if 200 <= status < 300:
        if isinstance(body, dict):
            return _Attempt(CREATED, status, call=body)
        # The API accepted the request, so the call exists, but without its object
        # there is no id to look it up by.
        error = {
            "type": "invalid_response",
            "message": "2xx response without a call object",
        }
        return _Attempt(CREATED, status, error=error)
    error = api_error(body, response.text)
    if status == 429:
        return _Attempt(None, status, error=error, retry_after=_retry_after(response))
    if 400 <= status < 500:
        return _Attempt(FAILED, status, error=error)
    # 5xx (and anything unexpected): the server may have acted before failing.
    return _Attempt(UNKNOWN, status, error=error)


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
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
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def _transport_error(error: httpx.TransportError, code: str) -> dict[str, Any]:
    return {
        "type": "transport_error",
        "code": code,
        "message": _describe(error),
        "param": None,
    }


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
