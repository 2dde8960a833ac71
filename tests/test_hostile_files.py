"""Hostile and oversized job files are rejected with a located problem."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from chirp_jobs.cli import main
from chirp_jobs.loading import MAX_FILE_BYTES

DEPTH = 100_000
YAML_HEAD = "version: 1\nname: deep\ncalls: "
TOML_HEAD = 'version = 1\nname = "deep"\n'


def _validate(cli: CliRunner, path: Path) -> tuple[int, str]:
    result = cli.invoke(main, ["validate", str(path)])
    return result.exit_code, result.output


def test_yaml_deep_flow_nesting(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(YAML_HEAD + "[" * DEPTH + "]" * DEPTH + "\n")
    exit_code, output = _validate(cli, path)
    assert exit_code == 2
    assert "Traceback" not in output
    assert f"{path}:3:" in output
    assert "nest at most 64 levels" in output


def test_toml_deep_array_nesting(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text(TOML_HEAD + "calls = " + "[" * DEPTH + "]" * DEPTH + "\n")
    exit_code, output = _validate(cli, path)
    assert exit_code == 2
    assert output.splitlines()[0] == (
        f"{path}:3:73: invalid TOML: nested more than 64 levels deep; "
        "job files need only a few levels"
    )


def test_toml_deep_inline_tables(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text(TOML_HEAD + "calls = " + "{a = " * DEPTH + "1" + "}" * DEPTH)
    exit_code, output = _validate(cli, path)
    assert exit_code == 2
    assert output.startswith(f"{path}:3:")
    assert "nested more than 64 levels deep" in output


def test_toml_long_dotted_key(cli: CliRunner, tmp_path: Path) -> None:
    # tomllib spends quadratic time and memory on such a key.
    path = tmp_path / "dotted.toml"
    path.write_text(TOML_HEAD + ".".join(["a"] * DEPTH) + " = 1\n")
    exit_code, output = _validate(cli, path)
    assert exit_code == 2
    assert output.startswith(f"{path}:3:128: invalid TOML: nested more than 64")


def test_toml_long_table_header(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "header.toml"
    path.write_text(TOML_HEAD + "[" + ".".join(["a"] * DEPTH) + "]\n")
    exit_code, output = _validate(cli, path)
    assert exit_code == 2
    assert output.startswith(f"{path}:3:129: invalid TOML: nested more than 64")


def test_toml_dots_in_strings_allowed(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "dots.toml"
    path.write_text(
        TOML_HEAD
        + f'description = "{"." * 200}"\n\n'
        + '[[calls]]\nfrom = "+15550100100"\nto = "+15550100123"\n'
    )
    exit_code, output = _validate(cli, path)
    assert exit_code == 0, output


def test_file_size_cap(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "large.yaml"
    path.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    exit_code, output = _validate(cli, path)
    assert exit_code == 2
    assert output.splitlines()[0] == (
        f"{path}: file is larger than 16 MiB; split it into several jobs"
    )


def test_problems_capped_per_file(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    numbers = "\n".join(f"      - +1555010{index:04d}" for index in range(80))
    head = 'version: 1\nname: many\ncalls:\n  - from: "+15550100100"\n    to:\n'
    path.write_text(f"{head}{numbers}\n")
    exit_code, output = _validate(cli, path)
    lines = output.splitlines()
    assert exit_code == 2
    assert len(lines) == 52
    assert lines[0].startswith(f"{path}:6:9: calls[0].to[0]: +15550100000 was read")
    assert lines[50] == (
        f"{path}: stopped after 50 problems, and the file has more; fix these and "
        "validate again"
    )
    assert lines[51] == "more than 50 problems in 1 of 1 job file"
