"""Faults, crashes, signals and resumes over real HTTP against the sandbox on
loopback: no call is ever created twice and every planned call gets one outcome."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from chirp_jobs.cli import main
from chirp_jobs.errors import ConfigError
from chirp_jobs.planning import iter_plan
from chirp_jobs.results import read_records, read_results
from chirp_jobs.sandbox import (
    DROP_AFTER_CREATE,
    LATE_ANSWER,
    SERVER_ERROR,
    SERVER_ERROR_AFTER_CREATE,
    Sandbox,
    SandboxConfig,
    SandboxResponse,
    start_server,
)
from chirp_jobs.validation import load_job

from .conftest import SCRIPT, WriteJob
from .conftest import run_args as _run_args

FAKE_KEY = "sk_test_app_fake123"
# High enough that the X-RateLimit-Remaining header never makes the runner wait for
# the next minute, unless a test is about rate limits.
UNLIMITED = 1_000_000


def _job_text(name: str, recipients: int) -> str:
    numbers = ", ".join(f'"+1555020{index:04d}"' for index in range(recipients))
    return f"""
        version: 1
        name: {name}
        calls:
          - from: "+15550100100"
            to: [{numbers}]
        """


@contextmanager
def _serving(sandbox: Sandbox) -> Iterator[str]:
    server = start_server(sandbox, "127.0.0.1", 0)
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()


def _invoke(cli: CliRunner, args: list[str]) -> int:
    result = cli.invoke(main, args, env={"CHIRP_API_KEY": FAKE_KEY})
    assert "Traceback" not in result.output, result.output
    return result.exit_code


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIRP_")}
    env["CHIRP_API_KEY"] = FAKE_KEY
    return env


def _start(
    args: list[str], stderr: int = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(SCRIPT), *args], env=_env(), stdout=subprocess.DEVNULL, stderr=stderr
    )


def _plan_keys(job: Path) -> list[str]:
    return [planned.key for planned in iter_plan(load_job(job))]


def _assert_one_outcome_each(results: Path, keys: list[str]) -> list[dict[str, Any]]:
    records = read_results(results)
    per_key = Counter(record["key"] for record in records)
    assert sorted(per_key) == sorted(keys)
    assert set(per_key.values()) == {1}
    return records


def _assert_never_twice(sandbox: Sandbox) -> None:
    counts = sandbox.count_by_key()
    assert not counts or max(counts.values()) == 1, counts.most_common(3)


# The fault matrix -----------------------------------------------------------------

FAULTS = {
    "none": SandboxConfig(),
    "rate-limit-per-second": SandboxConfig(rate_limit_per_second=4),
    "throttle-first": SandboxConfig(throttle_first=2, throttle_retry_after=0),
    "server-error": SandboxConfig(server_error_rate=0.5),
    "latency": SandboxConfig(latency_seconds=0.2),
    "refuse": SandboxConfig(refuse_seconds=0.5),
    "drop-after-create": SandboxConfig(drop_after_create_rate=0.5),
    "late-answer": SandboxConfig(late_answer_rate=0.5, late_answer_seconds=1.0),
    "rejected": SandboxConfig(assigned_numbers=frozenset(["+15550100199"])),
}
# Faults after which the call may exist but the answer says nothing definite.
_POSSIBLY_PLACED = {
    SERVER_ERROR,
    SERVER_ERROR_AFTER_CREATE,
    DROP_AFTER_CREATE,
    LATE_ANSWER,
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_matrix(
    fault: str, cli: CliRunner, tmp_path: Path, write_job: WriteJob
) -> None:
    config = FAULTS[fault]
    config.seed = 11
    config.rate_limit = UNLIMITED
    sandbox = Sandbox(config)
    job = write_job(_job_text("matrix", 8))
    results = tmp_path / "results.jsonl"
    with _serving(sandbox) as url:
        args = _run_args(job, results, url, "--timeout", "0.5")
        exit_code = _invoke(cli, args)

    _assert_never_twice(sandbox)
    records = _assert_one_outcome_each(results, _plan_keys(job))
    outcomes = {record["key"]: record["outcome"] for record in records}
    bad = [key for key, outcome in outcomes.items() if outcome != "created"]
    assert exit_code == (1 if bad else 0)

    faulted = {
        key for kind, key in sandbox.injected_faults() if kind in _POSSIBLY_PLACED
    }
    unknown = {key for key, outcome in outcomes.items() if outcome == "unknown"}
    assert unknown == faulted
    created_in_sandbox = set(sandbox.count_by_key())
    recorded_created = {key for key, o in outcomes.items() if o == "created"}
    assert recorded_created <= created_in_sandbox
    assert created_in_sandbox - recorded_created <= unknown
    if fault == "rejected":
        assert set(outcomes.values()) == {"failed"}
        assert records[0]["error"]["code"] == "phone_number_not_assigned"
    elif not faulted:
        assert set(outcomes.values()) == {"created"}
    else:
        assert unknown, "the seed should inject at least one fault"
    if fault == "throttle-first":
        assert {record["attempts"] for record in records} == {3}
    if fault == "refuse":
        assert max(record["attempts"] for record in records) > 1


def test_fault_shares_over_one_rejected() -> None:
    with pytest.raises(ConfigError, match=r"add up to 1\.2;"):
        SandboxConfig(server_error_rate=0.6, late_answer_rate=0.6)


# Timeouts and 429 ---------------------------------------------------------------


def test_timeout_before_late_answer_is_unknown(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob
) -> None:
    sandbox = Sandbox(SandboxConfig(late_answer_rate=1.0, late_answer_seconds=3.0))
    job = write_job(_job_text("late", 1))
    results = tmp_path / "results.jsonl"
    with _serving(sandbox) as url:
        exit_code = _invoke(cli, _run_args(job, results, url, "--timeout", "1"))
        time.sleep(0.1)
        posts = sandbox.request_count

    assert exit_code == 1
    records = read_results(results)
    assert len(records) == 1
    assert records[0]["outcome"] == "unknown"
    assert records[0]["error"]["code"] == "no_response"
    assert records[0]["attempts"] == 1
    assert posts == 1
    assert list(sandbox.count_by_key().values()) == [1]


@pytest.mark.slow
def test_429_twice_then_created_waits(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob
) -> None:
    sandbox = Sandbox(SandboxConfig(throttle_first=2, throttle_retry_after=2))
    job = write_job(_job_text("throttled", 1))
    results = tmp_path / "results.jsonl"
    with _serving(sandbox) as url:
        started = time.monotonic()
        exit_code = _invoke(cli, _run_args(job, results, url))
        elapsed = time.monotonic() - started

    assert exit_code == 0
    records = read_results(results)
    assert [record["outcome"] for record in records] == ["created"]
    assert records[0]["attempts"] == 3
    assert sandbox.request_count == 3
    assert list(sandbox.count_by_key().values()) == [1]
    # Two Retry-After: 2 answers: the runner may not send again sooner.
    assert elapsed >= 4.0


# Run identity and resume --------------------------------------------------------


def test_same_run_id_places_nothing_again(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob
) -> None:
    sandbox = Sandbox(SandboxConfig(rate_limit=UNLIMITED))
    job = write_job(_job_text("daily", 3))
    results = tmp_path / "results.jsonl"
    with _serving(sandbox) as url:
        args = _run_args(job, results, url, "--run-id", "daily-{date}")
        first = _invoke(cli, args)
        second = _invoke(cli, args)
        other_run = _invoke(cli, _run_args(job, results, url))

    assert first == 0
    assert second == 0
    assert other_run == 0
    records = read_results(results)
    assert len(records) == 6
    run_ids = Counter(record["runId"] for record in records)
    assert run_ids[f"daily-{time.strftime('%Y-%m-%d')}"] == 3
    assert sorted(sandbox.count_by_key().values()) == [2, 2, 2]


def test_url_spelling_resume_places_nothing(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob
) -> None:
    sandbox = Sandbox(SandboxConfig(rate_limit=UNLIMITED))
    job = write_job(_job_text("daily", 3))
    results = tmp_path / "results.jsonl"
    with _serving(sandbox) as url:
        spellings = [url, url + "/", url.replace("http://", "HTTP://") + "//"]
        codes = [
            _invoke(cli, _run_args(job, results, spelling, "--run-id", "daily"))
            for spelling in spellings
        ]

    # One API under three spellings is one target: the resumes place nothing.
    assert codes == [0, 0, 0]
    assert sorted(sandbox.count_by_key().values()) == [1, 1, 1]
    assert {record["target"] for record in read_results(results)} == {url}


def test_live_resume_other_target_exit_2(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob
) -> None:
    sandbox = Sandbox(SandboxConfig(rate_limit=UNLIMITED))
    job = write_job(_job_text("daily", 2))
    results = tmp_path / "results.jsonl"
    earlier = {
        "key": _plan_keys(job)[0],
        "runId": "daily",
        "target": "https://calls.example.test",
        "keyMode": "live",
        "outcome": "created",
        "sentAt": "2026-12-04T08:00:00.000Z",
    }
    results.write_text(json.dumps(earlier) + "\n")
    with _serving(sandbox) as url:
        result = cli.invoke(
            main,
            _run_args(job, results, url, "--run-id", "daily"),
            env={"CHIRP_API_KEY": "sk_live_app_fake123"},
        )

    assert result.exit_code == 2
    assert (
        "error: run daily in " in result.output
        and " placed live calls through https://calls.example.test, not "
        f"{url}: resuming here could ring the same people again. Resume with "
        "--base-url https://calls.example.test, or use a new --run-id"
        in result.output
    )
    assert sandbox.request_count == 0
    assert results.read_text() == json.dumps(earlier) + "\n"


def test_retry_failed_places_failed_only(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob
) -> None:
    sandbox = Sandbox(
        SandboxConfig(rate_limit=UNLIMITED, assigned_numbers=frozenset(["+1555"]))
    )
    job = write_job(_job_text("retry", 2))
    results = tmp_path / "results.jsonl"
    with _serving(sandbox) as url:
        args = _run_args(job, results, url, "--run-id", "r1")
        first = _invoke(cli, args)
        without_flag = _invoke(cli, args)
        sandbox.config.assigned_numbers = None
        with_flag = _invoke(cli, [*args[:-1], "--retry-failed", args[-1]])
        again = _invoke(cli, [*args[:-1], "--retry-failed", args[-1]])

    assert (first, without_flag, with_flag, again) == (1, 1, 0, 0)
    outcomes = [record["outcome"] for record in read_results(results)]
    assert outcomes == ["failed", "failed", "created", "created"]
    assert sorted(sandbox.count_by_key().values()) == [1, 1]


def test_in_flight_intent_resumed_as_unknown(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob
) -> None:
    sandbox = Sandbox(SandboxConfig(rate_limit=UNLIMITED))
    job = write_job(_job_text("intent", 2))
    keys = _plan_keys(job)
    results = tmp_path / "results.jsonl"
    intent = {
        "key": keys[0],
        "job": "intent",
        "runId": "r1",
        "target": "",
        "keyMode": "test",
        "outcome": "intent",
        "httpStatus": None,
        "request": {"from": "+15550100100"},
        "call": None,
        "error": None,
        "attempts": 1,
        "sentAt": "2026-01-01T00:00:00.000Z",
        "finishedAt": None,
        "origin": {},
    }
    with _serving(sandbox) as url:
        results.write_text(json.dumps({**intent, "target": url}) + "\n")
        exit_code = _invoke(cli, _run_args(job, results, url, "--run-id", "r1"))

    assert exit_code == 1
    outcomes = {record["key"]: record for record in read_results(results)}
    assert outcomes[keys[0]]["outcome"] == "unknown"
    assert outcomes[keys[0]]["error"]["type"] == "interrupted"
    assert outcomes[keys[1]]["outcome"] == "created"
    assert list(sandbox.count_by_key()) == [keys[1]]


def test_invalid_run_id_exit_4(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob
) -> None:
    job = write_job(_job_text("bad", 1))
    results = tmp_path / "results.jsonl"
    args = _run_args(job, results, "http://127.0.0.1:9", "--run-id", "a b")
    result = cli.invoke(main, args, env={"CHIRP_API_KEY": FAKE_KEY})
    assert result.exit_code == 4
    assert "invalid run id 'a b'" in result.output
    assert not results.exists()


def test_retry_on_4xx_status_exit_4(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob
) -> None:
    job = write_job(_job_text("bad", 1))
    args = _run_args(
        job, tmp_path / "r.jsonl", "http://127.0.0.1:9", "--retry-on-status", "404"
    )
    result = cli.invoke(main, args, env={"CHIRP_API_KEY": FAKE_KEY})
    assert result.exit_code == 4
    assert "only 5xx statuses can be retried" in result.output


# Repeat spacing -----------------------------------------------------------------

SPACED_JOB = """
    version: 1
    name: spaced
    calls:
      - from: "+15550100100"
        to: "+15550100121"
      - from: "+15550100100"
        to: "+15550100122"
        repeat: {count: 2, interval: 2s}
    """


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize("earlier", ["intent", "failed"])
def test_resume_spaces_repeat_from_record(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob, earlier: str
) -> None:
    sandbox = Sandbox(SandboxConfig(rate_limit=UNLIMITED))
    job = write_job(SPACED_JOB)
    first, repeat_0, repeat_1 = _plan_keys(job)
    results = tmp_path / "results.jsonl"
    now = datetime.now(UTC)
    # The run started 30 s ago, so the offset of repeat 1 (2 s) has long passed,
    # but repeat 0 was sent only half a second ago: an invocation that fell
    # behind and then died.
    repeat_0_sent = _iso(now - timedelta(seconds=0.5))
    records = [
        (first, "created", _iso(now - timedelta(seconds=30))),
        (repeat_0, earlier, repeat_0_sent),
    ]
    with _serving(sandbox) as url:
        lines = [
            json.dumps(
                {
                    "key": key,
                    "job": "spaced",
                    "runId": "r1",
                    "target": url,
                    "keyMode": "test",
                    "outcome": outcome,
                    "attempts": 1,
                    "sentAt": sent_at,
                }
            )
            for key, outcome, sent_at in records
        ]
        results.write_text("\n".join(lines) + "\n")
        exit_code = _invoke(cli, _run_args(job, results, url, "--run-id", "r1"))

    assert exit_code == 1
    assert list(sandbox.count_by_key()) == [repeat_1]
    outcomes = {record["key"]: record for record in read_results(results)}
    assert outcomes[repeat_1]["outcome"] == "created"
    gap = _moment(outcomes[repeat_1]["sentAt"]) - _moment(repeat_0_sent)
    assert gap >= timedelta(seconds=2)


class _SlowStartSandbox(Sandbox):
    """A sandbox whose first create gets a 429 with `Retry-After: 1`."""

    def __init__(self, config: SandboxConfig) -> None:
        super().__init__(config)
        self._creates = itertools.count()

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> SandboxResponse:
        if method == "POST" and path == "/v1/calls" and next(self._creates) == 0:
            error = {"error": {"type": "rate_limit_error", "message": "slow down"}}
            return SandboxResponse(
                429,
                {"content-type": "application/json", "retry-after": "1"},
                json.dumps(error).encode(),
            )
        return super().handle(method, path, headers, body)


def test_slow_start_does_not_bunch_repeats(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob
) -> None:
    sandbox = _SlowStartSandbox(SandboxConfig(rate_limit=UNLIMITED))
    job = write_job(
        """
        version: 1
        name: bunch
        calls:
          - from: "+15550100100"
            to: ["+15550100121", "+15550100122"]
            repeat: {count: 2, interval: 1s}
        """
    )
    results = tmp_path / "results.jsonl"
    with _serving(sandbox) as url:
        exit_code = _invoke(cli, _run_args(job, results, url))

    assert exit_code == 0
    assert sorted(sandbox.count_by_key().values()) == [1, 1, 1, 1]
    # The 429 delayed every request by 1 s, to the offset of repeat 1 (1 s), so
    # each repeat 1 would go right after its repeat 0 if offsets alone counted.
    attempts: dict[str, list[datetime]] = {}
    for record in read_records(results):
        if record["outcome"] == "intent":
            attempts.setdefault(record["key"], []).append(_moment(record["sentAt"]))
    assert len(attempts) == 4
    for key in _plan_keys(job):
        series, _, repeat = key.rpartition(":")
        if repeat == "1":
            gap = min(attempts[key]) - max(attempts[f"{series}:0"])
            assert gap >= timedelta(seconds=1), key


# Crashes, signals and the lock --------------------------------------------------


def _complete_lines(data: bytes) -> bytes:
    return data[: data.rfind(b"\n") + 1]


def _wait_for_size(path: Path, size: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and path.stat().st_size > size:
            return
        time.sleep(0.005)


def test_kill_9_then_resume_never_twice(tmp_path: Path, write_job: WriteJob) -> None:
    sandbox = Sandbox(SandboxConfig(seed=5, rate_limit=UNLIMITED, latency_seconds=0.03))
    job = write_job(_job_text("crash", 300))
    results = tmp_path / "results.jsonl"
    moments = random.Random(20261204)
    kills = 0
    kept = b""
    with _serving(sandbox) as url:
        args = _run_args(job, results, url, "--run-id", "crash", "--rate", "60")
        while kills < 24:
            process = _start(args)
            if kills % 4 == 3:
                # Now and then, a moment during start-up or the first request.
                time.sleep(moments.uniform(0.0, 0.5))
            else:
                _wait_for_size(results, len(kept), process)
                time.sleep(moments.uniform(0.0, 0.1))
            assert process.poll() is None, "the run finished before it was killed"
            process.kill()
            process.wait()
            kills += 1
            data = results.read_bytes() if results.exists() else b""
            # Every complete line written before this kill is still there.
            assert data.startswith(kept)
            kept = _complete_lines(data)
            _assert_never_twice(sandbox)
        finish = [*args[:-1], "--rate", "500", args[-1]]
        final = subprocess.run(
            [str(SCRIPT), *finish], env=_env(), capture_output=True, timeout=60
        )

    _assert_never_twice(sandbox)
    records = _assert_one_outcome_each(results, _plan_keys(job))
    assert results.read_bytes().startswith(kept)
    by_key = {record["key"]: record for record in records}
    interrupted = [
        record
        for record in records
        if record["outcome"] == "unknown" and record["error"]["type"] == "interrupted"
    ]
    assert interrupted, "no kill hit a request in flight"
    for call in sandbox.created_calls():
        record = by_key[call["metadata"]["chirpJobsKey"]]
        assert record["outcome"] in ("created", "unknown")
        if record["outcome"] == "created":
            assert record["call"]["id"] == call["id"]
    for record in records:
        if record["outcome"] == "unknown":
            assert record["error"]["type"] == "interrupted"
    assert final.returncode == (1 if interrupted else 0), final.stderr


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_signal_waits_for_in_flight(
    tmp_path: Path, write_job: WriteJob, stop_signal: signal.Signals
) -> None:
    sandbox = Sandbox(SandboxConfig(rate_limit=UNLIMITED, latency_seconds=0.5))
    job = write_job(_job_text("sigterm", 8))
    results = tmp_path / "results.jsonl"
    with _serving(sandbox) as url:
        args = _run_args(
            job, results, url, "--run-id", "t", "--concurrency", "2", "--timeout", "5"
        )
        process = _start(args, stderr=subprocess.PIPE)
        _wait_for_size(results, 0, process)
        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=10)
        stopped = read_records(results)
        created_at_stop = len(sandbox.created_calls())
        resumed = subprocess.run(
            [str(SCRIPT), *args], env=_env(), capture_output=True, timeout=30
        )

    assert process.returncode == 128 + stop_signal
    assert f"stopped by signal {int(stop_signal)}".encode() in stderr
    intents = {r["key"] for r in stopped if r["outcome"] == "intent"}
    finished = {r["key"] for r in stopped if r["outcome"] == "created"}
    # The summary counts the whole plan, and a stop alone is no error.
    summary = (
        f"warning: {len(finished)} created, 0 failed, 0 unknown of 8 planned calls; "
        f"results in {results}"
    )
    assert summary in stderr.decode()
    # The requests in flight were waited for, so none was left unknown.
    assert intents
    assert intents == finished
    assert created_at_stop == len(finished)
    assert len(finished) < 8
    assert resumed.returncode == 0, resumed.stderr
    _assert_one_outcome_each(results, _plan_keys(job))
    assert sorted(sandbox.count_by_key().values()) == [1] * 8


def test_second_invocation_exits_3_at_once(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob
) -> None:
    sandbox = Sandbox(SandboxConfig(rate_limit=UNLIMITED, latency_seconds=0.2))
    job = write_job(_job_text("overlap", 10))
    results = tmp_path / "results.jsonl"
    with _serving(sandbox) as url:
        first = _start(
            _run_args(job, results, url, "--run-id", "first", "--concurrency", "1")
        )
        _wait_for_size(results, 0, first)
        started = time.monotonic()
        result = cli.invoke(
            main,
            _run_args(job, results, url, "--run-id", "second"),
            env={"CHIRP_API_KEY": FAKE_KEY},
        )
        elapsed = time.monotonic() - started
        assert first.poll() is None, "the first run ended before the second started"
        first.wait(timeout=30)

    assert result.exit_code == 3
    assert f"process {first.pid}" in result.output
    assert elapsed < 1.0
    run_ids = {call["metadata"]["chirpJobsRun"] for call in sandbox.created_calls()}
    assert run_ids == {"first"}
    assert {record["runId"] for record in read_records(results)} == {"first"}


def test_drain_timeout_records_unknown(tmp_path: Path, write_job: WriteJob) -> None:
    sandbox = Sandbox(SandboxConfig(rate_limit=UNLIMITED, latency_seconds=2.0))
    job = write_job(_job_text("drain", 4))
    results = tmp_path / "results.jsonl"
    with _serving(sandbox) as url:
        args = _run_args(
            job, results, url, "--run-id", "d", "--concurrency", "2", "--timeout", "5"
        )
        process = _start([*args[:-1], "--drain-timeout", "0.2", args[-1]])
        _wait_for_size(results, 0, process)
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)

    assert process.returncode == 128 + signal.SIGTERM
    records = read_results(results)
    assert len(records) == 2
    assert {record["outcome"] for record in records} == {"unknown"}
    assert {record["error"]["code"] for record in records} == {"in_flight"}
    intents = [r for r in read_records(results) if r["outcome"] == "intent"]
    assert sorted(r["key"] for r in intents) == sorted(r["key"] for r in records)


def _read_stderr_until(process: subprocess.Popen[bytes], text: bytes) -> bytes:
    """Read stderr lines until one contains `text`, killing a process that hangs."""
    assert process.stderr is not None
    watchdog = threading.Timer(15, process.kill)
    watchdog.start()
    seen = b""
    try:
        while text not in seen:
            line = process.stderr.readline()
            if not line:
                break
            seen += line
    finally:
        watchdog.cancel()
    return seen


def test_second_sigint_stops_drain_at_once(tmp_path: Path, write_job: WriteJob) -> None:
    # Each call is created and its response sent 20 s later, within --timeout 30,
    # so only the second SIGINT can end the wait for it.
    config = SandboxConfig(
        rate_limit=UNLIMITED, late_answer_rate=1.0, late_answer_seconds=20.0
    )
    sandbox = Sandbox(config)
    job = write_job(_job_text("interrupt", 2))
    results = tmp_path / "results.jsonl"
    with _serving(sandbox) as url:
        args = _run_args(
            job, results, url, "--run-id", "i", "--concurrency", "1", "--timeout", "30"
        )
        process = _start(args, stderr=subprocess.PIPE)
        # The first SIGINT goes once the request has reached the server, so the
        # call is placed and in flight.
        deadline = time.monotonic() + 10
        while sandbox.request_count == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGINT)
        before = _read_stderr_until(process, b"stopping:")
        process.send_signal(signal.SIGINT)
        try:
            # Worker threads are daemons, so the one still waiting for its
            # response must not hold the process open until its timeout.
            _, after = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            pytest.fail("the run did not exit within 10 s of the second SIGINT")

    assert b"stopping:" in before
    assert process.returncode == 130
    assert b"stopped by signal 2" in after
    [record] = read_results(results)
    assert record["outcome"] == "unknown"
    assert record["error"]["type"] == "interrupted"
    assert record["error"]["code"] == "in_flight"
    intents = [r["key"] for r in read_records(results) if r["outcome"] == "intent"]
    assert intents == [record["key"]]
    # The second planned call was never sent, and the first was placed once.
    assert sandbox.request_count == 1
    assert dict(sandbox.count_by_key()) == {record["key"]: 1}
