"""`chirp-jobs report` over results files that real runs wrote."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from chirp_jobs.cli import main
from chirp_jobs.results import read_results
from chirp_jobs.sandbox import SandboxServer

from .conftest import MIXED_JOB, TEST_KEY, FlakySandbox, WriteJob

JOB = MIXED_JOB


@pytest.fixture
def mixed_results(
    cli: CliRunner,
    write_job: WriteJob,
    tmp_path: Path,
    flaky_server: tuple[FlakySandbox, SandboxServer],
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """Run JOB against the flaky sandbox and return its results file."""
    _, server = flaky_server
    monkeypatch.setenv("CHIRP_API_KEY", TEST_KEY)
    results = tmp_path / "mixed.jsonl"
    result = cli.invoke(
        main,
        [
            "run",
            "--base-url",
            server.url,
            "--rate",
            "100",
            "--results",
            str(results),
            str(write_job(JOB)),
        ],
    )
    assert result.exit_code == 1, result.output
    return results


def test_report_table_counts(cli: CliRunner, mixed_results: Path) -> None:
    result = cli.invoke(main, ["report", str(mixed_results)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "4 planned calls in 1 run from 1 file"
    assert lines[1] == "Outcomes: created 2, failed 1, unknown 1"
    assert lines[2] == "Call status: initiated 2"
    assert lines[3] == "Failures by error code:"
    assert lines[4] == (
        "  phone_number_not_assigned: 1 (The from number is not assigned to this app)"
    )
    assert lines[5].startswith("Unknown outcomes: these calls may have been placed.")
    assert "+15550100100 → +15550100129" in lines[6]
    assert len(lines) == 7


def test_report_json_lists_unknown_details(cli: CliRunner, mixed_results: Path) -> None:
    result = cli.invoke(main, ["report", "--format", "json", str(mixed_results)])
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    unknown_record = next(
        record
        for record in read_results(mixed_results)
        if record["outcome"] == "unknown"
    )
    assert report["unknown"] == [
        {
            "key": unknown_record["key"],
            "runId": unknown_record["runId"],
            "from": "+15550100100",
            "to": "+15550100129",
            "sentAt": unknown_record["sentAt"],
            "finishedAt": unknown_record["finishedAt"],
            "httpStatus": 503,
            "error": "unavailable",
        }
    ]
    assert report["failuresByCode"][0]["code"] == "phone_number_not_assigned"
    assert report["failuresByCode"][0]["count"] == 1
    assert report["callStatus"] == {"initiated": 2}


def test_report_refresh_records_states(
    cli: CliRunner,
    mixed_results: Path,
    flaky_server: tuple[FlakySandbox, SandboxServer],
) -> None:
    _, server = flaky_server
    time.sleep(0.1)  # longer than the sandbox's 0.05 s call lifecycle
    before = len(read_results(mixed_results))
    result = cli.invoke(
        main,
        [
            "report",
            "--refresh",
            "--base-url",
            server.url,
            "--rate",
            "100",
            "--format",
            "json",
            str(mixed_results),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["callStatus"] == {"completed": 2}
    records = read_results(mixed_results)
    states = records[before:]
    assert [state["type"] for state in states] == ["callState", "callState"]
    assert [state["status"] for state in states] == ["completed", "completed"]
    # The recorded states are read back without another refresh.
    again = cli.invoke(main, ["report", "--format", "json", str(mixed_results)])
    assert json.loads(again.stdout)["callStatus"] == {"completed": 2}


def test_report_refresh_skips_other_target(
    cli: CliRunner,
    write_job: WriteJob,
    tmp_path: Path,
    served_sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    results = tmp_path / "sandbox.jsonl"
    cli.invoke(
        main,
        [
            "run",
            "--sandbox",
            "--rate",
            "100",
            "--results",
            str(results),
            str(write_job(JOB.replace("+15550100199", "+15550100100"))),
        ],
    )
    monkeypatch.setenv("CHIRP_API_KEY", TEST_KEY)
    result = cli.invoke(
        main, ["report", "--refresh", "--base-url", served_sandbox.url, str(results)]
    )
    assert result.exit_code == 0, result.output
    assert "note: 4 created calls were made through another target" in result.stderr
    assert "Call status: initiated 4" in result.stdout


def test_report_refresh_without_key_exit_4(
    cli: CliRunner, mixed_results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHIRP_API_KEY")
    result = cli.invoke(main, ["report", "--refresh", str(mixed_results)])
    assert result.exit_code == 4
    assert result.stderr.startswith("error: missing API key")


def _record(key: str, outcome: str, run: str = "run-1") -> dict[str, object]:
    return {"key": key, "runId": run, "outcome": outcome, "error": None, "call": None}


def test_report_last_outcome_and_other_kinds(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "kinds.jsonl"
    lines = [
        json.dumps({"type": "intent", "key": "a", "runId": "run-1"}),
        json.dumps(_record("a", "failed")),
        json.dumps(_record("a", "created")),
        json.dumps(_record("a", "failed", run="run-2")),
        json.dumps({"key": "b", "runId": "run-1", "outcome": "pending"}),
        json.dumps({**_record("d", "unknown"), "type": "outcome"}),
        '{"key": "c", "outc',
    ]
    path.write_text("\n".join(lines) + "\n")
    result = cli.invoke(main, ["report", "--format", "json", str(path)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["plannedCalls"] == 3
    assert report["runs"] == ["run-1", "run-2"]
    assert report["outcomes"] == {"created": 1, "failed": 1, "unknown": 1}
    assert report["skippedRecords"] == 2
    assert report["unreadableLines"] == 1


def test_report_missing_file_exit_2(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(main, ["report", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 2
    assert result.stderr == f"error: results file {tmp_path / 'none.jsonl'} not found\n"


def test_report_counts_each_target(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "targets.jsonl"
    first = {**_record("a", "created"), "target": "http://127.0.0.1:8787"}
    lines = [
        first,
        # The same target in another spelling is the same planned call.
        {**first, "target": "HTTP://127.0.0.1:8787/"},
        {**first, "target": "https://calls.example.test", "keyMode": "live"},
        {**first, "keyMode": "test"},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = cli.invoke(main, ["report", "--format", "json", str(path)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # Each target and key mode placed its own call, so none hides another.
    assert report["plannedCalls"] == 3
    assert report["outcomes"] == {"created": 3, "failed": 0, "unknown": 0}
