"""A job file reports at most 50 problems, in YAML and TOML, for every command.

Checking stops at the 51st distinct problem, and a last line states that there are
more. A file with exactly 50 problems shows all of them and no such line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from chirp_jobs.cli import main
from chirp_jobs.errors import MAX_PROBLEMS_PER_FILE
from chirp_jobs.sandbox import SandboxServer

from .conftest import TEST_KEY

NUMBER_MESSAGE = (
    "was read as a number; quote phone numbers and start them with + and the "
    'country code, as in "+15550100123"'
)
YAML_HEAD = 'version: 1\nname: many\ncalls:\n  - from: "+15550100100"\n    to:\n'
# The recipients start on line 6 in both formats.
TOML_HEAD = 'version = 1\nname = "many"\n[[calls]]\nfrom = "+15550100100"\nto = [\n'


def _number(index: int) -> int:
    return 15550100000 + index


def _write_numbers(path: Path, count: int) -> Path:
    """Write a job whose `to` lists `count` unquoted numbers, one a line."""
    if path.suffix == ".toml":
        items = "".join(f"  {_number(i)},\n" for i in range(count))
        path.write_text(f"{TOML_HEAD}{items}]\n")
    else:
        items = "".join(f"      - {_number(i)}\n" for i in range(count))
        path.write_text(f"{YAML_HEAD}{items}")
    return path


def _number_lines(path: Path, count: int) -> list[str]:
    column = 3 if path.suffix == ".toml" else 9
    return [
        f"{path}:{6 + i}:{column}: calls[0].to[{i}]: {_number(i)} {NUMBER_MESSAGE}"
        for i in range(count)
    ]


def _stopped_line(path: Path) -> str:
    return (
        f"{path}: stopped after 50 problems, and the file has more; fix these and "
        "validate again"
    )


def _assert_validate_stopped(
    cli: CliRunner, path: Path, first: str, fiftieth: str
) -> None:
    """Run validate and check the first and 50th problems, and the last lines."""
    exit_code, lines = _invoke(cli, "validate", str(path))
    assert exit_code == 2
    assert len(lines) == 52
    assert lines[0] == first
    assert lines[49].startswith(fiftieth)
    assert lines[50] == _stopped_line(path)
    assert lines[51] == "more than 50 problems in 1 of 1 job file"


def _invoke(cli: CliRunner, *arguments: str) -> tuple[int, list[str]]:
    result = cli.invoke(main, list(arguments), env={"CHIRP_API_KEY": TEST_KEY})
    assert "Traceback" not in result.output
    return result.exit_code, result.output.splitlines()


def test_limit_is_fifty() -> None:
    assert MAX_PROBLEMS_PER_FILE == 50


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_validate_stops_past_limit(cli: CliRunner, tmp_path: Path, suffix: str) -> None:
    path = _write_numbers(tmp_path / f"many{suffix}", MAX_PROBLEMS_PER_FILE + 10)
    exit_code, lines = _invoke(cli, "validate", str(path))
    assert exit_code == 2
    assert lines == [
        *_number_lines(path, MAX_PROBLEMS_PER_FILE),
        _stopped_line(path),
        "more than 50 problems in 1 of 1 job file",
    ]


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_validate_exactly_limit_no_closing_line(
    cli: CliRunner, tmp_path: Path, suffix: str
) -> None:
    path = _write_numbers(tmp_path / f"many{suffix}", MAX_PROBLEMS_PER_FILE)
    exit_code, lines = _invoke(cli, "validate", str(path))
    assert exit_code == 2
    assert lines == [
        *_number_lines(path, MAX_PROBLEMS_PER_FILE),
        "50 problems in 1 of 1 job file",
    ]


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_plan_stops_past_limit(cli: CliRunner, tmp_path: Path, suffix: str) -> None:
    path = _write_numbers(tmp_path / f"many{suffix}", MAX_PROBLEMS_PER_FILE + 10)
    exit_code, lines = _invoke(cli, "plan", str(path))
    assert exit_code == 2
    assert lines == [*_number_lines(path, MAX_PROBLEMS_PER_FILE), _stopped_line(path)]


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_run_stops_past_limit_sends_nothing(
    cli: CliRunner, tmp_path: Path, served_sandbox: SandboxServer, suffix: str
) -> None:
    path = _write_numbers(tmp_path / f"many{suffix}", MAX_PROBLEMS_PER_FILE + 10)
    results = tmp_path / "out.jsonl"
    exit_code, lines = _invoke(
        cli,
        "run",
        "--base-url",
        served_sandbox.url,
        "--results",
        str(results),
        str(path),
    )
    assert exit_code == 2
    assert lines == [*_number_lines(path, MAX_PROBLEMS_PER_FILE), _stopped_line(path)]
    assert served_sandbox.sandbox.request_count == 0
    assert not results.exists()


def test_validate_two_files_one_stopped(cli: CliRunner, tmp_path: Path) -> None:
    many = _write_numbers(tmp_path / "a-many.yaml", MAX_PROBLEMS_PER_FILE + 1)
    one = _write_numbers(tmp_path / "b-one.yaml", 1)
    exit_code, lines = _invoke(cli, "validate", str(tmp_path))
    assert exit_code == 2
    assert lines == [
        *_number_lines(many, MAX_PROBLEMS_PER_FILE),
        _stopped_line(many),
        *_number_lines(one, 1),
        "more than 51 problems in 2 of 2 job files",
    ]


def test_address_problems_stop_past_limit(cli: CliRunner, tmp_path: Path) -> None:
    # Strings pass the schema; the E.164 rule is checked once defaults apply.
    items = "".join(f'      - "555-01{i:02d}"\n' for i in range(60))
    path = tmp_path / "dashes.yaml"
    path.write_text(f"{YAML_HEAD}{items}")
    first = (
        f"{path}:6:9: calls[0].to[0]: '555-0100' is not an E.164 number (pstn "
        "channel): remove spaces, dashes, dots, underscores and brackets, and start "
        "with + and the country code, as in '+15550100123'"
    )
    _assert_validate_stopped(
        cli, path, first, f"{path}:55:9: calls[0].to[49]: '555-0149' "
    )


def test_duplicate_requests_stop_past_limit(cli: CliRunner, tmp_path: Path) -> None:
    items = '      - "+15550100123"\n' * 62
    path = tmp_path / "same.yaml"
    path.write_text(f"{YAML_HEAD}{items}")
    first = (
        f"{path}:7:9: calls[0].to[1]: the same request as calls[0].to[0] (same "
        "from, to, channels and metadata) would be sent twice; remove one, or use "
        "`repeat` to place a call more than once"
    )
    fiftieth = f"{path}:56:9: calls[0].to[50]: the same request "
    _assert_validate_stopped(cli, path, first, fiftieth)


def test_duplicate_keys_stop_past_limit(cli: CliRunner, tmp_path: Path) -> None:
    keys = "".join(f"      k: {i}\n" for i in range(62))
    path = tmp_path / "keys.yaml"
    path.write_text(
        'version: 1\nname: keys\ncalls:\n  - from: "+15550100100"\n'
        f'    to: "+15550100123"\n    metadata:\n{keys}'
    )
    first = (
        f"{path}:8:7: calls[0].metadata.k: duplicate key `k` at line 8; first "
        "defined at line 7"
    )
    fiftieth = f"{path}:57:7: calls[0].metadata.k: duplicate key"
    _assert_validate_stopped(cli, path, first, fiftieth)


def test_api_key_shown_despite_limit(cli: CliRunner, tmp_path: Path) -> None:
    # API key problems are collected first, so a leaked key is always reported.
    path = _write_numbers(tmp_path / "many.yaml", MAX_PROBLEMS_PER_FILE + 10)
    path.write_text(path.read_text() + "# sk_test_app_fake123\n")
    exit_code, lines = _invoke(cli, "validate", str(path))
    assert exit_code == 2
    assert lines[:49] == _number_lines(path, 49)
    assert lines[49] == (
        f"{path}:66:3: this looks like a Chirp API key; remove it and revoke it: "
        "chirp-jobs reads the key from the CHIRP_API_KEY environment variable, and "
        "job files are checked in"
    )
    assert lines[50] == _stopped_line(path)


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_plus_numbers_stop_past_limit(
    cli: CliRunner, tmp_path: Path, suffix: str
) -> None:
    path = _write_numbers(tmp_path / f"plus{suffix}", MAX_PROBLEMS_PER_FILE + 10)
    path.write_text(path.read_text().replace(" 1555", " +1555"))
    column = 3 if suffix == ".toml" else 9
    first = (
        f"{path}:6:{column}: calls[0].to[0]: +15550100000 was read as a number, "
        'which loses the leading + and zeros; quote phone numbers: "+15550100000"'
    )
    fiftieth = f"{path}:55:{column}: calls[0].to[49]: +15550100049"
    _assert_validate_stopped(cli, path, first, fiftieth)
