"""Summarise results files: outcomes, call states, failures and unknown outcomes.

Results files are read line by line, and only the fields a report needs are kept,
so memory grows with the number of planned calls, not the size of the file.
Records of kinds this version does not know are skipped. A line that is not
UTF-8, not JSON, or a record with a missing or mistyped field is counted as
unreadable, with its line number. For each planned call of a run (`runId`,
`target`, `keyMode`, `key`) the last outcome record wins, so a file that several
runs or a resumed run appended to is read correctly. Several files, such as the
files of the shards of one job, are merged.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ChirpJobsError
from .results import (
    CREATED,
    FAILED,
    OUTCOMES,
    UNKNOWN,
    canonical_target,
    is_progress,
)

# The record a `report --refresh` appends: the state of a created call as
# GET /v1/calls/{id} returned it.
CALL_STATE = "callState"
# Outcome records have no `type`; "outcome" and "result" are accepted too, in
# case a later version labels them.
_OUTCOME_TYPES = (None, "outcome", "result")
# Unreadable lines listed by position in a report; the rest are only counted.
MAX_LISTED_UNREADABLE = 20


class UnusableRecordError(ValueError):
    """A line that is not a record a report can use; its message is the reason."""


@dataclass(slots=True)
class Outcome:
    """The fields of one outcome record that a report and a refresh use."""

    key: str
    run_id: str
    outcome: str
    source: str
    target: str | None
    key_mode: str | None
    http_status: int | None
    call_id: str | None
    call_status: str | None
    error_code: str | None
    error_type: str | None
    error_message: str | None
    request_from: str | None
    request_to: str | None
    sent_at: str | None
    finished_at: str | None


@dataclass(frozen=True)
class UnreadableLine:
    """The position of a line that could not be used, and the reason."""

    file: str
    line: int
    reason: str


@dataclass
class Results:
    """The records of one or more results files, latest outcome per planned call."""

    files: list[str] = field(default_factory=list)
    # Keyed by run id, target, key mode and plan key.
    outcomes: dict[tuple[str, str, str, str], Outcome] = field(default_factory=dict)
    # The latest status of each call by call id, from callState records.
    states: dict[str, str | None] = field(default_factory=dict)
    skipped: int = 0
    unreadable: int = 0
    # The first MAX_LISTED_UNREADABLE unreadable lines.
    unreadable_lines: list[UnreadableLine] = field(default_factory=list)
    # Outcome, progress and call state records read.
    results_records: int = 0

    def add(self, record: Any, source: str = "", line: int = 0) -> None:
        """Add one parsed record, or count it as unreadable if it is unusable."""
        try:
            self._add(record, source)
        except UnusableRecordError as error:
            self.add_unreadable(source, line, str(error))

    def add_unreadable(self, source: str, line: int, reason: str) -> None:
        self.unreadable += 1
        if len(self.unreadable_lines) < MAX_LISTED_UNREADABLE:
            self.unreadable_lines.append(UnreadableLine(source, line, reason))

    def _add(self, record: Any, source: str) -> None:
        if not isinstance(record, dict):
            raise UnusableRecordError("not a JSON object")
        record_type = record.get("type")
        if record_type == CALL_STATE:
            call_id = _required_text(record, "callId")
            self.states[call_id] = _optional(record, "status", str)
        elif record_type in _OUTCOME_TYPES and record.get("outcome") in OUTCOMES:
            outcome = _outcome(record, source)
            # A run id used with two targets or key modes placed two sets of
            # calls, and both count.
            target = canonical_target(outcome.target or "")
            identity = (outcome.run_id, target, outcome.key_mode or "", outcome.key)
            self.outcomes[identity] = outcome
        elif is_progress(record):
            # Progress records (intent, not_placed) are a known kind that a
            # report has no use for, so they are not counted as skipped.
            pass
        else:
            self.skipped += 1
            return
        self.results_records += 1

    def call_status(self, outcome: Outcome) -> str | None:
        """Return the latest known status of the call an outcome record created."""
        if outcome.call_id is None:
            return None
        return self.states.get(outcome.call_id) or outcome.call_status


def _outcome(record: dict[str, Any], source: str) -> Outcome:
    error = _object(record, "error")
    request = _object(record, "request")
    call = _object(record, "call")
    return Outcome(
        key=_required_text(record, "key"),
        run_id=_required_text(record, "runId"),
        outcome=str(record["outcome"]),
        source=source,
        target=_optional(record, "target", str),
        key_mode=_optional(record, "keyMode", str),
        http_status=_optional(record, "httpStatus", int),
        call_id=_optional(call, "id", str, "call."),
        call_status=_optional(call, "status", str, "call."),
        error_code=_optional(error, "code", str, "error."),
        error_type=_optional(error, "type", str, "error."),
        error_message=_optional(error, "message", str, "error."),
        request_from=_optional(request, "from", str, "request."),
        request_to=_optional(request, "to", str, "request."),
        sent_at=_optional(record, "sentAt", str),
        finished_at=_optional(record, "finishedAt", str),
    )


def _required_text(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    if value is None:
        raise UnusableRecordError(f"{name} is missing")
    if not isinstance(value, str):
        raise UnusableRecordError(f"{name} is {_json_type(value)}, not a string")
    return value


def _object(record: dict[str, Any], name: str) -> dict[str, Any]:
    """Return the object field `name`, or {} when it is null or missing."""
    value = record.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UnusableRecordError(f"{name} is {_json_type(value)}, not an object")
    return value


def _optional(record: dict[str, Any], name: str, kind: type, prefix: str = "") -> Any:
    """Return the field `name`, or raise UnusableRecordError unless it is null,
    missing or of type `kind`."""
    value = record.get(name)
    # bool is a subclass of int in Python, but true is not an HTTP status.
    if value is None or (isinstance(value, kind) and not isinstance(value, bool)):
        return value
    expected = "a string" if kind is str else "an integer"
    raise UnusableRecordError(
        f"{prefix}{name} is {_json_type(value)}, not {expected} or null"
    )


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"


def read_results_files(paths: Iterable[Path]) -> Results:
    """Read and merge results files in the order given.

    Raises `ChirpJobsError` (exit 2) when a file cannot be opened, or when it has
    unreadable lines and no results record, since it is then not a results file.
    A line that is not a usable record, such as the half-written last line of a
    killed run, is counted in `unreadable` and skipped.
    """
    results = Results()
    for path in paths:
        results.files.append(str(path))
        before = (results.results_records, results.skipped, results.unreadable)
        for number, line in _lines(path):
            try:
                record = _parse_line(line)
            except UnusableRecordError as error:
                results.add_unreadable(str(path), number, str(error))
                continue
            results.add(record, str(path), number)
        _check_is_results_file(path, results, before)
    return results


def _parse_line(line: bytes) -> Any:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise UnusableRecordError("not valid UTF-8") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise UnusableRecordError("JSON nested too deeply") from None
    except ValueError:
        raise UnusableRecordError("not JSON") from None


def _check_is_results_file(
    path: Path, results: Results, before: tuple[int, int, int]
) -> None:
    records, skipped, unreadable = before
    if results.results_records > records or results.skipped > skipped:
        return
    count = results.unreadable - unreadable
    if count:
        raise ChirpJobsError(
            f"invalid results file {path}: none of its lines is a results record "
            f"and {count:,} are unreadable, so it does not look like a results "
            "file; give a JSON-lines file that `chirp-jobs run` wrote"
        )


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield each non-blank line of `path` with its 1-based number, undecoded."""
    try:
        with path.open("rb") as stream:
            for number, line in enumerate(stream, start=1):
                if line.strip():
                    yield number, line
    except FileNotFoundError:
        raise ChirpJobsError(f"results file {path} not found") from None
    except OSError as error:
        raise ChirpJobsError(f"cannot read results file {path}: {error}") from None


def build_report(results: Results) -> dict[str, Any]:
    """Return the report as plain data (the `report --format json` object)."""
    outcomes = list(results.outcomes.values())
    by_outcome = Counter({outcome: 0 for outcome in OUTCOMES})
    by_outcome.update(outcome.outcome for outcome in outcomes)
    statuses = Counter(
        results.call_status(outcome) or "not known"
        for outcome in outcomes
        if outcome.outcome == CREATED
    )
    return {
        "files": results.files,
        "runs": sorted({outcome.run_id for outcome in outcomes}),
        "plannedCalls": len(outcomes),
        "outcomes": dict(by_outcome),
        "callStatus": dict(statuses.most_common()),
        "failuresByCode": _failures_by_code(outcomes),
        "unknown": [
            _unknown_entry(outcome)
            for outcome in outcomes
            if outcome.outcome == UNKNOWN
        ],
        "skippedRecords": results.skipped,
        "unreadableLines": results.unreadable,
        "unreadable": [
            {"file": line.file, "line": line.line, "reason": line.reason}
            for line in results.unreadable_lines
        ],
    }


def _failures_by_code(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for outcome in outcomes:
        if outcome.outcome != FAILED:
            continue
        code = outcome.error_code or outcome.error_type or f"http_{outcome.http_status}"
        group = groups.setdefault(
            code,
            {"code": code, "count": 0, "message": outcome.error_message, "keys": []},
        )
        group["count"] += 1
        group["keys"].append(outcome.key)
    return sorted(groups.values(), key=lambda group: (-group["count"], group["code"]))


def _unknown_entry(outcome: Outcome) -> dict[str, Any]:
    # What a person needs to find the call, if it exists, in webhooks or the
    # Chirp dashboard: the metadata values sent, the numbers and the time.
    return {
        "key": outcome.key,
        "runId": outcome.run_id,
        "from": outcome.request_from,
        "to": outcome.request_to,
        "sentAt": outcome.sent_at,
        "finishedAt": outcome.finished_at,
        "httpStatus": outcome.http_status,
        "error": outcome.error_message or outcome.error_code,
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
    if report["skippedRecords"]:
        yield f"Skipped {report['skippedRecords']:,} records of other kinds."
    yield from _unreadable_lines(report)


def _unreadable_lines(report: dict[str, Any]) -> Iterator[str]:
    count = report["unreadableLines"]
    if not count:
        return
    noun = "line" if count == 1 else "lines"
    yield f"Skipped {count:,} unreadable {noun} (not JSON or not a usable record):"
    for line in report["unreadable"]:
        yield f"  {line['file']}:{line['line']}: {line['reason']}"
    if count > len(report["unreadable"]):
        yield f"  and {count - len(report['unreadable']):,} more"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in counts.items())
