"""Every file in tests/data is a case: valid files load, invalid ones give the
exact problems listed in their `.expected` file."""

from __future__ import annotations

from pathlib import Path

import pytest

from chirp_jobs.validation import iter_job_files, load_job, validate_paths

from .conftest import JOBS, REPOSITORY

DATA = Path(__file__).resolve().parent / "data"
VALID = sorted(iter_job_files([DATA / "valid", JOBS]))
INVALID = sorted(iter_job_files([DATA / "invalid"]))


def _relative(path: Path) -> str:
    return path.relative_to(REPOSITORY).as_posix()


@pytest.mark.parametrize("path", VALID, ids=_relative)
def test_valid_job_file_loads(path: Path) -> None:
    job = load_job(path)
    assert job.planned_count >= 1


@pytest.mark.parametrize("path", INVALID, ids=_relative)
def test_invalid_job_file_problems(path: Path) -> None:
    expected = path.with_name(path.name + ".expected").read_text().splitlines()
    count, errors = validate_paths([path])
    assert count == 1
    assert len(errors) == 1
    shown = [line.removeprefix(f"{path}:") for line in str(errors[0]).splitlines()]
    assert shown == expected


def test_every_invalid_file_has_expectation() -> None:
    for path in INVALID:
        assert path.with_name(path.name + ".expected").is_file(), path


def test_example_jobs_reference_schema() -> None:
    for path in JOBS.glob("*.y*ml"):
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../schemas/job.schema.json"
