"""Saved plans through the real CLI: fingerprinted, run exactly, or rejected."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from chirp_jobs import __version__
from chirp_jobs.cli import main
from chirp_jobs.jobs import RUN_METADATA
from chirp_jobs.results import read_results
from chirp_jobs.sandbox import Sandbox, SandboxServer
from chirp_jobs.saved_plans import read_plan

from .conftest import TEST_KEY

JOB = """\
version: 1
name: saved
calls:
  - from: "+15550100100"
    to: ["+15550100121", "+15550100122", "+15550100123"]
  - from: "+15550100101"
    to: "+15550100124"
    repeat: 2
"""


@pytest.fixture
def repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with jobs/x.yaml, as in a repository of job files."""
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "x.yaml").write_text(JOB, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHIRP_API_KEY", TEST_KEY)
    return tmp_path


def _save_plan(cli: CliRunner, *extra: str) -> dict[str, object]:
    result = cli.invoke(main, ["plan", "jobs/x.yaml", "-o", "plan.json", *extra])
    assert result.exit_code == 0, result.output
    assert "Plan saved to plan.json" in result.stdout
    document: dict[str, object] = json.loads(Path("plan.json").read_text())
    return document


def _run(cli: CliRunner, server: SandboxServer, *extra: str) -> Result:
    return cli.invoke(
        main,
        ["run", "plan.json", "--base-url", server.url, "--rate", "100", *extra],
    )


def test_plan_file_fingerprints_inputs(cli: CliRunner, repository: Path) -> None:
    document = _save_plan(cli)
    job = document["job"]
    assert isinstance(job, dict)
    digest = hashlib.sha256((repository / "jobs" / "x.yaml").read_bytes()).hexdigest()
    assert job["sha256"] == digest
    assert job["path"] == "jobs/x.yaml"
    assert job["pathFromPlan"] == "jobs/x.yaml"
    assert document["toolVersion"] == __version__
    assert document["settings"] == {"shard": None}
    assert str(document["fingerprint"]).startswith("sha256:")
    assert document["plannedCalls"] == 5


def test_plan_file_matches_json_lines(cli: CliRunner, repository: Path) -> None:
    document = _save_plan(cli)
    lines = cli.invoke(main, ["plan", "--format", "json", "jobs/x.yaml"]).stdout
    assert document["calls"] == [json.loads(line) for line in lines.splitlines()]


def test_run_unchanged_plan_sends_exactly_it(
    cli: CliRunner,
    repository: Path,
    sandbox: Sandbox,
    served_sandbox: SandboxServer,
) -> None:
    document = _save_plan(cli)
    result = _run(cli, served_sandbox, "--results", "out.jsonl")
    assert result.exit_code == 0, result.output
    calls = document["calls"]
    assert isinstance(calls, list)
    planned = {call["key"]: call["request"] for call in calls}
    sent = {}
    for call in sandbox.created_calls():
        metadata = dict(call["metadata"])
        metadata.pop(RUN_METADATA)
        sent[metadata["chirpJobsKey"]] = (
            call["fromAddress"],
            call["toAddress"],
            metadata,
        )
    assert sorted(sent) == sorted(planned)
    for key, request in planned.items():
        assert sent[key] == (request["from"], request["to"], request["metadata"])
    assert sandbox.count_by_key() == {key: 1 for key in planned}
    assert [record["key"] for record in read_results(Path("out.jsonl"))] == [
        call["key"] for call in calls
    ]


def test_run_stale_plan_exit_2_sends_nothing(
    cli: CliRunner,
    repository: Path,
    sandbox: Sandbox,
    served_sandbox: SandboxServer,
) -> None:
    _save_plan(cli)
    job = repository / "jobs" / "x.yaml"
    job.write_text(JOB.replace("+15550100124", "+15550100125"), encoding="utf-8")
    result = _run(cli, served_sandbox, "--results", "out.jsonl")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: plan is stale: jobs/x.yaml changed after the plan was made"
    )
    assert sandbox.request_count == 0
    assert not Path("out.jsonl").exists()


def test_run_edited_plan_file_exit_2(
    cli: CliRunner,
    repository: Path,
    sandbox: Sandbox,
    served_sandbox: SandboxServer,
) -> None:
    document = _save_plan(cli)
    calls = document["calls"]
    assert isinstance(calls, list)
    calls[0]["request"]["to"] = "+15550100199"
    Path("plan.json").write_text(json.dumps(document))
    result = _run(cli, served_sandbox)
    assert result.exit_code == 2
    assert "plan is stale: plan.json was edited after it was made" in result.stderr
    assert sandbox.request_count == 0


def test_run_plan_of_other_version_exit_2(
    cli: CliRunner,
    repository: Path,
    sandbox: Sandbox,
    served_sandbox: SandboxServer,
) -> None:
    document = _save_plan(cli)
    document["toolVersion"] = "0.0.1"
    Path("plan.json").write_text(json.dumps(document))
    result = _run(cli, served_sandbox)
    assert result.exit_code == 2
    assert (
        f"plan is stale: it was made by chirp-jobs 0.0.1 and this is {__version__}"
        in result.stderr
    )
    assert sandbox.request_count == 0


def test_run_plan_without_job_file_exit_2(
    cli: CliRunner, repository: Path, sandbox: Sandbox, served_sandbox: SandboxServer
) -> None:
    _save_plan(cli)
    (repository / "jobs" / "x.yaml").unlink()
    result = _run(cli, served_sandbox)
    assert result.exit_code == 2
    assert "plan is stale: jobs/x.yaml is missing" in result.stderr
    assert sandbox.request_count == 0


def test_plan_found_from_other_folder(
    cli: CliRunner,
    repository: Path,
    sandbox: Sandbox,
    served_sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _save_plan(cli)
    elsewhere = repository / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = cli.invoke(
        main,
        ["run", "../plan.json", "--base-url", served_sandbox.url, "--rate", "100"],
    )
    assert result.exit_code == 0, result.output
    assert len(sandbox.created_calls()) == 5


def test_run_plan_other_shard_exit_2(
    cli: CliRunner, repository: Path, sandbox: Sandbox, served_sandbox: SandboxServer
) -> None:
    _save_plan(cli, "--shard", "0/2")
    result = _run(cli, served_sandbox, "--shard", "1/2")
    assert result.exit_code == 2
    assert "--shard 1/2 does not match the saved plan plan.json" in result.stderr
    assert sandbox.request_count == 0


def test_run_not_a_plan_exit_2(cli: CliRunner, repository: Path) -> None:
    Path("other.json").write_text('{"calls": []}')
    result = cli.invoke(main, ["run", "--sandbox", "other.json"])
    assert result.exit_code == 2
    assert "error: other.json is not a saved plan" in result.stderr


def test_plan_table_totals_per_channel_and_from(
    cli: CliRunner, repository: Path
) -> None:
    result = cli.invoke(main, ["plan", "jobs/x.yaml"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "5 planned calls from 2 entries in `calls`" in lines
    assert "By channel: pstn→pstn 5" in lines
    assert "By from: +15550100100 3, +15550100101 2" in lines


def test_run_malformed_plan_exit_2(
    cli: CliRunner, repository: Path, sandbox: Sandbox, served_sandbox: SandboxServer
) -> None:
    document = _save_plan(cli)
    del document["job"]
    Path("plan.json").write_text(json.dumps(document))
    result = _run(cli, served_sandbox)
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: invalid saved plan plan.json: missing or malformed field ('job')"
    )
    assert sandbox.request_count == 0


def test_saved_plan_keeps_repeat_spacing(cli: CliRunner, repository: Path) -> None:
    (repository / "jobs" / "x.yaml").write_text(
        JOB.replace("repeat: 2", "repeat: {count: 2, interval: 90s}"),
        encoding="utf-8",
    )
    _save_plan(cli)
    calls = read_plan(Path("plan.json")).calls
    spacing = [(call.repeat_count, call.interval_seconds) for call in calls]
    # The saved format stores no interval, so it comes from the job file and the
    # runner spaces the two repeats of +15550100124 by the job's 90 s.
    assert spacing == [(1, 0), (1, 0), (1, 0), (2, 90), (2, 90)]
