"""Runs as cron starts them: a bare environment, another working folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from chirp_jobs.cli import main
from chirp_jobs.results import read_results
from chirp_jobs.sandbox import Sandbox, SandboxServer
from chirp_jobs.settings import resolve_setting
from chirp_jobs.validation import load_job

from .conftest import SCRIPT, TEST_KEY

BARE_PATH = "PATH=/usr/bin:/bin"
JOB = """\
version: 1
name: bare
calls:
  - from: "+15550100100"
    to: ["+15550100121", "+15550100122"]
"""
JOB_WITH_SETTINGS = (
    JOB
    + """\
settings:
  results: ../results/{job}.jsonl
  rate: 50
  concurrency: 2
"""
)


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """repo/jobs/ with two job files, and an empty folder `elsewhere` beside it."""
    jobs = tmp_path / "repo" / "jobs"
    jobs.mkdir(parents=True)
    (jobs / "bare.yaml").write_text(JOB, encoding="utf-8")
    (jobs / "settled.yaml").write_text(JOB_WITH_SETTINGS, encoding="utf-8")
    (tmp_path / "elsewhere").mkdir()
    return tmp_path


def _bare_run(
    cwd: Path, *args: str, environment: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/usr/bin/env", "-i", BARE_PATH, *environment, str(SCRIPT), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bare_env_default_results_in_working_folder(layout: Path) -> None:
    elsewhere = layout / "elsewhere"
    completed = _bare_run(
        elsewhere, "run", "--sandbox", "--rate", "50", "../repo/jobs/bare.yaml"
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == ""
    assert completed.stderr == ""
    records = read_results(elsewhere / "chirp-results" / "bare.sandbox.jsonl")
    assert [record["outcome"] for record in records] == ["created", "created"]
    assert records[0]["origin"]["file"] == "../repo/jobs/bare.yaml"


def test_bare_env_job_results_beside_job(
    layout: Path, sandbox: Sandbox, served_sandbox: SandboxServer
) -> None:
    completed = _bare_run(
        layout / "elsewhere",
        "run",
        "../repo/jobs/settled.yaml",
        environment=(
            f"CHIRP_API_KEY={TEST_KEY}",
            f"CHIRP_BASE_URL={served_sandbox.url}",
        ),
    )
    assert completed.returncode == 0, completed.stderr
    records = read_results(layout / "repo" / "results" / "bare.jsonl")
    assert len(records) == 2
    assert records[0]["target"] == served_sandbox.url
    assert len(sandbox.created_calls()) == 2
    assert not (layout / "elsewhere" / "chirp-results").exists()


def test_results_precedence_flag_env_job(
    cli: CliRunner, layout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(layout / "elsewhere")
    job = "../repo/jobs/settled.yaml"
    cli.invoke(main, ["run", "--sandbox", job])
    assert (layout / "repo" / "results" / "bare.sandbox.jsonl").is_file()
    monkeypatch.setenv("CHIRP_RESULTS", "from-env/{job}.jsonl")
    cli.invoke(main, ["run", "--sandbox", job])
    assert (layout / "elsewhere" / "from-env" / "bare.jsonl").is_file()
    cli.invoke(main, ["run", "--sandbox", "--results", "from-flag.jsonl", job])
    assert (layout / "elsewhere" / "from-flag.jsonl").is_file()
    assert len(read_results(layout / "elsewhere" / "from-env" / "bare.jsonl")) == 2


def test_rate_precedence(layout: Path) -> None:
    settled = load_job(layout / "repo" / "jobs" / "settled.yaml")
    bare = load_job(layout / "repo" / "jobs" / "bare.yaml")
    assert resolve_setting("rate", 7.0, settled) == 7.0
    assert resolve_setting("rate", None, settled) == 50
    assert resolve_setting("rate", None, bare) == 2.0
    assert resolve_setting("concurrency", None, settled) == 2


def test_invalid_job_setting_exit_2(cli: CliRunner, layout: Path) -> None:
    path = layout / "repo" / "jobs" / "bad.yaml"
    path.write_text(JOB + "settings:\n  rate: 0\n", encoding="utf-8")
    result = cli.invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}:7:9: settings.rate:" in result.stdout
