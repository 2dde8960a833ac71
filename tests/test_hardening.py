"""Faults found by trying to break a run: each keeps calls single and results whole."""

from __future__ import annotations

import json
import os
import resource
import subprocess
from pathlib import Path

from click.testing import CliRunner

from chirp_jobs.cli import main
from chirp_jobs.sandbox import Sandbox, SandboxServer

from .conftest import TEST_KEY, WriteJob

SCRIPT = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "chirp-jobs"


def _job(count: int) -> str:
    recipients = "\n".join(f'      - "+1555010{i:04d}"' for i in range(count))
    return (
        'version: 1\nname: hardening\ncalls:\n  - from: "+15550100100"\n'
        f"    to:\n{recipients}\n"
    )


def _environment(url: str) -> dict[str, str]:
    return {**os.environ, "CHIRP_API_KEY": TEST_KEY, "CHIRP_BASE_URL": url}


def test_full_disk_loses_no_outcome(
    tmp_path: Path, write_job: WriteJob, sandbox: Sandbox, served_sandbox: SandboxServer
) -> None:
    job = write_job(_job(20))
    results = tmp_path / "r.jsonl"

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))

    completed = subprocess.run(
        [str(SCRIPT), "run", "--rate", "100", "--results", str(results), str(job)],
        env=_environment(served_sandbox.url),
        preexec_fn=limit_file_size,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    assert "cannot write" in completed.stderr
    created = {call["id"] for call in sandbox.created_calls()}
    assert created
    recorded = set()
    for line in results.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("call"):
            recorded.add(record["call"]["id"])
    for call_id in created - recorded:
        assert call_id in completed.stderr


def test_symlinked_results_share_one_lock(
    tmp_path: Path, write_job: WriteJob, served_sandbox: SandboxServer
) -> None:
    from chirp_jobs.errors import ResultsLockedError
    from chirp_jobs.results import ResultsWriter

    results = tmp_path / "results.jsonl"
    alias = tmp_path / "alias.jsonl"
    results.touch()
    alias.symlink_to(results)
    with ResultsWriter(results, fsync=False):
        try:
            with ResultsWriter(alias, fsync=False):
                raise AssertionError("a second writer got the same file")
        except ResultsLockedError as error:
            assert "another run" in str(error)


def test_lock_symlink_does_not_truncate(tmp_path: Path, write_job: WriteJob) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    (tmp_path / "r.jsonl.lock").symlink_to(precious)
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--sandbox",
            "--results",
            str(tmp_path / "r.jsonl"),
            str(write_job(_job(1))),
        ],
    )
    assert result.exit_code == 4
    assert precious.read_text() == "keep me\n"


def test_echoed_key_redacted_in_results(tmp_path: Path, write_job: WriteJob) -> None:
    from chirp_jobs.results import ResultsWriter

    results = tmp_path / "r.jsonl"
    with ResultsWriter(results, fsync=False) as writer:
        writer.write({"key": "k", "error": {"message": f"bad key {TEST_KEY}"}})
    assert TEST_KEY not in results.read_text()
    record = json.loads(results.read_text())
    assert record["error"]["message"] == "bad key sk_[REDACTED]"
