"""Logs on stderr, quiet success for cron, and the API key never shown."""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from chirp_jobs.cli import main
from chirp_jobs.logs import NORMAL, configure_logging, redact
from chirp_jobs.sandbox import SandboxServer

from .conftest import MIXED_JOB, SCRIPT, TEST_KEY, FlakySandbox, WriteJob

JOB = MIXED_JOB
CLEAN_JOB = JOB.replace("+15550100199", "+15550100100").replace("29", "24")


def _script(*args: str, key: str = TEST_KEY) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CHIRP_API_KEY": key}
    return subprocess.run(
        [str(SCRIPT), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _run_against(
    server: SandboxServer, results: Path, job: Path, *global_options: str
) -> subprocess.CompletedProcess[str]:
    return _script(
        *global_options,
        "run",
        "--base-url",
        server.url,
        "--rate",
        "100",
        "--results",
        str(results),
        str(job),
    )


def _run_in_sandbox(
    results: Path, job: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    return _script(
        "run",
        "--sandbox",
        *options,
        "--rate",
        "100",
        "--results",
        str(results),
        str(job),
    )


def test_verbose_logs_each_request(
    write_job: WriteJob,
    tmp_path: Path,
    flaky_server: tuple[FlakySandbox, SandboxServer],
) -> None:
    _, server = flaky_server
    completed = _run_against(server, tmp_path / "r.jsonl", write_job(JOB), "-v")
    assert completed.returncode == 1
    lines = completed.stderr.splitlines()
    requests = [
        line for line in lines if line.startswith("INFO chirp_jobs.runner: POST")
    ]
    assert len(requests) == 4
    assert any(" 503 " in line and ":0" in line for line in requests)
    errors = [line for line in lines if line.startswith("ERROR ")]
    assert len(errors) == 1
    assert "failed: HTTP 400 phone_number_not_assigned" in errors[0]
    warnings = [line for line in lines if line.startswith("WARNING ")]
    assert len(warnings) == 1
    assert "has an unknown outcome (HTTP 503" in warnings[0]
    assert completed.stdout == ""


def test_clean_unattended_run_prints_nothing(
    write_job: WriteJob, tmp_path: Path
) -> None:
    completed = _run_in_sandbox(tmp_path / "r.jsonl", write_job(CLEAN_JOB))
    assert completed.returncode == 0
    assert completed.stdout == ""
    assert completed.stderr == ""


def test_print_flag_prints_plan_and_summary(
    write_job: WriteJob, tmp_path: Path
) -> None:
    completed = _run_in_sandbox(tmp_path / "r.jsonl", write_job(CLEAN_JOB), "--print")
    assert completed.returncode == 0
    lines = completed.stdout.splitlines()
    assert lines[0].startswith("key ")
    assert lines[-1].startswith("4 created, 0 failed, 0 unknown of 4 planned calls")


def test_quiet_logs_errors_only(
    write_job: WriteJob,
    tmp_path: Path,
    flaky_server: tuple[FlakySandbox, SandboxServer],
) -> None:
    _, server = flaky_server
    completed = _run_against(server, tmp_path / "r.jsonl", write_job(JOB), "-q")
    assert completed.returncode == 1
    assert completed.stdout == ""
    levels = [line.split(" ", 1)[0] for line in completed.stderr.splitlines()]
    assert "WARNING" not in levels
    assert levels.count("ERROR") == 1


def test_json_log_format(
    write_job: WriteJob,
    tmp_path: Path,
    flaky_server: tuple[FlakySandbox, SandboxServer],
) -> None:
    _, server = flaky_server
    completed = _script(
        "-v",
        "--log-format",
        "json",
        "run",
        "--base-url",
        server.url,
        "--rate",
        "100",
        "--results",
        str(tmp_path / "r.jsonl"),
        str(write_job(JOB)),
    )
    logged = [
        json.loads(line)
        for line in completed.stderr.splitlines()
        if line.startswith("{")
    ]
    assert [entry["level"] for entry in logged].count("INFO") == 4
    assert {"time", "level", "logger", "message"} <= set(logged[0])
    assert any(entry["level"] == "ERROR" for entry in logged)


def test_marker_key_appears_nowhere(
    write_job: WriteJob,
    tmp_path: Path,
    flaky_server: tuple[FlakySandbox, SandboxServer],
) -> None:
    _, server = flaky_server
    marker = "Mk" + secrets.token_hex(8)
    key = f"sk_test_app_{marker}"
    job = str(write_job(JOB))
    plan = tmp_path / "plan.json"
    results = tmp_path / "r.jsonl"
    target = ("--base-url", server.url, "--rate", "100")
    into_results = (*target, "--results", str(results))

    outputs = [
        _script("-v", "plan", job, "-o", str(plan), key=key),
        _script("-v", "run", str(plan), *into_results, key=key),
        _script("-vv", "--log-format", "json", "run", job, *into_results, key=key),
        _script("-vv", "report", "--refresh", *target, str(results), key=key),
    ]

    assert [completed.returncode for completed in outputs] == [0, 1, 1, 0]
    for completed in outputs:
        assert marker not in completed.stdout
        assert marker not in completed.stderr
    assert "INFO chirp_jobs.runner: POST /v1/calls" in outputs[1].stderr
    assert "INFO chirp_jobs.refresh: GET /v1/calls/" in outputs[3].stderr
    assert marker not in results.read_text()
    assert marker not in plan.read_text()
    # Two runs of four planned calls (an intent and an outcome record each), then
    # four created calls refreshed.
    assert len(results.read_text().splitlines()) == 8 + 8 + 4


def test_unusable_key_message_hides_key(
    cli: CliRunner, write_job: WriteJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHIRP_API_KEY", "sk_test_app_Mk0é")
    result = cli.invoke(main, ["run", str(write_job(JOB))])
    assert result.exit_code == 4
    assert "Mk0" not in result.output
    assert result.stderr.startswith("error: CHIRP_API_KEY does not look like")


def test_traceback_text_redacted(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # configure_logging replaces sys.excepthook; monkeypatch restores it after.
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    configure_logging(NORMAL)
    try:
        raise RuntimeError("header Authorization: Bearer sk_live_app_Mk1secret")
    except RuntimeError:
        logging.getLogger("chirp_jobs.test").exception("request failed")
    captured = capsys.readouterr()
    assert "Mk1secret" not in captured.err
    assert "Bearer sk_[REDACTED]" in captured.err


def test_redact_keeps_help_text() -> None:
    assert redact("use an app key (sk_live_app_... or sk_test_app_...)") == (
        "use an app key (sk_live_app_... or sk_test_app_...)"
    )
    assert redact("key=sk_admin_abc123,") == "key=sk_[REDACTED],"
