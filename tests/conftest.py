"""Shared fixtures: job files in tmp_path, and the sandbox served on loopback."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from chirp_jobs.sandbox import Sandbox, SandboxConfig, SandboxServer, start_server

REPOSITORY = Path(__file__).resolve().parent.parent
JOBS = REPOSITORY / "jobs"
TEST_KEY = "sk_test_app_fixture0key"

WriteJob = Callable[..., Path]


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
