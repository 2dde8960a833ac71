"""A scan for a few paths finds the same positions as a map of the whole file."""

from __future__ import annotations

from pathlib import Path

import pytest

from chirp_jobs.errors import JobFileError
from chirp_jobs.loading import Document, load_document
from chirp_jobs.positions import KEY_MARK, FieldPath, Location, nearest_location

from .conftest import JOBS
from .test_job_files import INVALID, VALID, _relative


def _documents() -> list[Path]:
    paths = []
    for path in [*VALID, *INVALID]:
        try:
            load_document(path)
        except JobFileError:
            continue
        paths.append(path)
    return paths


def _fresh(path: Path) -> Document:
    return load_document(path)


def _full_map(path: Path) -> dict[FieldPath, Location]:
    document = _fresh(path)
    # Past the partial scans, the document maps the whole file.
    for index in range(4):
        document.locate(("no such field", index))
    assert document._scanned_for is None
    assert document._locations is not None
    return dict(document._locations)


@pytest.mark.parametrize("path", _documents(), ids=_relative)
def test_partial_scan_matches_full_map(path: Path) -> None:
    full = _full_map(path)
    requested = [
        *full,
        *((*key, "missing") for key in full if KEY_MARK not in key),
        ("calls", 99, "to"),
    ]
    for key in requested:
        document = _fresh(path)
        assert document.locate(key) == nearest_location(full, key), key


@pytest.mark.parametrize(
    ("suffix", "head", "columns", "kept"),
    [
        (".yaml", "version: 1\nname: many\ncalls:\n  - to: ", (58, 8010), 6),
        (".toml", 'version = 1\nname = "many"\n[[calls]]\nto = ', (55, 8007), 5),
    ],
)
def test_expected_paths_share_one_scan(
    tmp_path: Path, suffix: str, head: str, columns: tuple[int, int], kept: int
) -> None:
    numbers = ", ".join(f'"+1555{i:07d}"' for i in range(1000))
    path = tmp_path / f"many{suffix}"
    path.write_text(f"{head}[{numbers}]\n")
    document = load_document(path)
    requested = [("calls", 0, "to", i) for i in (3, 500)]
    document.expect(requested)
    first = document.locate(requested[0])
    second = document.locate(requested[1])
    assert document._scans == 1
    assert (first.line, first.column) == (4, columns[0])
    assert (second.line, second.column) == (4, columns[1])
    # Only the requested paths and their parents were kept.
    assert document._locations is not None
    assert len(document._locations) == kept


def test_scans_past_limit_map_whole_file() -> None:
    document = load_document(JOBS / "appointment-reminders.yaml")
    for index in range(5):
        document.locate(("calls", index, "missing"))
    assert document._scans == 4
    assert document._scanned_for is None
