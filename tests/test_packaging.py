"""The wheel carries the schema, and the installed package finds it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from .conftest import REPOSITORY


def test_wheel_contains_and_finds_schema(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(REPOSITORY),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp_path / "dist").glob("chirp_jobs-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        assert "chirp_jobs/schemas/job.schema.json" in archive.namelist()
        archive.extractall(tmp_path / "site")
    # Run from an empty folder with only the unpacked wheel on the path, so the
    # checkout's schemas/ folder cannot be the one found.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    found = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "from chirp_jobs import schema; "
            "print(schema.__file__); print(schema.load_schema()['title'])",
            str(tmp_path / "site"),
        ],
        cwd=elsewhere,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert found[0].startswith(str(tmp_path / "site"))
    assert found[1] == "chirp-jobs job file"
