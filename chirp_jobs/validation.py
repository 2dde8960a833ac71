"""Load and validate job files: the entry points `validate`, `plan` and `run` share."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from .api_keys import redact_api_keys
from .errors import JobFileError, Problem
from .jobs import Job, build_job
from .loading import JOB_FILE_SUFFIXES, Document, format_field, load_document
from .planning import iter_recipient_bodies, request_digest

# A file with hundreds of problems is usually one mistake repeated (a whole list
# of unquoted numbers, say); the first ones show what to fix.
MAX_PROBLEMS_PER_FILE = 50


def load_job(path: Path, display: str | None = None) -> Job:
    """Load, validate and return one job, or raise `JobFileError`."""
    try:
        document = load_document(path, display)
        job = build_job(document)
        duplicates = _duplicate_problems(document, job)
    except JobFileError as error:
        raise JobFileError(redact_api_keys(_capped(error.problems))) from None
    if duplicates:
        raise JobFileError(_capped(duplicates))
    return job


def _capped(problems: list[Problem]) -> list[Problem]:
    ordered = sorted(problems)
    if len(ordered) <= MAX_PROBLEMS_PER_FILE:
        return ordered
    # The note takes the position of the first problem left out, so it points at
    # where the rest begin. NOTE: it sorts after the problems shown unless the
    # last one shown has the same line and column and a field path.
    first_omitted = ordered[MAX_PROBLEMS_PER_FILE]
    omitted = len(ordered) - MAX_PROBLEMS_PER_FILE
    note = Problem(
        first_omitted.path,
        first_omitted.line,
        first_omitted.column,
        "",
        f"{omitted:,} more problems from here on are not shown (at most "
        f"{MAX_PROBLEMS_PER_FILE} per file); fix the ones above and validate again",
    )
    return [*ordered[:MAX_PROBLEMS_PER_FILE], note]


def _duplicate_problems(document: Document, job: Job) -> list[Problem]:
    # The same body twice in one plan would ring the same person twice with
    # nothing to tell the two apart. `repeat` is how a job requests that on purpose.
    first_seen: dict[str, tuple[int, int]] = {}
    problems = []
    for call, recipient_index, body in iter_recipient_bodies(job):
        digest = request_digest(body)
        first = first_seen.setdefault(digest, (call.index, recipient_index))
        if first == (call.index, recipient_index):
            continue
        path = _recipient_path(job, call.index, recipient_index)
        earlier = _recipient_path(job, *first)
        problems.append(
            document.problem(
                path,
                f"the same request as {format_field(earlier)} (same from, to, channels "
                "and metadata) would be sent twice; remove one, or use `repeat` to "
                "place a call more than once",
            )
        )
    return problems


def _recipient_path(
    job: Job, call_index: int, recipient_index: int
) -> tuple[str | int, ...]:
    call = next(call for call in job.calls if call.index == call_index)
    if len(call.recipients) == 1:
        return ("calls", call_index, "to")
    return ("calls", call_index, "to", recipient_index)


def iter_job_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Yield the given files, and the job files found in the given folders, sorted.

    Inside a folder, hidden folders and files (`.git`, `.venv`, `.github`) are
    skipped: they hold tools' files, not jobs.
    """
    for path in paths:
        if path.is_dir():
            found = (
                item
                for item in path.rglob("*")
                if item.is_file()
                and item.suffix.lower() in JOB_FILE_SUFFIXES
                and not _is_hidden(item.relative_to(path))
            )
            yield from sorted(found)
        else:
            yield path


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def validate_paths(paths: Iterable[Path]) -> tuple[int, list[Problem]]:
    """Validate every job file under `paths`; return the file count and problems."""
    count = 0
    problems: list[Problem] = []
    for path in iter_job_files(paths):
        count += 1
        try:
            load_job(path)
        except JobFileError as error:
            problems.extend(error.problems)
    return count, problems
