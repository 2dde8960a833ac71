"""Load and validate job files: the entry points `validate`, `plan` and `run` share."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from .api_keys import redact_api_keys
from .errors import MAX_PROBLEMS_PER_FILE, JobFileError, Problem, ProblemCollector
from .jobs import Job, build_job
from .loading import (
    JOB_FILE_SUFFIXES,
    Document,
    FieldPath,
    format_field,
    load_document,
)
from .planning import iter_recipient_bodies, request_digest


def load_job(path: Path, display: str | None = None) -> Job:
    """Load, validate and return one job, or raise `JobFileError`.

    At most `MAX_PROBLEMS_PER_FILE` problems are reported; past that, checking
    stops and the error's `more` is true.
    """
    try:
        document = load_document(path, display)
        job = build_job(document)
    except JobFileError as error:
        problems, more = _capped(error.problems, error.more)
        raise JobFileError(redact_api_keys(problems), more=more) from None
    duplicates = ProblemCollector()
    duplicates.extend(_duplicate_problems(document, job))
    if duplicates:
        raise duplicates.error()
    return job


def _capped(problems: list[Problem], more: bool) -> tuple[list[Problem], bool]:
    # A parse error that comes with API key problems can pass the limit.
    if len(problems) <= MAX_PROBLEMS_PER_FILE:
        return problems, more
    return sorted(problems)[:MAX_PROBLEMS_PER_FILE], True


def _duplicate_problems(document: Document, job: Job) -> Iterator[Problem]:
    return document.iter_problems(_duplicate_findings(job))


def _duplicate_findings(job: Job) -> Iterator[tuple[FieldPath, str]]:
    # The same body twice in one plan would ring the same person twice with
    # nothing to tell the two apart. `repeat` is how a job requests that on purpose.
    first_seen: dict[str, tuple[int, int]] = {}
    for call, recipient_index, body in iter_recipient_bodies(job):
        digest = request_digest(body)
        first = first_seen.setdefault(digest, (call.index, recipient_index))
        if first == (call.index, recipient_index):
            continue
        path = _recipient_path(job, call.index, recipient_index)
        earlier = _recipient_path(job, *first)
        yield (
            path,
            f"the same request as {format_field(earlier)} (same from, to, channels "
            "and metadata) would be sent twice; remove one, or use `repeat` to "
            "place a call more than once",
        )


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


def validate_paths(paths: Iterable[Path]) -> tuple[int, list[JobFileError]]:
    """Validate every job file under `paths`; return the file count and the errors.

    There is one error per invalid file, in file order.
    """
    count = 0
    errors: list[JobFileError] = []
    for path in iter_job_files(paths):
        count += 1
        try:
            load_job(path)
        except JobFileError as error:
            errors.append(error)
    return count, errors
