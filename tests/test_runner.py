"""The runner's classification of each response, with httpx.MockTransport, and a
run over real HTTP against the sandbox on loopback."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from chirp_jobs.client import build_client
from chirp_jobs.jobs import RUN_METADATA
from chirp_jobs.planning import iter_plan
from chirp_jobs.results import ResultsWriter, read_results
from chirp_jobs.runner import Runner, RunSettings
from chirp_jobs.sandbox import Sandbox, SandboxServer
from chirp_jobs.validation import load_job

from .conftest import TEST_KEY, WriteJob

JOB = """
version: 1
name: runner-test
calls:
  - from: "+15550100100"
    to: ["+15550100121", "+15550100122", "+15550100123"]
"""
CALL = {"id": "call_test_" + "a" * 27, "status": "initiated", "extra": {"kept": 1}}

Handler = Callable[[httpx.Request], httpx.Response]


def _run(
    tmp_path: Path,
    write_job: WriteJob,
    handler: Handler | None = None,
    base_url: str = "http://chirp.invalid",
) -> tuple[list[dict[str, object]], int]:
    job = load_job(write_job(JOB))
    transport = httpx.MockTransport(handler) if handler else None
    client = build_client(base_url, TEST_KEY, timeout=2.0, transport=transport)
    settings = RunSettings(job=job.name, run_id="run-1", target=base_url, rate=1000)
    results = tmp_path / "results.jsonl"
    with client, ResultsWriter(results) as writer:
        runner = Runner(client, writer, settings, sleep=lambda _: None)
        summary = runner.execute(iter_plan(job))
    return read_results(results), summary.exit_code


def test_created_records_call_verbatim(tmp_path: Path, write_job: WriteJob) -> None:
    records, exit_code = _run(
        tmp_path, write_job, lambda request: httpx.Response(201, json=CALL)
    )
    assert exit_code == 0
    assert len(records) == 3
    assert {record["outcome"] for record in records} == {"created"}
    assert records[0]["call"] == CALL
    assert records[0]["httpStatus"] == 201
    assert records[0]["attempts"] == 1
    assert records[0]["runId"] == "run-1"


def test_request_carries_key_and_run(tmp_path: Path, write_job: WriteJob) -> None:
    seen: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        import json

        seen.append(json.loads(request.content))
        assert request.headers["Authorization"] == f"Bearer {TEST_KEY}"
        return httpx.Response(201, json=CALL)

    records, _ = _run(tmp_path, write_job, handler)
    keys = sorted(str(record["key"]) for record in records)
    sent = sorted(str(body["metadata"]["chirpJobsKey"]) for body in seen)  # type: ignore[index]
    assert keys == sent
    assert all(body["metadata"][RUN_METADATA] == "run-1" for body in seen)  # type: ignore[index]


def test_client_error_is_failed(tmp_path: Path, write_job: WriteJob) -> None:
    error = {
        "error": {
            "type": "invalid_request_error",
            "code": "phone_number_not_assigned",
            "message": "not assigned",
            "param": "from",
        }
    }
    records, exit_code = _run(
        tmp_path, write_job, lambda request: httpx.Response(400, json=error)
    )
    assert exit_code == 1
    assert records[0]["outcome"] == "failed"
    assert records[0]["error"] == error["error"]
    assert records[0]["attempts"] == 1


def test_server_error_is_unknown_not_retried(
    tmp_path: Path, write_job: WriteJob
) -> None:
    count = itertools.count()

    def handler(request: httpx.Request) -> httpx.Response:
        next(count)
        return httpx.Response(
            503, json={"error": {"type": "api_error", "message": "x"}}
        )

    records, exit_code = _run(tmp_path, write_job, handler)
    assert exit_code == 1
    assert next(count) == 3
    assert {record["outcome"] for record in records} == {"unknown"}
    assert records[0]["httpStatus"] == 503


def test_read_timeout_is_unknown(tmp_path: Path, write_job: WriteJob) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    records, exit_code = _run(tmp_path, write_job, handler)
    assert exit_code == 1
    assert {record["outcome"] for record in records} == {"unknown"}
    assert records[0]["attempts"] == 1
    assert records[0]["error"]["code"] == "no_response"  # type: ignore[index]


def test_connect_error_retried(tmp_path: Path, write_job: WriteJob) -> None:
    failures = itertools.count()

    def handler(request: httpx.Request) -> httpx.Response:
        if next(failures) < 2:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(201, json=CALL)

    records, exit_code = _run(tmp_path, write_job, handler)
    assert exit_code == 0
    assert {record["outcome"] for record in records} == {"created"}
    # Which calls meet the two failures depends on thread timing; the total does not.
    assert sum(int(str(record["attempts"])) for record in records) == 5


def test_never_connecting_fails_after_attempts(
    tmp_path: Path, write_job: WriteJob
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    records, exit_code = _run(tmp_path, write_job, handler)
    assert exit_code == 1
    assert {record["outcome"] for record in records} == {"failed"}
    assert {record["attempts"] for record in records} == {5}


def test_429_string_error_retried(tmp_path: Path, write_job: WriteJob) -> None:
    answers = itertools.count()

    def handler(request: httpx.Request) -> httpx.Response:
        if next(answers) == 0:
            return httpx.Response(
                429,
                json={"error": "Rate limit exceeded. Try again in 30 seconds."},
                headers={"Retry-After": "1"},
            )
        return httpx.Response(201, json=CALL)

    records, exit_code = _run(tmp_path, write_job, handler)
    assert exit_code == 0
    assert sorted(int(str(record["attempts"])) for record in records) == [1, 1, 2]


@pytest.mark.parametrize("status", [200, 201, 202])
def test_any_2xx_is_created(tmp_path: Path, write_job: WriteJob, status: int) -> None:
    records, _ = _run(
        tmp_path, write_job, lambda request: httpx.Response(status, json=CALL)
    )
    assert {record["outcome"] for record in records} == {"created"}


def test_run_over_loopback_http(
    tmp_path: Path,
    write_job: WriteJob,
    sandbox: Sandbox,
    served_sandbox: SandboxServer,
) -> None:
    records, exit_code = _run(tmp_path, write_job, base_url=served_sandbox.url)
    assert exit_code == 0
    assert len(records) == 3
    counts = sandbox.count_by_key()
    assert sorted(counts) == sorted(str(record["key"]) for record in records)
    assert set(counts.values()) == {1}


def test_repeats_wait_for_their_offset(tmp_path: Path, write_job: WriteJob) -> None:
    job = load_job(
        write_job(
            """
            version: 1
            name: spaced
            calls:
              - from: "+15550100100"
                to: ["+15550100121", "+15550100122"]
                repeat: {count: 2, interval: 1s}
            """,
            "spaced.yaml",
        )
    )
    sent: list[tuple[float, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        key = json.loads(request.content)["metadata"]["chirpJobsKey"]
        sent.append((time.monotonic(), key))
        return httpx.Response(201, json=CALL)

    transport = httpx.MockTransport(handler)
    client = build_client("http://chirp.invalid", TEST_KEY, 2.0, transport)
    settings = RunSettings(job=job.name, run_id="r", target="t", rate=1000)
    start = time.monotonic()
    with client, ResultsWriter(tmp_path / "r.jsonl") as writer:
        Runner(client, writer, settings).execute(iter_plan(job))
    offsets = {key: moment - start for moment, key in sent}
    plan = list(iter_plan(job))
    first_round = [offsets[p.key] for p in plan if p.origin.repeat_index == 0]
    second_round = [offsets[p.key] for p in plan if p.origin.repeat_index == 1]
    # The second recipient's first call is not held behind the first one's repeat.
    assert max(first_round) < 0.5
    assert min(second_round) >= 1.0
