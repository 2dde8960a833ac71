"""`chirp-jobs report` on damaged or foreign files: never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from chirp_jobs.cli import main


def _record(key: str = "a", outcome: str = "failed", **fields: Any) -> dict[str, Any]:
    return {
        "key": key,
        "runId": "run-1",
        "outcome": outcome,
        "httpStatus": 400,
        "request": {"from": "+15550100100", "to": "+15550100101"},
        "call": None,
        "error": {"type": "invalid_request_error", "code": "x", "message": "bad"},
        **fields,
    }


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _report(path: Path) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["report", "--format", "json", str(path)])
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


NESTED = '{"key": "b", "runId": "run-1", "outcome": "failed", "x": ' + "[" * 100_000


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (json.dumps(_record("b", error="boom")), "error is a string, not an object"),
        (json.dumps(_record("b", request="x")), "request is a string, not an object"),
        (json.dumps(_record("b", call=[1])), "call is an array, not an object"),
        (json.dumps(_record("b", runId={})), "runId is an object, not a string"),
        (json.dumps(_record("b", runId=7)), "runId is a number, not a string"),
        (json.dumps({**_record("b"), "key": None}), "key is missing"),
        (
            json.dumps(_record("b", httpStatus="503")),
            "httpStatus is a string, not an integer or null",
        ),
        (
            json.dumps(_record("b", httpStatus=True)),
            "httpStatus is a boolean, not an integer or null",
        ),
        (
            json.dumps(_record("b", error={"code": 3})),
            "error.code is a number, not a string or null",
        ),
        (
            json.dumps(_record("b", request={"to": ["+1"]})),
            "request.to is an array, not a string or null",
        ),
        (
            json.dumps(_record("b", "created", call={"id": 5})),
            "call.id is a number, not a string or null",
        ),
        (
            json.dumps(_record("b", sentAt=1.5)),
            "sentAt is a number, not a string or null",
        ),
        (
            json.dumps({"type": "callState", "callId": 5}),
            "callId is a number, not a string",
        ),
        (
            json.dumps({"type": "callState", "callId": "c", "status": {}}),
            "status is an object, not a string or null",
        ),
        ("[1, 2]", "not a JSON object"),
        ('"created"', "not a JSON object"),
        (NESTED + "]" * 100_000 + "}", "JSON nested too deeply"),
        ("{not json", "not JSON"),
    ],
)
def test_report_mistyped_record_unreadable(
    tmp_path: Path, line: str, reason: str
) -> None:
    path = _write(tmp_path / "r.jsonl", [json.dumps(_record()), line])
    report = _report(path)
    assert report["plannedCalls"] == 1
    assert report["outcomes"] == {"created": 0, "failed": 1, "unknown": 0}
    assert report["unreadableLines"] == 1
    assert report["unreadable"] == [{"file": str(path), "line": 2, "reason": reason}]


def test_report_mixed_run_id_types(tmp_path: Path) -> None:
    lines = [
        json.dumps(_record("a", runId="run-2")),
        json.dumps(_record("b", runId=3)),
        json.dumps(_record("c", runId="run-1")),
    ]
    report = _report(_write(tmp_path / "r.jsonl", lines))
    assert report["runs"] == ["run-1", "run-2"]
    assert report["unreadableLines"] == 1


def test_report_keyless_records_not_merged(tmp_path: Path) -> None:
    keyless = {key: value for key, value in _record().items() if key != "key"}
    runless = {key: value for key, value in _record().items() if key != "runId"}
    lines = [
        json.dumps(keyless),
        json.dumps(runless),
        json.dumps({**keyless, "outcome": "unknown"}),
        json.dumps(_record("a", "created")),
    ]
    report = _report(_write(tmp_path / "r.jsonl", lines))
    assert report["plannedCalls"] == 1
    assert report["outcomes"] == {"created": 1, "failed": 0, "unknown": 0}
    assert report["unknown"] == []
    assert [line["reason"] for line in report["unreadable"]] == [
        "key is missing",
        "runId is missing",
        "key is missing",
    ]
    assert [line["line"] for line in report["unreadable"]] == [1, 2, 3]


def test_report_torn_utf8_last_line(tmp_path: Path) -> None:
    path = tmp_path / "torn.jsonl"
    whole = json.dumps(_record("a", error={"message": "café"}), ensure_ascii=False)
    torn = json.dumps(_record("b", error={"message": "café"}), ensure_ascii=False)
    cut = torn.encode("utf-8").index("é".encode()) + 1
    path.write_bytes(whole.encode("utf-8") + b"\n" + torn.encode("utf-8")[:cut])
    report = _report(path)
    assert report["plannedCalls"] == 1
    assert report["failuresByCode"][0]["message"] == "café"
    assert report["unreadable"] == [
        {"file": str(path), "line": 2, "reason": "not valid UTF-8"}
    ]


def test_report_job_file_exit_2(tmp_path: Path) -> None:
    job = _write(tmp_path / "job.yaml", ["version: 1", "name: x", "calls: []"])
    result = CliRunner().invoke(main, ["report", str(job)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"error: invalid results file {job}: none of its lines is a results record "
        "and 3 are unreadable, so it does not look like a results file; give a "
        "JSON-lines file that `chirp-jobs run` wrote\n"
    )


def test_report_relative_job_file_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "job.yaml", ["version: 1"])
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["report", "job.yaml"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid results file job.yaml: ")


def test_report_table_one_unreadable_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.jsonl", [json.dumps(_record()), "{torn"])
    result = CliRunner().invoke(main, ["report", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[-2] == "Skipped 1 unreadable line (not JSON or not a usable record):"
    assert lines[-1] == f"  {path}:2: not JSON"


def test_report_empty_file_reads_zero(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    report = _report(path)
    assert report["plannedCalls"] == 0
    assert report["unreadableLines"] == 0


def test_report_table_lists_unreadable(tmp_path: Path) -> None:
    bad = [json.dumps(_record(f"k{index}", error="boom")) for index in range(25)]
    path = _write(tmp_path / "r.jsonl", [json.dumps(_record()), *bad])
    result = CliRunner().invoke(main, ["report", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    start = lines.index(
        "Skipped 25 unreadable lines (not JSON or not a usable record):"
    )
    assert lines[start + 1] == f"  {path}:2: error is a string, not an object"
    assert lines[start + 20] == f"  {path}:21: error is a string, not an object"
    assert lines[start + 21] == "  and 5 more"
    assert len(lines) == start + 22
