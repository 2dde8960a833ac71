"""Summarise results files: outcomes, call states, failures and unknown outcomes.

Results files are read record by record. Records of kinds this version does not
know are skipped, and for each planned call of a run (`runId`, `key`) the last
outcome record wins, so a file that several runs or a resumed run appended to
is read correctly. Several files, such as the files of the shards of one job,
are merged.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ChirpJobsError
from .results import CREATED, FAILED, OUTCOMES, UNKNOWN, is_progress

# The record a `report --refresh` appends: the state of a created call as
# GET /v1/calls/{id} returned it.
CALL_STATE = "callState"
# Outcome records have no `type`; "outcome" and "result" are accepted too, in
# case a later version labels them.
_OUTCOME_TYPES = (None, "outcome", "result")


@dataclass
class Results:
    """The records of one or more results files, latest outcome per planned call."""

    files: list[str] = field(default_factory=list)
    outcomes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The file each outcome record was read from, where its refresh is recorded.
    sources: dict[tuple[str, str], str] = field(default_factory=dict)
    skipped: int = 0
    unreadable: int = 0

    def add(self, record: Any, source: str = "") -> None:
        if not isinstance(record, dict):
            self.skipped += 1
        elif record.get("type") == CALL_STATE and isinstance(record.get("callId"), str):
            self.states[record["callId"]] = record
        elif record.get("type") in _OUTCOME_TYPES and record.get("outcome") in OUTCOMES:
            plan_call = (str(record.get("runId")), str(record.get("key")))
            self.outcomes[plan_call] = record
            self.sources[plan_call] = source
        elif not is_progress(record):
            # Progress records (intent, not_placed) are a known kind that a
            # report has no use for, so they are not counted as skipped.
            self.skipped += 1

    def call_status(self, record: dict[str, Any]) -> str | None:
        """Return the latest known status of the call an outcome record created."""
        call_id = call_id_of(record)
        if call_id is None:
            return None
        state = self.states.get(call_id)
        if state is not None and state.get("status"):
            return str(state["status"])
        status = (record.get("call") or {}).get("status")
        return str(status) if status else None


def call_id_of(record: dict[str, Any]) -> str | None:
    call = record.get("call")
    if isinstance(call, dict) and isinstance(call.get("id"), str):
        return str(call["id"])
    return None


def read_results_files(paths: Iterable[Path]) -> Results:
    """Read and merge results files in the order given.

    Raises `ChirpJobsError` (exit 2) when a file cannot be opened. A line that is
    not JSON, such as the half-written last line of a killed run, is counted in
    `unreadable` and skipped.
    """
    results = Results()
    for path in paths:
        results.files.append(str(path))
        for line in _lines(path):
            try:
                record = json.loads(line)
            except ValueError:
                results.unreadable += 1
                continue
            results.add(record, str(path))
    return results


def _lines(path: Path) -> Iterator[str]:
    try:
        with path.open(encoding="utf-8") as stream:
            for line in stream:
                if line.strip():
                    yield line
    except FileNotFoundError:
        raise ChirpJobsError(f"results file {path} not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ChirpJobsError(f"cannot read results file {path}: {error}") from None


def build_report(results: Results) -> dict[str, Any]:
    """Return the report as plain data (the `report --format json` object)."""
    records = list(results.outcomes.values())
    by_outcome = Counter({outcome: 0 for outcome in OUTCOMES})
    by_outcome.update(record["outcome"] for record in records)
    statuses = Counter(
        results.call_status(record) or "not known"
        for record in records
        if record["outcome"] == CREATED
    )
    return {
        "files": results.files,
        "runs": sorted({record.get("runId") or "" for record in records}),
        "plannedCalls": len(records),
        "outcomes": dict(by_outcome),
        "callStatus": dict(statuses.most_common()),
        "failuresByCode": _failures_by_code(records),
        "unknown": [
            _unknown_entry(record) for record in records if record["outcome"] == UNKNOWN
        ],
        "skippedRecords": results.skipped,
        "unreadableLines": results.unreadable,
    }


def _failures_by_code(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for record in records:
        if record["outcome"] != FAILED:
            continue
        error = record.get("error") or {}
        code = str(
            error.get("code") or error.get("type") or f"http_{record.get('httpStatus')}"
        )
        group = groups.setdefault(
            code,
            {"code": code, "count": 0, "message": error.get("message"), "keys": []},
        )
        group["count"] += 1
        group["keys"].append(record.get("key"))
    return sorted(groups.values(), key=lambda group: (-group["count"], group["code"]))


def _unknown_entry(record: dict[str, Any]) -> dict[str, Any]:
    # What a person needs to find the call, if it exists, in webhooks or the
    # Chirp dashboard: the metadata values sent, the numbers and the time.
    request = record.get("request") or {}
    error = record.get("error") or {}
    return {
        "key": record.get("key"),
        "runId": record.get("runId"),
        "from": request.get("from"),
        "to": request.get("to"),
        "sentAt": record.get("sentAt"),
        "finishedAt": record.get("finishedAt"),
        "httpStatus": record.get("httpStatus"),
        "error": error.get("message") or error.get("code"),
    }


def iter_report_table(report: dict[str, Any]) -> Iterator[str]:
    """Yield the report as text lines for people."""
    files = len(report["files"])
    runs = len(report["runs"])
    run_noun = "run" if runs == 1 else "runs"
    file_noun = "file" if files == 1 else "files"
    yield (
        f"{report['plannedCalls']:,} planned calls in {runs} {run_noun} "
        f"from {files} {file_noun}"
    )
    yield "Outcomes: " + _counts(report["outcomes"])
    yield "Call status: " + (_counts(report["callStatus"]) or "none created")
    if report["failuresByCode"]:
        yield "Failures by error code:"
        for group in report["failuresByCode"]:
            yield f"  {group['code']}: {group['count']:,} ({group['message']})"
    if report["unknown"]:
        yield (
            "Unknown outcomes: these calls may have been placed. Look each one up by "
            "its chirpJobsKey and chirpJobsRun metadata before placing it again:"
        )
        for entry in report["unknown"]:
            yield (
                f"  {entry['key']}  run {entry['runId']}  "
                f"{entry['from']} → {entry['to']}  "
                f"sent {entry['sentAt']}  ({entry['error']})"
            )
    skipped = report["skippedRecords"] + report["unreadableLines"]
    if skipped:
        yield f"Skipped {skipped:,} records of other kinds or not JSON."


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in counts.items())
