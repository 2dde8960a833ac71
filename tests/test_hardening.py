"""Faults found by trying to break a run: each keeps calls single and results whole."""

from __future__ import annotations

import json
import os
import resource
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from chirp_jobs.cli import main
from chirp_jobs.sandbox import Sandbox, SandboxServer

from .conftest import SCRIPT, TEST_KEY, WriteJob


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


def test_resume_after_job_edit_refused(
    tmp_path: Path,
    write_job: WriteJob,
    sandbox: Sandbox,
    served_sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHIRP_API_KEY", TEST_KEY)
    job = write_job(_job(3))
    args = [
        "run",
        "--base-url",
        served_sandbox.url,
        "--rate",
        "100",
        "--results",
        str(tmp_path / "r.jsonl"),
        "--run-id",
        "daily",
    ]
    first = CliRunner().invoke(main, [*args, str(job)])
    assert first.exit_code == 0, first.output
    job.write_text(
        job.read_text().replace(
            "name: hardening",
            "name: hardening\ndefaults:\n  metadata: {campaign: spring}",
        )
    )
    again = CliRunner().invoke(main, [*args, str(job)])
    assert again.exit_code == 2
    assert "the job changed since the run started" in again.output
    assert len(sandbox.created_calls()) == 3


def _unknown_for(
    tmp_path: Path, write_job: WriteJob, respond: Callable[[], httpx.Response]
) -> dict[str, Any]:
    from .test_runner import _run

    records, exit_code = _run(tmp_path, write_job, lambda request: respond())
    assert exit_code == 1
    assert {record["outcome"] for record in records} == {"unknown"}
    return records[0]


def test_undecodable_body_is_unknown(tmp_path: Path, write_job: WriteJob) -> None:
    def respond() -> httpx.Response:
        return httpx.Response(
            201,
            headers={"Content-Encoding": "gzip"},
            stream=httpx.ByteStream(b"not gzip at all"),
        )

    record = _unknown_for(tmp_path, write_job, respond)
    assert record["error"]["code"] == "unreadable_response"


def test_deeply_nested_body_is_unknown(tmp_path: Path, write_job: WriteJob) -> None:
    record = _unknown_for(
        tmp_path, write_job, lambda: httpx.Response(201, content=b"[" * 200_000)
    )
    assert record["error"]["code"] == "no_call_object"


def test_huge_retry_after_is_capped() -> None:
    from chirp_jobs.runner import MAX_WAIT_SECONDS, _retry_after

    for value in ("inf", "1e12", "Fri, 01 Jan 2100 00:00:00 GMT"):
        response = httpx.Response(429, headers={"Retry-After": value})
        assert _retry_after(response) == MAX_WAIT_SECONDS, value
    assert _retry_after(httpx.Response(429, headers={"Retry-After": "nan"})) is None
    assert _retry_after(httpx.Response(429, headers={"Retry-After": "-5"})) == 0.0


@pytest.mark.parametrize("value", ["nan", "inf", "1e300"])
def test_non_finite_timeout_rejected(
    value: str, tmp_path: Path, write_job: WriteJob
) -> None:
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--sandbox",
            "--timeout",
            value,
            "--results",
            str(tmp_path / "r.jsonl"),
            str(write_job(_job(1))),
        ],
    )
    assert result.exit_code == 2
    assert "--timeout" in result.output
    assert not (tmp_path / "r.jsonl").exists()


def test_forged_saved_plan_rejected(tmp_path: Path, write_job: WriteJob) -> None:
    from chirp_jobs import saved_plans

    job = write_job(_job(2))
    plan = tmp_path / "plan.json"
    made = CliRunner().invoke(main, ["plan", str(job), "-o", str(plan)])
    assert made.exit_code == 0, made.output
    document = json.loads(plan.read_text())
    document["calls"][0]["request"]["to"] = "+19995550000"
    document["calls"].append(document["calls"][1])
    inputs = {key: document[key] for key in ("job", "toolVersion", "settings")}
    document["fingerprint"] = saved_plans._fingerprint(inputs, document["calls"])
    plan.write_text(json.dumps(document))
    results = tmp_path / "r.jsonl"
    result = CliRunner().invoke(
        main, ["run", "--sandbox", "--results", str(results), str(plan)]
    )
    assert result.exit_code == 2
    assert "plan does not match its job file" in result.output
    assert not results.exists()


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("CHIRP_SHARD", "CHIRP_SHARD is set but empty"),
        ("CHIRP_BASE_URL", "CHIRP_BASE_URL is set but empty"),
    ],
)
def test_empty_variable_rejected(
    variable: str,
    message: str,
    tmp_path: Path,
    write_job: WriteJob,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(variable, "")
    monkeypatch.setenv("CHIRP_API_KEY", TEST_KEY)
    results = tmp_path / "r.jsonl"
    result = CliRunner().invoke(
        main, ["run", "--results", str(results), str(write_job(_job(1)))]
    )
    assert result.exit_code == 4
    assert message in result.output
    assert not results.exists()


@pytest.mark.parametrize("results", [".", "", "/", "job.yaml"])
def test_bad_results_path_rejected(
    results: str, tmp_path: Path, write_job: WriteJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    job = write_job(_job(1))
    before = job.read_text()
    result = CliRunner().invoke(
        main, ["run", "--sandbox", "--results", results, str(job)]
    )
    assert result.exit_code == 4
    assert "invalid results file" in result.output
    assert job.read_text() == before


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://user:sk_test_app_zz@127.0.0.1:9", "user name or password"),
        ("http://127.0.0.1:abc", "Invalid port"),
    ],
)
def test_bad_base_url_rejected(
    url: str, message: str, write_job: WriteJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHIRP_API_KEY", TEST_KEY)
    result = CliRunner().invoke(
        main, ["run", "--base-url", url, str(write_job(_job(1)))]
    )
    assert result.exit_code == 4
    assert message in result.output
    assert "sk_test_app_zz" not in result.output


def test_plan_output_must_be_json(write_job: WriteJob) -> None:
    job = write_job(_job(1))
    before = job.read_text()
    result = CliRunner().invoke(main, ["plan", str(job), "-o", str(job)])
    assert result.exit_code == 2
    assert "saved plans end in .json" in result.output
    assert job.read_text() == before


def test_empty_shard_prints_empty_table(write_job: WriteJob) -> None:
    result = CliRunner().invoke(
        main, ["plan", "--shard", "0/10", str(write_job(_job(1)))]
    )
    assert result.exit_code == 0, result.output
    assert "0 planned calls in shard 0/10" in result.output


@pytest.mark.parametrize("shard", ["", "0/²", "0/" + "9" * 5000, "²/3"])
def test_bad_shard_rejected(shard: str, write_job: WriteJob) -> None:
    result = CliRunner().invoke(
        main, ["plan", "--shard", shard, str(write_job(_job(1)))]
    )
    assert result.exit_code == 2
    assert "invalid shard" in result.output


def test_validate_fifo_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "job.yaml"
    os.mkfifo(fifo)
    result = CliRunner().invoke(main, ["validate", str(fifo)])
    assert result.exit_code == 2
    assert f"{fifo}: not a regular file" in result.output


def test_validate_folder_skips_hidden(tmp_path: Path, write_job: WriteJob) -> None:
    write_job(_job(1), "job.yaml")
    hidden = tmp_path / ".github" / "workflows"
    hidden.mkdir(parents=True)
    (hidden / "ci.yaml").write_text("on: push\n")
    result = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "1 job file valid" in result.output


def test_concurrent_intents_share_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    from chirp_jobs.results import ResultsWriter

    real_fsync = os.fsync
    calls: list[int] = []

    def slow_fsync(descriptor: int) -> None:
        calls.append(descriptor)
        time.sleep(0.02)
        real_fsync(descriptor)

    # results.py calls os.fsync through the os module, so patching it there
    # counts every fsync of the writer.
    monkeypatch.setattr(os, "fsync", slow_fsync)
    path = tmp_path / "r.jsonl"
    with ResultsWriter(path) as writer:
        lock = threading.Lock()

        def intent(index: int) -> None:
            with lock:
                writer.write({"key": f"k{index}", "outcome": "intent"})
            writer.sync()

        threads = [threading.Thread(target=intent, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        during_run = len(calls)
    assert len(path.read_text().splitlines()) == 8
    # Each sync waits for an fsync that began after its write, so no intent is
    # left unsynced, but eight concurrent intents need fewer than eight fsyncs.
    assert 1 <= during_run < 8
