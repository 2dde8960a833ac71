"""Job files through the real CLI: invalid files send nothing, valid ones unchanged.

`run` targets the sandbox served on loopback, so a request that slipped through
would be counted by the sandbox.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from chirp_jobs.cli import main
from chirp_jobs.results import read_results
from chirp_jobs.sandbox import Sandbox, SandboxConfig, SandboxServer, start_server

from .conftest import REPOSITORY, TEST_KEY
from .test_job_files import DATA, INVALID

# Files with `repeat` are left out: their intervals would make the run wait.
VALID_DATA = sorted(
    path
    for path in (DATA / "valid").iterdir()
    if path.suffix in (".yaml", ".toml") and "repeat" not in path.read_text()
)


@pytest.fixture(scope="module")
def module_server() -> Iterator[SandboxServer]:
    """One sandbox on a free loopback port for every test in this module."""
    server = start_server(Sandbox(SandboxConfig(seed=7)), "127.0.0.1", 0)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _relative(path: Path) -> str:
    return path.relative_to(REPOSITORY).as_posix()


def _run(cli: CliRunner, path: Path, results: Path, url: str) -> tuple[int, str]:
    result = cli.invoke(
        main,
        [
            "run",
            "--base-url",
            url,
            "--rate",
            "600",
            "--results",
            str(results),
            str(path),
        ],
        env={"CHIRP_API_KEY": TEST_KEY},
    )
    return result.exit_code, result.output


@pytest.mark.parametrize("path", INVALID, ids=_relative)
def test_invalid_file_run_sends_nothing(
    cli: CliRunner, tmp_path: Path, module_server: SandboxServer, path: Path
) -> None:
    expected = path.with_name(path.name + ".expected").read_text().splitlines()
    results = tmp_path / "out.jsonl"
    exit_code, output = _run(cli, path, results, module_server.url)
    assert exit_code == 2
    assert "Traceback" not in output
    assert output.splitlines() == [f"{path}:{line}" for line in expected]
    assert module_server.sandbox.request_count == 0
    assert not results.exists()


@pytest.mark.parametrize("path", INVALID, ids=_relative)
def test_invalid_file_validate_exit_2(cli: CliRunner, path: Path) -> None:
    result = cli.invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    first = result.output.splitlines()[0]
    assert first.startswith(f"{path}:")
    line = first.removeprefix(f"{path}:").split(":", 1)[0]
    assert int(line) >= 1


def _written_addresses(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8-sig")
    data = yaml.safe_load(text) if path.suffix == ".yaml" else tomllib.loads(text)
    addresses = []
    for call in data["calls"]:
        recipients = call["to"] if isinstance(call["to"], list) else [call["to"]]
        for recipient in recipients:
            if isinstance(recipient, dict):
                addresses.append(recipient["address"])
            else:
                addresses.append(recipient)
    return addresses


@pytest.mark.parametrize("path", VALID_DATA, ids=_relative)
def test_valid_file_sent_as_written(
    cli: CliRunner,
    tmp_path: Path,
    sandbox: Sandbox,
    served_sandbox: SandboxServer,
    path: Path,
) -> None:
    results = tmp_path / "out.jsonl"
    exit_code, output = _run(cli, path, results, served_sandbox.url)
    assert exit_code == 0, output
    sent = sorted(call["toAddress"] for call in sandbox.created_calls())
    # Every valid data file calls each recipient once.
    assert sent == sorted(_written_addresses(path))
    assert len(read_results(results)) == len(sent)


def test_yaml_words_sent_as_text(
    cli: CliRunner, tmp_path: Path, sandbox: Sandbox, served_sandbox: SandboxServer
) -> None:
    path = DATA / "valid" / "anchors-and-words.yaml"
    exit_code, output = _run(cli, path, tmp_path / "out.jsonl", served_sandbox.url)
    assert exit_code == 0, output
    metadata = sandbox.created_calls()[0]["metadata"]
    assert metadata["confirmed"] == "yes"
    assert metadata["code"] == "0123"
    assert metadata["window"] == "1:20"
    assert metadata["day"] == "2026-12-05"
    assert metadata["switch"] == "off"
