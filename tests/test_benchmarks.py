"""Smoke tests: each benchmark script runs to the end with tiny sizes.

They check that the scripts work, not how fast anything is.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPOSITORY

BENCHMARKS = REPOSITORY / "benchmarks"


def _run_script(name: str, *options: str) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *options],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def test_validate_benchmark_runs() -> None:
    if shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("check-jsonschema is not installed (pip install -e '.[bench]')")
    output = _run_script(
        "bench_validate.py", "--files", "3", "--calls", "2", "--repeats", "1"
    )
    assert "files: 3 of 2 call entries" in output
    assert "speed-up over check-jsonschema: " in output


def test_plan_benchmark_runs() -> None:
    output = _run_script(
        "bench_plan.py",
        "--recipients", "10",
        "--repeat", "2",
        "--rss-recipients", "5",
        "--rss-repeats", "1,2",
        "--repeats", "1",
    )  # fmt: skip
    assert "planned calls: 20 (10 recipients x 2)" in output
    assert "time over the json.dumps loop: " in output
    assert "10 planned calls: " in output


def test_run_benchmark_runs() -> None:
    output = _run_script(
        "bench_run.py", "--calls", "20", "--curl-calls", "2", "--rounds", "2"
    )
    assert "calls: 20 at concurrency 4, median of 2 rounds" in output
    assert output.count("round ") == 2
    assert "chirp-jobs over httpx loop: " in output
    if shutil.which("curl"):
        assert "chirp-jobs over curl loop: " in output


def test_pacing_benchmark_runs() -> None:
    output = _run_script("bench_pacing.py", "--rates", "20", "--seconds", "0.2")
    assert "achieved rate over R: " in output


def test_startup_benchmark_runs() -> None:
    output = _run_script("bench_startup.py", "--repeats", "1")
    assert "chirp-jobs --help over its baseline: " in output
    assert "chirp-jobs validate ONE_FILE over its baseline: " in output


def test_many_errors_benchmark_runs() -> None:
    output = _run_script("bench_many_errors.py", "--recipients", "60")
    assert "recipients: 60 per file" in output
    assert "yaml time over the valid file: " in output
    assert "toml peak RSS over the valid file: " in output
