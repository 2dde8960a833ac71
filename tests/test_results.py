"""The results file: torn last lines, progress records and run state."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from chirp_jobs.errors import ConfigError
from chirp_jobs.results import (
    ResultsWriter,
    load_run_state,
    read_records,
    read_results,
    repair_torn_tail,
    torn_path,
)

from .conftest import SCRIPT, TEST_KEY


def _line(key: str, outcome: str, run_id: str = "r", target: str = "sandbox") -> str:
    record = {
        "key": key,
        "runId": run_id,
        "target": target,
        "keyMode": "sandbox",
        "outcome": outcome,
    }
    return json.dumps(record) + "\n"


def test_torn_tail_moved_aside(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    whole = _line("a", "created") + _line("b", "intent")
    results.write_text(whole + '{"key": "b", "outc')

    assert [record["key"] for record in read_records(results)] == ["a", "b"]
    with ResultsWriter(results, fsync=False) as writer:
        writer.write(json.loads(_line("c", "created")))

    assert results.read_text() == whole + _line("c", "created")
    assert torn_path(results).read_text() == '{"key": "b", "outc\n'


def test_repair_keeps_complete_file(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    results.write_text(_line("a", "created"))
    assert repair_torn_tail(results) == 0
    assert results.read_text() == _line("a", "created")
    assert not torn_path(results).exists()


def test_repair_single_torn_line(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    results.write_text('{"key"')
    assert repair_torn_tail(results) == 6
    assert results.read_text() == ""


def test_damaged_middle_line_rejected(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    results.write_text(_line("a", "created") + "garbage\n" + _line("b", "created"))
    with pytest.raises(ConfigError, match=r"results\.jsonl:2: not a results record"):
        read_records(results)


def test_read_results_skips_progress(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    results.write_text(
        _line("a", "intent") + _line("a", "not_placed") + _line("a", "created")
    )
    assert [record["outcome"] for record in read_results(results)] == ["created"]


def test_run_state_by_key(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    results.write_text(
        _line("a", "intent")
        + _line("a", "created")
        + _line("b", "intent")
        + _line("c", "intent")
        + _line("c", "not_placed")
        + _line("d", "intent", run_id="other")
        + _line("e", "created", target="https://api.example.test")
    )
    state = load_run_state(results, "r", "sandbox", "sandbox")
    assert sorted(state.outcomes) == ["a"]
    assert sorted(state.in_flight) == ["b"]
    assert state.other_targets == {("https://api.example.test", "sandbox")}


def test_run_state_last_sent_per_series(tmp_path: Path) -> None:
    def sent(key: str, outcome: str, sent_at: str | None, run_id: str = "r") -> str:
        record = json.loads(_line(key, outcome, run_id))
        return json.dumps({**record, "sentAt": sent_at}) + "\n"

    results = tmp_path / "results.jsonl"
    results.write_text(
        sent("job:aaaa:0", "intent", "2026-01-01T00:00:01.000Z")
        + sent("job:aaaa:0", "not_placed", None)
        + sent("job:aaaa:0", "intent", "2026-01-01T00:00:03.500Z")
        # An outcome record keeps its first attempt's sentAt.
        + sent("job:aaaa:0", "created", "2026-01-01T00:00:01.000Z")
        + sent("job:bbbb:1", "unknown", "2026-01-01T00:00:02+00:00")
        + sent("job:bbbb:2", "intent", "not a time")
        + sent("job:cccc:0", "created", "2026-01-01T00:00:09.000Z", run_id="other")
        # A series without an interval is not tracked.
        + sent("job:dddd:1", "created", "2026-01-01T00:00:05.000Z")
    )
    spaced = {"job:aaaa", "job:bbbb", "job:cccc"}
    state = load_run_state(results, "r", "sandbox", "sandbox", spaced)
    assert state.last_sent == {
        "job:aaaa": datetime(2026, 1, 1, 0, 0, 3, 500000, tzinfo=UTC),
        "job:bbbb": datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC),
    }


def test_sandbox_command_injects_faults(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [str(SCRIPT), "sandbox", "--port", "0", "--throttle-first", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[3]
        body = {"from": "+15550100100", "to": "+15550100121"}
        headers = {"Authorization": f"Bearer {TEST_KEY}"}
        with httpx.Client(base_url=url, headers=headers) as client:
            first = client.post("/v1/calls", json=body)
            second = client.post("/v1/calls", json=body)
    finally:
        process.terminate()
        process.communicate(timeout=10)
    assert first.status_code == 429
    assert first.headers["Retry-After"] == "2"
    assert second.status_code == 201


def test_new_results_file_syncs_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import chirp_jobs.results as results_module

    synced: list[Path] = []
    monkeypatch.setattr(results_module, "_sync_directory", synced.append)
    results = tmp_path / "results.jsonl"
    with ResultsWriter(results, fsync=True) as writer:
        writer.write({"key": "a", "outcome": "intent"})
    # The name of a new file reaches the disk once; an existing file's name is
    # already there, and --no-fsync promises nothing.
    assert synced == [tmp_path]
    with ResultsWriter(results, fsync=True):
        pass
    with ResultsWriter(tmp_path / "other.jsonl", fsync=False):
        pass
    assert synced == [tmp_path]


def test_nanosecond_sent_at_is_read() -> None:
    from datetime import UTC, datetime

    from chirp_jobs.results import parse_timestamp

    # Cut to microseconds: dropping the record would lose a repeat's spacing.
    moment = parse_timestamp("2026-12-04T08:00:00.123456789Z")
    assert moment == datetime(2026, 12, 4, 8, 0, 0, 123456, tzinfo=UTC)
    assert parse_timestamp("2026-12-04T08:00:00.5Z") == datetime(
        2026, 12, 4, 8, 0, 0, 500000, tzinfo=UTC
    )
