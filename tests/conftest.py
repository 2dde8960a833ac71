"""Shared fixtures: job files in tmp_path, and the sandbox served on loopback."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner

from chirp_jobs.sandbox import (
    Sandbox,
    SandboxConfig,
    SandboxResponse,
    SandboxServer,
    start_server,
)

REPOSITORY = Path(__file__).resolve().parent.parent
JOBS = REPOSITORY / "jobs"
TEST_KEY = "sk_test_app_fixture0key"
SCRIPT = Path(sys.executable).with_name("chirp-jobs")
# Against `flaky_server`: two calls created, one failed (the from number is not
# assigned) and one unknown outcome (a 503 for the `to` ending in 9).
MIXED_JOB = """
version: 1
name: mixed
calls:
  - from: "+15550100100"
    to: ["+15550100121", "+15550100122", "+15550100129"]
  - from: "+15550100199"
    to: "+15550100123"
"""

WriteJob = Callable[..., Path]
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
)


@pytest.fixture(autouse=True)
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clear the proxy variables for every test and the processes it starts.

    A proxy would take runs aimed at a loopback server off this machine, and
    `build_client` would pick httpx's transport in place of PlainHTTPTransport.
    """
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def run_args(
    job: Path, results: Path, url: str, *extra: str, rate: str = "200"
) -> list[str]:
    """Return `run` arguments that send `job` to `url` quietly, without fsync."""
    return [
        "run",
        "-q",
        "--base-url",
        url,
        "--results",
        str(results),
        "--rate",
        rate,
        "--no-fsync",
        *extra,
        str(job),
    ]


@pytest.fixture
def write_job(tmp_path: Path) -> WriteJob:
    """Write a job file (dedented) into tmp_path and return its path."""

    def write(text: str, name: str = "job.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(SandboxConfig(seed=7))


@pytest.fixture
def served_sandbox(sandbox: Sandbox) -> Iterator[SandboxServer]:
    """Serve `sandbox` on a free loopback port for the length of one test."""
    server = start_server(sandbox, "127.0.0.1", 0)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class FlakySandbox(Sandbox):
    """A sandbox that responds 503 to each create whose `to` ends in 9.

    A 503 leaves the outcome unknown, since the API may have placed the call
    before failing.
    """

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> SandboxResponse:
        if method == "POST" and path == "/v1/calls":
            try:
                to = str(json.loads(body).get("to", ""))
            except ValueError:
                to = ""
            if to.endswith("9"):
                self.request_count += 1
                error = {"error": {"type": "api_error", "message": "unavailable"}}
                return SandboxResponse(
                    503,
                    {"content-type": "application/json"},
                    json.dumps(error).encode(),
                )
        return super().handle(method, path, headers, body)


@pytest.fixture
def flaky_server() -> Iterator[tuple[FlakySandbox, SandboxServer]]:
    """Serve a `FlakySandbox` that assigns only +15550100100, on loopback."""
    config = SandboxConfig(
        seed=11, assigned_numbers=frozenset({"+15550100100"}), lifecycle_seconds=0.05
    )
    flaky = FlakySandbox(config)
    server = start_server(flaky, "127.0.0.1", 0)
    try:
        yield flaky, server
    finally:
        server.shutdown()
        server.server_close()
