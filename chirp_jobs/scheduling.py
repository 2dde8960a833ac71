"""Decide when each planned call of a run is due, and hand it to a free worker.

A planned call is due once the run has been going for its offset. The repeats of
one recipient form a series: plan keys that differ only in their repeat index.
Each repeat is also due no sooner than the job's interval after the latest request
sent to its series, and only once the repeat before it has its outcome. So a run
that falls behind, or resumes after its repeats' offsets have passed, sends them
late but never back to back.
"""

from __future__ import annotations

import heapq
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from .planning import PlannedCall


@dataclass
class _Series:
    """The scheduling state of one spaced series.

    At most one repeat of a series is scheduled (in the heap or with a worker) at a
    time, and the later ones wait in `queued`, in plan order. `last_sent` is the
    clock time of the latest attempt sent to the series.
    """

    interval: float
    last_sent: float | None = None
    scheduled: bool = False
    queued: deque[PlannedCall] = field(default_factory=deque)


class Schedule:
    """Hand out the planned calls of `plan` to worker threads as each falls due.

    `elapsed_seconds` is how long ago the run first started and `earlier_sends`
    how long ago each series last had a request sent, both as recorded by earlier
    invocations of the run. `sleep`, when a test passes one, replaces real waits
    whose length is known, so the test's `clock` can move with it.
    """

    def __init__(
        self,
        plan: Iterable[PlannedCall],
        elapsed_seconds: float,
        earlier_sends: Mapping[str, float],
        clock: Callable[[], float],
        stopping: threading.Event,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        now = clock()
        self._start = now - elapsed_seconds
        self._earlier = {name: now - ago for name, ago in earlier_sends.items()}
        self._clock = clock
        self._stopping = stopping
        self._sleep = sleep
        self._plan: Iterator[PlannedCall] | None = iter(plan)
        # Notified when a series hands its next repeat to the heap, and on stop.
        self._changed = threading.Condition(threading.Lock())
        # Planned calls not yet due wait in a heap of (due, order read, call), so
        # the calls due now are not held up behind a later repeat. Due times are
        # in seconds from the run's start.
        self._waiting: list[tuple[float, int, PlannedCall]] = []
        self._read = 0
        # Only spaced series have an entry, dropped once their last repeat ends.
        self._series: dict[str, _Series] = {}
        self._queued = 0

    def next_call(self) -> PlannedCall | None:
        """Return the next planned call that is due, waiting for one if need be.

        Returns None once the plan is done or the run stops.
        """
        with self._changed:
            while not self._stopping.is_set():
                elapsed = self._clock() - self._start
                if self._waiting and self._waiting[0][0] <= elapsed:
                    return heapq.heappop(self._waiting)[2]
                if self._plan is not None:
                    planned = next(self._plan, None)
                    if planned is None:
                        self._plan = None
                    elif self._admit(planned, elapsed):
                        return planned
                    continue
                if not self._waiting and not self._queued:
                    return None
                # A repeat queued behind one with a worker has no due time until
                # that one finishes, which notifies.
                self._pause(self._waiting[0][0] - elapsed if self._waiting else None)
            return None

    def note_sent(self, planned: PlannedCall) -> None:
        """Record that an attempt of `planned` is being sent now."""
        if not planned.spaced:
            return
        with self._changed:
            self._series[planned.series].last_sent = self._clock()

    def finish(self, planned: PlannedCall) -> None:
        """Free the series of `planned` once it has its outcome, or the run stopped.

        The series' next repeat, if one is queued, goes to the heap, due no sooner
        than the interval after the latest attempt of `planned`.
        """
        if not planned.spaced:
            return
        with self._changed:
            name = planned.series
            series = self._series[name]
            if series.queued:
                following = series.queued.popleft()
                self._queued -= 1
                self._push(self._due(following, series), following)
                self._changed.notify_all()
                return
            series.scheduled = False
            if planned.origin.repeat_index >= planned.repeat_count - 1:
                del self._series[name]

    def wake(self) -> None:
        """Wake the workers waiting for a call, so they see that the run stops."""
        with self._changed:
            self._changed.notify_all()

    def _admit(self, planned: PlannedCall, elapsed: float) -> bool:
        """Return whether `planned` is due now; if not, hold it until it is."""
        if not planned.spaced:
            if planned.offset_seconds <= elapsed:
                return True
            self._push(planned.offset_seconds, planned)
            return False

        series = self._series_of(planned)
        if series.scheduled:
            series.queued.append(planned)
            self._queued += 1
            return False
        series.scheduled = True
        due = self._due(planned, series)
        if due <= elapsed:
            return True
        self._push(due, planned)
        return False

    def _series_of(self, planned: PlannedCall) -> _Series:
        name = planned.series
        series = self._series.get(name)
        if series is None:
            series = _Series(planned.interval_seconds, self._earlier.get(name))
            self._series[name] = series
        return series

    def _due(self, planned: PlannedCall, series: _Series) -> float:
        if series.last_sent is None:
            return planned.offset_seconds
        spaced = series.last_sent - self._start + series.interval
        return max(planned.offset_seconds, spaced)

    def _push(self, due: float, planned: PlannedCall) -> None:
        self._read += 1
        heapq.heappush(self._waiting, (due, self._read, planned))

    def _pause(self, seconds: float | None) -> None:
        """Wait `seconds`, or until notified. The caller must hold `_changed`."""
        if self._sleep is not None and seconds is not None:
            # A test's sleep moves the test's clock, so it keeps the lock through
            # the wait: the other workers' next call is due no sooner.
            self._sleep(seconds)
            return
        self._changed.wait(seconds)
