"""Saved plans: a plan written to a file for review, and run later exactly as saved.

A saved plan stores a fingerprint of its inputs: the job file's bytes, the
chirp-jobs version and the plan settings that select or shape requests (the
shard). `run PLAN.json` checks every input again and rejects a plan whose job
file has changed since, as a saved Terraform plan is rejected once stale.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import zip_longest
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ChirpJobsError
from .jobs import Job
from .planning import Origin, PlannedCall, iter_plan
from .reporting import plan_record
from .sharding import Shard, select_shard
from .validation import load_job

PLAN_FORMAT = "chirp-jobs-plan"
PLAN_FORMAT_VERSION = 1


class StalePlanError(ChirpJobsError):
    """The saved plan no longer matches its inputs, so nothing was sent."""


@dataclass(frozen=True)
class SavedPlan:
    """A saved plan read back and checked against its inputs."""

    job: Job
    job_path: Path
    shard: Shard | None
    calls: list[PlannedCall]


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def plan_document(
    job_path: Path, plan_path: Path, job: Job, shard: Shard | None
) -> dict[str, Any]:
    """Build the saved plan of `job` that will be written to `plan_path`."""
    inputs = {
        "job": {
            "path": job.path,
            # The job file is found from the plan's folder, so a plan and its job
            # move together inside a repository.
            "pathFromPlan": os.path.relpath(
                job_path.resolve(), plan_path.resolve().parent
            ),
            "name": job.name,
            "sha256": file_digest(job_path),
        },
        "toolVersion": __version__,
        "settings": {"shard": str(shard) if shard else None},
    }
    calls = [plan_record(planned) for planned in select_shard(iter_plan(job), shard)]
    return {
        "format": PLAN_FORMAT,
        "formatVersion": PLAN_FORMAT_VERSION,
        **inputs,
        "fingerprint": _fingerprint(inputs, calls),
        "plannedCalls": len(calls),
        "calls": calls,
    }


def _fingerprint(inputs: dict[str, Any], calls: list[dict[str, Any]]) -> str:
    canonical = json.dumps([inputs, calls], sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def write_plan(job_path: Path, plan_path: Path, job: Job, shard: Shard | None) -> int:
    """Write the saved plan; return its number of planned calls."""
    if plan_path.suffix.lower() != ".json":
        # `run` distinguishes a saved plan from a job file by its extension, and a job
        # file given by mistake must not be overwritten.
        raise ChirpJobsError(
            f"invalid plan file {plan_path}: saved plans end in .json, such as "
            f"{plan_path.with_suffix('.json').name}"
        )
    document = plan_document(job_path, plan_path, job, shard)
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    try:
        plan_path.parent.mkdir(parents=True, exist_ok=True)
        plan_path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise ChirpJobsError(f"cannot write {plan_path}: {error.strerror}") from None
    return int(document["plannedCalls"])


def is_saved_plan(path: Path) -> bool:
    """Tell a saved plan (`.json`) from a job file (`.yaml`, `.yml`, `.toml`)."""
    return path.suffix.lower() == ".json"


def read_plan(plan_path: Path) -> SavedPlan:
    """Read a saved plan and check it against its inputs.

    Raises `StalePlanError` (exit 2) when the job file, the tool version or the
    plan itself changed since the plan was made, and `ChirpJobsError` (exit 2)
    when the file is not a readable saved plan.
    """
    document = _read_document(plan_path)
    try:
        return _checked_plan(plan_path, document)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ChirpJobsError(
            f"invalid saved plan {plan_path}: missing or malformed field ({error}); "
            "make the plan again with `chirp-jobs plan JOB -o PLAN.json`"
        ) from None


def _checked_plan(plan_path: Path, document: dict[str, Any]) -> SavedPlan:
    job_info = document["job"]
    job_display = job_info["path"]
    again = f"make the plan again with `chirp-jobs plan {job_display} -o {plan_path}`"
    job_path = plan_path.parent / job_info["pathFromPlan"]
    if document["toolVersion"] != __version__:
        raise StalePlanError(
            f"plan is stale: it was made by chirp-jobs {document['toolVersion']} and "
            f"this is {__version__}; {again}"
        )
    if not job_path.is_file():
        raise StalePlanError(
            f"plan is stale: {job_display} is missing (looked for {job_path})"
        )
    if file_digest(job_path) != job_info["sha256"]:
        raise StalePlanError(
            f"plan is stale: {job_display} changed after the plan was made; review the "
            f"change and {again}"
        )
    inputs = {key: document[key] for key in ("job", "toolVersion", "settings")}
    if _fingerprint(inputs, document["calls"]) != document["fingerprint"]:
        raise StalePlanError(
            f"plan is stale: {plan_path} was edited after it was made; make it again"
        )
    job = load_job(job_path, job_display)
    shard = _saved_shard(document["settings"]["shard"])
    saved = _planned_calls(document["calls"])
    expanded = select_shard(iter_plan(job), shard)
    calls = list(_check_matches_job(saved, expanded, plan_path, again))
    return SavedPlan(job, job_path, shard, calls)


def _check_matches_job(
    calls: Iterator[PlannedCall],
    expanded: Iterator[PlannedCall],
    plan_path: Path,
    again: str,
) -> Iterator[PlannedCall]:
    """Yield `calls`, raising `StalePlanError` unless they are the job's expansion.

    The fingerprint only shows that the plan file is as written, and anyone who
    edits the file can compute it again. Expanding the unchanged job file once more
    and comparing call by call is what makes the saved plan trustworthy: a call the
    job does not describe, or a key twice, is never sent. Each call yielded takes
    its repeat count and interval from the expansion, since the saved format does
    not store them and the runner spaces repeats by them.
    """
    for index, (saved, fresh) in enumerate(zip_longest(calls, expanded)):
        if saved is None or fresh is None or _identity(saved) != _identity(fresh):
            raise StalePlanError(
                f"plan does not match its job file: call {index} of {plan_path} "
                f"differs from what the job expands to; {again}"
            )
        yield replace(
            saved,
            repeat_count=fresh.repeat_count,
            interval_seconds=fresh.interval_seconds,
        )


def _identity(planned: PlannedCall) -> tuple[Any, ...]:
    return planned.key, planned.request, planned.offset_seconds


def _read_document(plan_path: Path) -> dict[str, Any]:
    try:
        document = json.loads(plan_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ChirpJobsError(f"saved plan {plan_path} not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ChirpJobsError(f"cannot read saved plan {plan_path}: {error}") from None
    if not isinstance(document, dict) or document.get("format") != PLAN_FORMAT:
        raise ChirpJobsError(
            f"{plan_path} is not a saved plan; make one with "
            f"`chirp-jobs plan JOB -o {plan_path}`"
        )
    if document.get("formatVersion") != PLAN_FORMAT_VERSION:
        raise StalePlanError(
            f"plan is stale: {plan_path} has plan format "
            f"{document.get('formatVersion')!r}; make the plan again"
        )
    return document


def _saved_shard(text: str | None) -> Shard | None:
    if text is None:
        return None
    index, count = text.split("/")
    return Shard(int(index), int(count))


def _planned_calls(records: list[dict[str, Any]]) -> Iterator[PlannedCall]:
    for record in records:
        origin = record["origin"]
        yield PlannedCall(
            key=record["key"],
            request=record["request"],
            origin=Origin(
                origin["file"], origin["call"], origin["recipient"], origin["repeat"]
            ),
            offset_seconds=record["offsetSeconds"],
        )
