"""Each command and each exit code through the real CLI."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from chirp_jobs import __version__
from chirp_jobs.cli import main
from chirp_jobs.results import ResultsLock, read_results
from chirp_jobs.sandbox import Sandbox, SandboxServer

from .conftest import JOBS, REPOSITORY, SCRIPT, TEST_KEY, WriteJob

CALL_ID = re.compile(r"^call_(?:test_)?[a-zA-Z0-9]{27}$")
SMALL_JOB = """
version: 1
name: cli-test
calls:
  - from: "+15550100100"
    to: ["+15550100121", "+15550100122"]
"""


def test_version(cli: CliRunner) -> None:
    result = cli.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


@pytest.mark.parametrize("command", ["validate", "plan", "run", "sandbox", "schema"])
def test_every_command_has_help(cli: CliRunner, command: str) -> None:
    result = cli.invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_run_help_gives_units(cli: CliRunner) -> None:
    output = cli.invoke(main, ["run", "--help"]).output
    assert "in seconds" in output
    assert "per second" in output


def test_validate_examples_exit_0(cli: CliRunner) -> None:
    result = cli.invoke(main, ["validate", str(JOBS)])
    assert result.exit_code == 0
    assert "job files valid" in result.output


def test_validate_invalid_exit_2(cli: CliRunner, write_job: WriteJob) -> None:
    path = write_job(SMALL_JOB.replace("to:", "toChanel: pstn\n    to:"))
    result = cli.invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}:5:5: calls[0].toChanel: unknown field `toChanel`" in result.output


def test_validate_no_files_exit_2(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(main, ["validate", str(tmp_path)])
    assert result.exit_code == 2
    assert "no job files" in result.output


def test_usage_error_exit_2(cli: CliRunner) -> None:
    result = cli.invoke(main, ["run", "--no-such-option", "x.yaml"])
    assert result.exit_code == 2


def test_plan_table_and_total(cli: CliRunner, write_job: WriteJob) -> None:
    result = cli.invoke(main, ["plan", str(write_job(SMALL_JOB))])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["key", "from", "to", "channels", "at", "metadata"]
    assert "+15550100121" in lines[1]
    assert "pstn→pstn" in lines[1]
    assert "2 planned calls" in result.output
    assert "nothing was sent" in result.output


def test_plan_json_lines(cli: CliRunner, write_job: WriteJob) -> None:
    result = cli.invoke(main, ["plan", "--format", "json", str(write_job(SMALL_JOB))])
    assert result.exit_code == 0
    records = [json.loads(line) for line in result.output.splitlines()]
    assert len(records) == 2
    assert records[0]["request"]["to"] == "+15550100121"
    assert records[0]["request"]["metadata"]["chirpJobsKey"] == records[0]["key"]


def test_plan_invalid_exit_2(cli: CliRunner, write_job: WriteJob) -> None:
    path = write_job(SMALL_JOB.replace('"+15550100121"', "+15550100121"))
    result = cli.invoke(main, ["plan", str(path)])
    assert result.exit_code == 2
    assert "quote phone numbers" in result.output
    assert "Traceback" not in result.output


def test_schema_prints_schema(cli: CliRunner) -> None:
    result = cli.invoke(main, ["schema"])
    assert result.exit_code == 0
    printed = json.loads(result.output)
    on_disk = json.loads((REPOSITORY / "schemas" / "job.schema.json").read_text())
    assert printed == on_disk


def test_run_sandbox_exit_0(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob
) -> None:
    results = tmp_path / "out.jsonl"
    result = cli.invoke(
        main,
        [
            "run",
            "--sandbox",
            "--print",
            "--rate",
            "100",
            "--results",
            str(results),
            str(write_job(SMALL_JOB)),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2 created, 0 failed, 0 unknown" in result.output
    assert "sandbox" in result.output.splitlines()[-1]
    records = read_results(results)
    assert len(records) == 2
    assert all(CALL_ID.match(record["call"]["id"]) for record in records)


def test_run_missing_key_exit_4(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHIRP_API_KEY", raising=False)
    results = tmp_path / "out.jsonl"
    result = cli.invoke(
        main, ["run", "-q", "--results", str(results), str(write_job(SMALL_JOB))]
    )
    assert result.exit_code == 4
    assert "CHIRP_API_KEY" in result.output
    assert not results.exists()


def test_run_admin_key_exit_4(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHIRP_API_KEY", "sk_admin_marker123")
    result = cli.invoke(
        main,
        [
            "run",
            "-q",
            "--results",
            str(tmp_path / "r.jsonl"),
            str(write_job(SMALL_JOB)),
        ],
    )
    assert result.exit_code == 4
    assert "admin key" in result.output
    assert "marker123" not in result.output


def test_run_locked_results_exit_3(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob
) -> None:
    results = tmp_path / "out.jsonl"
    lock = ResultsLock(results)
    lock.acquire()
    try:
        result = cli.invoke(
            main,
            ["run", "--sandbox", "--results", str(results), str(write_job(SMALL_JOB))],
        )
    finally:
        lock.release()
    assert result.exit_code == 3
    assert f"process {os.getpid()}" in result.output
    assert not results.exists() or results.read_text() == ""


def test_run_invalid_job_exit_2_sends_nothing(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob
) -> None:
    results = tmp_path / "out.jsonl"
    path = write_job(SMALL_JOB.replace("+15550100122", "+1555 0100 122"))
    result = cli.invoke(
        main, ["run", "--sandbox", "--results", str(results), str(path)]
    )
    assert result.exit_code == 2
    assert not results.exists()


# The console script in subprocesses, over real HTTP on loopback -----------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def sandbox_process() -> Iterator[tuple[str, list[str]]]:
    """Start `chirp-jobs sandbox` on a free loopback port; yield its URL and args."""
    port = _free_port()
    args = ["--assigned-number", "+15550100100", "--assigned-number", "+15550100101"]
    process = subprocess.Popen(
        [str(SCRIPT), "sandbox", "--host", "127.0.0.1", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"{url}/_sandbox/calls", timeout=0.5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("chirp-jobs sandbox did not start") from None
                time.sleep(0.05)
        yield url, args
    finally:
        process.terminate()
        process.wait(timeout=10)


def _run_script(job: Path, results: Path, url: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CHIRP_API_KEY": TEST_KEY, "CHIRP_BASE_URL": url}
    return subprocess.run(
        [str(SCRIPT), "run", "--rate", "50", "--results", str(results), str(job)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_script_run_against_served_sandbox(
    sandbox_process: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, _ = sandbox_process
    job = JOBS / "appointment-reminders.yaml"
    planned = subprocess.run(
        [str(SCRIPT), "plan", "--format", "json", str(job)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    results = tmp_path / "results.jsonl"
    completed = _run_script(job, results, url)
    assert completed.returncode == 0, completed.stderr
    records = read_results(results)
    assert len(records) == len(planned)
    created = httpx.get(f"{url}/_sandbox/calls").json()["calls"]
    assert len(created) == len(planned)
    keys = sorted(call["metadata"]["chirpJobsKey"] for call in created)
    assert keys == sorted(json.loads(line)["key"] for line in planned)
    assert TEST_KEY not in results.read_text()


def test_script_run_failed_call_exit_1(
    sandbox_process: tuple[str, list[str]], tmp_path: Path, write_job: WriteJob
) -> None:
    url, _ = sandbox_process
    job = write_job(SMALL_JOB.replace("+15550100100", "+15550100199"))
    results = tmp_path / "results.jsonl"
    completed = _run_script(job, results, url)
    assert completed.returncode == 1
    # Not a terminal, as under cron: the failure goes to stderr only.
    assert completed.stdout == ""
    assert "error: 0 created, 2 failed" in completed.stderr
    records = read_results(results)
    assert [record["error"]["code"] for record in records] == [
        "phone_number_not_assigned",
        "phone_number_not_assigned",
    ]


def test_validate_missing_file_has_no_position(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    result = cli.invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}: file not found\n" in result.output
    assert "1 problem in 1 of 1 job file" in result.output


def test_sandbox_trial_does_not_satisfy_real_run(
    cli: CliRunner,
    tmp_path: Path,
    write_job: WriteJob,
    sandbox: Sandbox,
    served_sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = str(write_job(SMALL_JOB))
    results = str(tmp_path / "shared.jsonl")
    common = ["--rate", "100", "--results", results, "--run-id", "daily-{date}"]
    trial = cli.invoke(main, ["run", "--sandbox", *common, job])
    assert trial.exit_code == 0, trial.output
    monkeypatch.setenv("CHIRP_API_KEY", TEST_KEY)
    real = ["run", "--base-url", served_sandbox.url, *common, job]
    first = cli.invoke(main, real)
    assert first.exit_code == 0, first.output
    assert len(sandbox.created_calls()) == 2
    again = cli.invoke(main, real)
    assert again.exit_code == 0, again.output
    assert len(sandbox.created_calls()) == 2


def test_sandbox_run_default_results_apart(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(
        main, ["run", "--sandbox", "--rate", "100", str(write_job(SMALL_JOB))]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "chirp-results" / "cli-test.sandbox.jsonl").is_file()
    assert not (tmp_path / "chirp-results" / "cli-test.jsonl").exists()


def test_missing_key_reported_before_plan(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHIRP_API_KEY", raising=False)
    args = ["run", "--print", "--results", str(tmp_path / "r.jsonl")]
    result = cli.invoke(main, [*args, str(write_job(SMALL_JOB))])
    assert result.exit_code == 4
    assert "CHIRP_API_KEY" in result.output
    assert "planned calls" not in result.output
    assert "Target:" not in result.output


def test_help_imports_no_heavy_module() -> None:
    # A shell completion or a typo pays for the start-up of `--help`. Each of these
    # modules costs it milliseconds, and only some commands need them.
    script = (
        "import sys, chirp_jobs.cli\n"
        "heavy = ('logging', 'json', 'httpx', 'yaml', 'jsonschema', 'fastjsonschema')\n"
        "print(sorted(name for name in heavy if name in sys.modules))"
    )
    completed = subprocess.run(
        [str(SCRIPT.parent / "python"), "-c", script],
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout == "[]\n"


def test_log_formats_match_logger() -> None:
    from chirp_jobs import cli, logs

    assert cli.LOG_FORMATS == logs.LOG_FORMATS
