"""The schedule of a run: offsets, and repeats spaced from their actual sends."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from chirp_jobs.planning import PlannedCall, iter_plan
from chirp_jobs.scheduling import Schedule
from chirp_jobs.validation import load_job

from .conftest import WriteJob

JOB = """
version: 1
name: schedule
calls:
  - from: "+15550100100"
    to: ["+15550100121", "+15550100122"]
    repeat: {count: 3, interval: 10s}
"""


def _send_all(
    plan: Iterable[PlannedCall],
    elapsed_seconds: float = 0.0,
    earlier_sends: dict[str, float] | None = None,
    first_takes: float = 0.0,
) -> tuple[list[tuple[float, int, int]], Schedule]:
    """Take every call from a schedule on a fake clock, one at a time.

    Returns (time, recipient, repeat) per call sent, and the schedule.
    """
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    schedule = Schedule(
        plan,
        elapsed_seconds,
        earlier_sends or {},
        lambda: now[0],
        threading.Event(),
        sleep,
    )
    sent: list[tuple[float, int, int]] = []
    while (planned := schedule.next_call()) is not None:
        schedule.note_sent(planned)
        origin = planned.origin
        sent.append((now[0], origin.recipient_index, origin.repeat_index))
        if len(sent) == 1:
            now[0] += first_takes
        schedule.finish(planned)
    return sent, schedule


def test_schedule_spaces_late_repeats(write_job: WriteJob) -> None:
    plan = iter_plan(load_job(write_job(JOB)))
    # The first call takes 25 s, so the run falls behind its offsets.
    sent, schedule = _send_all(plan, first_takes=25.0)

    # Repeat 1 of the first recipient is past its offset (10 s) and 25 s after
    # repeat 0, so it goes at once. Each later repeat waits 10 s after the one
    # before it, even past its offset.
    assert sent == [
        (0.0, 0, 0),
        (25.0, 0, 1),
        (25.0, 1, 0),
        (35.0, 0, 2),
        (35.0, 1, 1),
        (45.0, 1, 2),
    ]
    # Memory: each series' entry goes once its last repeat ends.
    assert schedule._series == {}


def test_schedule_seeds_earlier_sends(write_job: WriteJob) -> None:
    job = load_job(write_job(JOB))
    plan = [planned for planned in iter_plan(job) if planned.origin.repeat_index]
    # The run started 100 s ago, so every offset has passed, but an earlier
    # invocation sent repeat 0 of the first recipient 4 s ago.
    sent, _ = _send_all(plan, 100.0, {plan[0].series: 4.0})

    assert sent == [
        (0.0, 1, 1),
        (6.0, 0, 1),
        (10.0, 1, 2),
        (16.0, 0, 2),
    ]
