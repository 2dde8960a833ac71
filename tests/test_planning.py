from __future__ import annotations

import dataclasses
import itertools
import json
import tracemalloc

from chirp_jobs.jobs import KEY_METADATA
from chirp_jobs.planning import iter_plan, spaced_series
from chirp_jobs.reporting import iter_plan_json, plan_json_line
from chirp_jobs.validation import load_job

from .conftest import WriteJob

LIST_AND_REPEAT = """
version: 1
name: reminders
defaults:
  from: "+15550100100"
  metadata: {clinic: north, shift: day}
calls:
  - to:
      - "+15550100131"
      - address: "+15550100132"
        metadata: {shift: night, seat: 4}
    repeat: {count: 2, interval: 10m}
  - to: "+15550100140"
    fromChannel: pstn
    toChannel: whatsapp
    metadata: {clinic: south}
"""


def test_plan_order_calls_recipients_repeats(write_job: WriteJob) -> None:
    plan = list(iter_plan(load_job(write_job(LIST_AND_REPEAT))))
    origins = [
        (p.origin.call_index, p.origin.recipient_index, p.origin.repeat_index)
        for p in plan
    ]
    assert origins == [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1), (1, 0, 0)]


def test_plan_offsets_follow_interval(write_job: WriteJob) -> None:
    plan = list(iter_plan(load_job(write_job(LIST_AND_REPEAT))))
    assert [p.offset_seconds for p in plan] == [0, 600, 0, 600, 0]


def test_plan_spacing_per_series(write_job: WriteJob) -> None:
    job = load_job(write_job(LIST_AND_REPEAT))
    plan = list(iter_plan(job))
    assert [(p.repeat_count, p.interval_seconds) for p in plan] == [
        (2, 600),
        (2, 600),
        (2, 600),
        (2, 600),
        (1, 0),
    ]
    assert [p.spaced for p in plan] == [True, True, True, True, False]
    assert [p.series for p in plan] == [p.key.rsplit(":", 1)[0] for p in plan]
    assert spaced_series(job) == {plan[0].series, plan[2].series}
    assert plan[0].series != plan[2].series


def test_plan_request_merges_defaults(write_job: WriteJob) -> None:
    plan = list(iter_plan(load_job(write_job(LIST_AND_REPEAT))))
    second = plan[2].request
    assert second["from"] == "+15550100100"
    assert second["to"] == "+15550100132"
    assert second["metadata"] == {
        "clinic": "north",
        "shift": "night",
        "seat": 4,
        KEY_METADATA: plan[2].key,
    }
    last = plan[4].request
    assert last["toChannel"] == "whatsapp"
    assert last["fromChannel"] == "pstn"
    assert last["metadata"]["clinic"] == "south"
    assert last["metadata"]["shift"] == "day"


def test_plan_channels_default_to_pstn(write_job: WriteJob) -> None:
    plan = list(iter_plan(load_job(write_job(LIST_AND_REPEAT))))
    assert plan[0].request["fromChannel"] == "pstn"
    assert plan[0].request["toChannel"] == "pstn"


def test_plan_keys_unique_and_stable(write_job: WriteJob) -> None:
    path = write_job(LIST_AND_REPEAT)
    first = [p.key for p in iter_plan(load_job(path))]
    second = [p.key for p in iter_plan(load_job(path))]
    assert first == second
    assert len(set(first)) == len(first)
    assert all(key.startswith("reminders:") for key in first)


def test_editing_one_call_changes_only_its_keys(write_job: WriteJob) -> None:
    before = [p.key for p in iter_plan(load_job(write_job(LIST_AND_REPEAT)))]
    edited = LIST_AND_REPEAT.replace("clinic: south", "clinic: east")
    after = [p.key for p in iter_plan(load_job(write_job(edited, "edited.yaml")))]
    assert after[:4] == before[:4]
    assert after[4] != before[4]


def test_inserting_call_keeps_other_keys(write_job: WriteJob) -> None:
    before = {p.key for p in iter_plan(load_job(write_job(LIST_AND_REPEAT)))}
    inserted = LIST_AND_REPEAT.replace(
        "calls:\n", 'calls:\n  - to: "+15550100199"\n', 1
    )
    after = {p.key for p in iter_plan(load_job(write_job(inserted, "more.yaml")))}
    assert before <= after
    assert len(after - before) == 1


def test_plan_is_lazy_for_million_calls(write_job: WriteJob) -> None:
    recipients = "\n".join(f'      - "+1555{i:07d}"' for i in range(1000))
    path = write_job(
        f"""
version: 1
name: big
maxPlannedCalls: 1000000
calls:
  - from: "+15550100100"
    repeat: 1000
    to:
{recipients}
"""
    )
    job = load_job(path)
    assert job.planned_count == 1_000_000
    tracemalloc.start()
    plan = iter_plan(job)
    sample = list(itertools.islice(plan, 10))
    for _ in itertools.islice(plan, 200_000):
        pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(sample) == 10
    # 200,000 planned calls at about 1 KiB each would need some 200 MB if held.
    assert peak < 5 * 1024 * 1024


def test_plan_json_matches_line_encoder(write_job: WriteJob) -> None:
    text = LIST_AND_REPEAT.replace("clinic: south", 'clinic: "süd \\"2\\""')
    plan = list(iter_plan(load_job(write_job(text))))
    expected = [plan_json_line(planned) for planned in plan]
    assert list(iter_plan_json(plan)) == expected
    assert len(expected) == 5
    assert '"clinic": "süd \\"2\\""' in expected[4]


def test_plan_json_key_not_last(write_job: WriteJob) -> None:
    planned = next(iter_plan(load_job(write_job(LIST_AND_REPEAT))))
    metadata = {KEY_METADATA: planned.key, "late": "field"}
    moved = dataclasses.replace(
        planned, request={**planned.request, "metadata": metadata}
    )
    line = next(iter_plan_json([moved]))
    assert line == plan_json_line(moved)
    assert json.loads(line)["request"]["metadata"] == metadata
