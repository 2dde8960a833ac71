"""Watch a run record by record: a progress bar on a terminal, and outcome logs."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

from .results import CREATED, FAILED, UNKNOWN

logger = logging.getLogger(__name__)

BAR_WIDTH = 24
# The rate shown is over the last records, not since the start, so it follows
# pauses (a 429's Retry-After, repeats waiting for their offset).
RATE_WINDOW = 20
# Redrawing more often than this makes a terminal flicker and costs time on long
# runs; the last state is always drawn by `close`.
_REDRAW_SECONDS = 0.1


def log_outcome(record: dict[str, Any]) -> None:
    """Log an ERROR for each failed call and a WARNING for each unknown outcome."""
    outcome = record.get("outcome")
    error = record.get("error") or {}
    if outcome == FAILED:
        logger.error(
            "call %s failed: HTTP %s %s: %s",
            record["key"],
            record.get("httpStatus"),
            error.get("code"),
            error.get("message"),
        )
    elif outcome == UNKNOWN:
        logger.warning(
            "call %s has an unknown outcome (HTTP %s %s); it may have been placed",
            record["key"],
            record.get("httpStatus"),
            error.get("code"),
        )


class ProgressBar:
    """A one-line progress display: created, failed and remaining counts, and rate.

    The rate is in calls per second over the last `RATE_WINDOW` records.

    Draw it only on a terminal: the caller checks `stream.isatty()`, so a cron or
    CI log gets none of it.
    """

    def __init__(
        self,
        total: int,
        stream: TextIO,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.stream = stream
        self.clock = clock
        self.counts = {CREATED: 0, FAILED: 0, UNKNOWN: 0}
        self._finished_at: deque[float] = deque(maxlen=RATE_WINDOW)
        self._drawn_at = 0.0

    def __call__(self, record: dict[str, Any]) -> None:
        outcome = record.get("outcome")
        if outcome in self.counts:
            self.counts[outcome] += 1
        now = self.clock()
        self._finished_at.append(now)
        if now - self._drawn_at >= _REDRAW_SECONDS:
            self._drawn_at = now
            self.draw()

    def line(self) -> str:
        done = sum(self.counts.values())
        filled = BAR_WIDTH * done // self.total if self.total else BAR_WIDTH
        times = self._finished_at
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        rate = (len(times) - 1) / span if span > 0 else 0.0
        text = (
            f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
            f"{self.counts[CREATED]} created, {self.counts[FAILED]} failed, "
        )
        if self.counts[UNKNOWN]:
            text += f"{self.counts[UNKNOWN]} unknown, "
        return text + f"{self.total - done} remaining, {rate:.1f} calls/s"

    def draw(self) -> None:
        # \r returns to the start of the line and ESC[K clears the old text.
        self.stream.write("\r" + self.line() + "\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        self.draw()
        self.stream.write("\n")
        self.stream.flush()


class RunWatcher:
    """The record listener of a run: outcome logs, and a bar when one is drawn."""

    def __init__(self, bar: ProgressBar | None = None) -> None:
        self.bar = bar

    @classmethod
    def for_stream(
        cls, count: Callable[[], int], stream: TextIO, enabled: bool = True
    ) -> RunWatcher:
        """Draw a bar on `stream` only when it is a terminal and `enabled` is set.

        `count` is called only then, since counting one shard of a plan expands it.
        """
        isatty = getattr(stream, "isatty", None)
        if enabled and isatty is not None and isatty():
            return cls(ProgressBar(count(), stream))
        return cls()

    def __call__(self, record: dict[str, Any]) -> None:
        if self.bar is not None and record.get("outcome") in (FAILED, UNKNOWN):
            # Clear the bar's line so the log line starts at the left margin.
            self.bar.stream.write("\r\x1b[K")
        log_outcome(record)
        if self.bar is not None:
            self.bar(record)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
