"""The runner's classification of each response, with httpx.MockTransport, and a
run over real HTTP against the sandbox on loopback."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from chirp_jobs.client import SandboxTransport, build_client
from chirp_jobs.jobs import RUN_METADATA
from chirp_jobs.planning import iter_plan
from chirp_jobs.results import ResultsWriter, read_records, read_results
from chirp_jobs.runner import Pacer, Runner, RunSettings
from chirp_jobs.sandbox import Sandbox, SandboxConfig, SandboxServer, start_server
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


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>proxy login</html>"),
        httpx.Response(201, json=[CALL]),
        httpx.Response(201, json={"status": "initiated"}),
        httpx.Response(204),
    ],
    ids=["html", "array", "no-id", "empty"],
)
def test_2xx_without_call_is_unknown(
    tmp_path: Path, write_job: WriteJob, response: httpx.Response
) -> None:
    sent = itertools.count()

    def handler(request: httpx.Request) -> httpx.Response:
        next(sent)
        return response

    records, exit_code = _run(tmp_path, write_job, handler)
    assert exit_code == 1
    assert next(sent) == 3
    assert {record["outcome"] for record in records} == {"unknown"}
    assert records[0]["error"]["code"] == "no_call_object"  # type: ignore[index]
    assert records[0]["call"] is None


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


def _run_with(
    tmp_path: Path, write_job: WriteJob, handler: Handler, **settings: Any
) -> tuple[list[dict[str, Any]], list[float]]:
    job = load_job(write_job(JOB))
    client = build_client(
        "http://chirp.invalid", TEST_KEY, 2.0, httpx.MockTransport(handler)
    )
    run_settings = RunSettings(
        job=job.name, run_id="run-1", target="t", rate=1000, **settings
    )
    slept: list[float] = []
    results = tmp_path / "results.jsonl"
    with client, ResultsWriter(results, fsync=False) as writer:
        Runner(client, writer, run_settings, sleep=slept.append).execute(iter_plan(job))
    return read_records(results), slept


def test_retry_budget_caps_retries(tmp_path: Path, write_job: WriteJob) -> None:
    sent = itertools.count()

    def handler(request: httpx.Request) -> httpx.Response:
        next(sent)
        raise httpx.ConnectError("refused", request=request)

    records, _ = _run_with(tmp_path, write_job, handler, retry_budget=2)
    outcomes = [record for record in records if record["outcome"] == "failed"]
    assert len(outcomes) == 3
    # 3 first attempts and the 2 retries of the budget.
    assert next(sent) == 5
    assert sum(record["attempts"] for record in outcomes) == 5
    assert any("retry budget" in record["error"]["message"] for record in outcomes)


def test_retry_status_opt_in(tmp_path: Path, write_job: WriteJob) -> None:
    answers = itertools.count()

    def handler(request: httpx.Request) -> httpx.Response:
        if next(answers) == 0:
            return httpx.Response(503, json={"error": {"type": "api_error"}})
        return httpx.Response(201, json=CALL)

    records, _ = _run_with(
        tmp_path, write_job, handler, retry_statuses=frozenset([503])
    )
    outcomes = [record for record in records if record["outcome"] == "created"]
    assert len(outcomes) == 3
    assert sorted(record["attempts"] for record in outcomes) == [1, 1, 2]
    # A 503 may have placed the call, so no not_placed record follows it.
    assert [record["outcome"] for record in records].count("not_placed") == 0


def test_intent_precedes_each_attempt(tmp_path: Path, write_job: WriteJob) -> None:
    answers = itertools.count()

    def handler(request: httpx.Request) -> httpx.Response:
        if next(answers) == 0:
            return httpx.Response(429, headers={"Retry-After": "3"})
        return httpx.Response(201, json=CALL)

    records, slept = _run_with(tmp_path, write_job, handler)
    kinds = Counter(record["outcome"] for record in records)
    assert kinds == {"intent": 4, "not_placed": 1, "created": 3}
    throttled = next(r for r in records if r["outcome"] == "not_placed")["key"]
    sequence = [r["outcome"] for r in records if r["key"] == throttled]
    assert sequence == ["intent", "not_placed", "intent", "created"]
    assert 3.0 in slept


def test_429_twice_with_fake_clock(
    tmp_path: Path,
    write_job: WriteJob,
) -> None:
    sandbox = Sandbox(SandboxConfig(throttle_first=2, throttle_retry_after=2))
    server = start_server(sandbox, "127.0.0.1", 0)
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    job = load_job(write_job(JOB.replace(', "+15550100122", "+15550100123"', "")))
    try:
        client = build_client(server.url, TEST_KEY, 2.0)
        settings = RunSettings(job=job.name, run_id="r", target="t", rate=1000)
        with client, ResultsWriter(tmp_path / "r.jsonl", fsync=False) as writer:
            runner = Runner(client, writer, settings, clock=lambda: now[0], sleep=sleep)
            summary = runner.execute(iter_plan(job))
    finally:
        server.shutdown()
        server.server_close()
    assert summary.created == 1
    assert sandbox.request_count == 3
    assert list(sandbox.count_by_key().values()) == [1]
    assert now[0] >= 4.0


def test_pacer_holds_until_reset() -> None:
    now = [100.0]
    slept: list[float] = []
    pacer = Pacer(
        10.0, clock=lambda: now[0], sleep=slept.append, wall_clock=lambda: 5000.0
    )
    pacer.observe_limits(
        httpx.Headers({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "5030"})
    )
    pacer.wait()
    assert slept == [30.0]


def test_pacer_spreads_remaining_requests() -> None:
    pacer = Pacer(10.0, clock=lambda: 0.0, wall_clock=lambda: 5000.0)
    pacer.observe_limits(
        httpx.Headers({"X-RateLimit-Remaining": "4", "X-RateLimit-Reset": "5020"})
    )
    assert pacer.interval == 5.0


def test_pacer_slows_once_per_burst() -> None:
    now = [0.0]
    pacer = Pacer(10.0, clock=lambda: now[0])
    pacer.slow_down()
    pacer.slow_down()
    assert pacer.interval == pytest.approx(0.2)
    now[0] = 1.0
    pacer.slow_down()
    pacer.slow_down()
    now[0] = 2.0
    pacer.slow_down()
    # Capped at 8 times the base spacing of 0.1 s.
    assert pacer.interval == pytest.approx(0.8)
    pacer.speed_up()
    assert pacer.interval == pytest.approx(0.72)


@pytest.mark.parametrize(
    ("config", "outcome", "code"),
    [
        (SandboxConfig(drop_after_create_rate=1.0), "unknown", "no_response"),
        (
            SandboxConfig(late_answer_rate=1.0, late_answer_seconds=0.5),
            "unknown",
            "no_response",
        ),
        (SandboxConfig(refuse_seconds=0.3), "created", None),
    ],
    ids=["drop", "late", "refuse"],
)
def test_in_process_sandbox_faults(
    tmp_path: Path,
    write_job: WriteJob,
    config: SandboxConfig,
    outcome: str,
    code: str | None,
) -> None:
    sandbox = Sandbox(config)
    job = load_job(write_job(JOB))
    client = build_client(
        "http://sandbox.invalid", TEST_KEY, 0.2, SandboxTransport(sandbox)
    )
    settings = RunSettings(job=job.name, run_id="r", target="t", rate=1000)
    with client, ResultsWriter(tmp_path / "r.jsonl", fsync=False) as writer:
        Runner(client, writer, settings).execute(iter_plan(job))
    records = read_results(tmp_path / "r.jsonl")
    assert {record["outcome"] for record in records} == {outcome}
    assert {(record["error"] or {}).get("code") for record in records} == {code}
    assert set(sandbox.count_by_key().values()) == {1}


def test_pacer_follows_reported_limit() -> None:
    from chirp_jobs.runner import LIMIT_SHARE, Pacer

    pacer = Pacer(2.0, follow_limit=True, wall_clock=lambda: 1_000.0)
    pacer.observe_limits(
        httpx.Headers(
            {
                "X-RateLimit-Limit": "1200",
                "X-RateLimit-Remaining": "1199",
                "X-RateLimit-Reset": "1060",
            }
        )
    )
    assert pacer.base_interval == pytest.approx(60 / (1200 * LIMIT_SHARE))
    assert pacer.interval == pytest.approx(pacer.base_interval)


def test_pacer_with_chosen_rate_ignores_limit() -> None:
    from chirp_jobs.runner import Pacer

    pacer = Pacer(2.0, wall_clock=lambda: 1_000.0)
    pacer.observe_limits(httpx.Headers({"X-RateLimit-Limit": "1200"}))
    assert pacer.base_interval == 0.5
    assert pacer.interval == 0.5


@pytest.mark.parametrize(
    ("final_status", "count", "expected"),
    [
        (201, 2, [(0.0, 0), (5.0, 0), (6.0, 1)]),
        (201, 3, [(0.0, 0), (5.0, 0), (6.0, 1), (7.0, 2)]),
        # A failed or unknown repeat was sent too, so the interval counts from it.
        (400, 2, [(0.0, 0), (5.0, 0), (6.0, 1)]),
        (503, 2, [(0.0, 0), (5.0, 0), (6.0, 1)]),
    ],
)
def test_late_repeat_keeps_interval(
    tmp_path: Path,
    write_job: WriteJob,
    final_status: int,
    count: int,
    expected: list[tuple[float, int]],
) -> None:
    job = load_job(
        write_job(
            f"""
            version: 1
            name: late
            calls:
              - from: "+15550100100"
                to: "+15550100121"
                repeat: {{count: {count}, interval: 1s}}
            """,
            "late.yaml",
        )
    )
    now = [0.0]
    sent: list[tuple[float, int]] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    def handler(request: httpx.Request) -> httpx.Response:
        key = json.loads(request.content)["metadata"]["chirpJobsKey"]
        repeat = int(key.rpartition(":")[2])
        sent.append((now[0], repeat))
        # The first request gets a 429 whose Retry-After pauses the run for 5 s,
        # so repeat 0 is placed after the offsets of the later repeats have passed.
        if len(sent) == 1:
            return httpx.Response(429, headers={"Retry-After": "5"})
        if repeat == 0 and final_status != 201:
            return httpx.Response(final_status, json={"error": {"type": "x"}})
        return httpx.Response(201, json=CALL)

    client = build_client(
        "http://chirp.invalid", TEST_KEY, 2.0, httpx.MockTransport(handler)
    )
    settings = RunSettings(job=job.name, run_id="r", target="t", rate=1000)
    with client, ResultsWriter(tmp_path / "r.jsonl", fsync=False) as writer:
        runner = Runner(client, writer, settings, clock=lambda: now[0], sleep=sleep)
        summary = runner.execute(iter_plan(job))

    assert sent == expected
    assert summary.total == count
    assert summary.created == count - (final_status != 201)


def test_huge_body_memory_error_unknown(tmp_path: Path, write_job: WriteJob) -> None:
    count = itertools.count()

    def handler(request: httpx.Request) -> httpx.Response:
        next(count)
        # What reading a huge body does, without allocating it.
        raise MemoryError

    records, exit_code = _run(tmp_path, write_job, handler)
    assert exit_code == 1
    # Each was sent once and may have been placed, so none is sent again.
    assert next(count) == 3
    assert {record["outcome"] for record in records} == {"unknown"}
    assert records[0]["error"] == {
        "type": "invalid_response",
        "code": "unreadable_response",
        "message": "MemoryError",
        "param": None,
    }
