"""Turn a parsed job file into a validated `Job`: schema, defaults, channel rules."""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .api_keys import api_key_message, api_key_problems, iter_api_key_paths
from .errors import MAX_PROBLEMS_PER_FILE, Problem, ProblemCollector
from .loading import Document, FieldPath, format_field
from .positions import KEY_MARK
from .schema import definition_pattern, job_validator, property_limit

CHANNELS = ("pstn", "webrtc", "whatsapp")
DEFAULT_CHANNEL = "pstn"
DEFAULT_MAX_PLANNED_CALLS = 10_000
# Metadata keys that chirp-jobs adds to every request so that a webhook or a
# GET /v1/calls/{id} ties a call back to its plan key and run.
KEY_METADATA = "chirpJobsKey"
RUN_METADATA = "chirpJobsRun"

_INTERVAL_UNITS = {"s": 1, "m": 60, "h": 3600}
_REQUIRED_MESSAGE = re.compile(r"'(.+)' is a required property")
_PHONE_PUNCTUATION = re.compile(r"[\s\-().\[\]_]")


@dataclass(frozen=True)
class CallSpec:
    """One entry of `calls` with its defaults applied.

    `recipients` contains the items of `to` as written: an address string or an object
    with `address` and `metadata`. They are expanded lazily by the planner.
    """

    index: int
    from_address: str
    from_channel: str
    to_channel: str
    metadata: dict[str, Any]
    recipients: list[Any]
    repeat_count: int
    interval_seconds: int


@dataclass(frozen=True)
class Job:
    """A validated job: what the planner expands into planned calls."""

    path: str
    name: str
    description: str
    calls: list[CallSpec]
    max_planned_calls: int
    # The `settings` section as written; `chirp_jobs.settings` applies it.
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def planned_count(self) -> int:
        return sum(len(call.recipients) * call.repeat_count for call in self.calls)


def build_job(document: Document) -> Job:
    """Validate a parsed job file and return the job, or raise `JobFileError`.

    Checking stops once the file has more than `MAX_PROBLEMS_PER_FILE` problems.
    """
    problems = ProblemCollector()
    problems.extend(_api_key_problems(document))
    problems.extend(_plus_number_problems(document))
    schema_fields: set[str] = set()
    problems.extend(_schema_problems(document, schema_fields))
    # If checking stopped before the schema was checked to the end, the data may
    # still be invalid, so no job is built from it.
    if schema_fields or problems.more:
        # The channel rules for addresses need defaults applied, which the schema
        # cannot express; they are checked anyway so one pass reports everything.
        addresses = _tolerant_address_problems(document)
        problems.extend(p for p in addresses if p.field not in schema_fields)
        raise problems.error()

    data = document.data
    defaults = data.get("defaults", {})
    problems.extend(document.iter_problems(_call_findings(defaults, data["calls"])))
    if problems:
        raise problems.error()
    job = Job(
        path=document.path,
        name=data["name"],
        description=data.get("description", ""),
        calls=[
            _build_call(index, defaults, call)
            for index, call in enumerate(data["calls"])
        ],
        max_planned_calls=data.get("maxPlannedCalls", DEFAULT_MAX_PLANNED_CALLS),
        settings=data.get("settings", {}),
    )
    problems.extend(_size_problems(document, job))
    if problems:
        raise problems.error()
    return job


def _api_key_problems(document: Document) -> Iterable[Problem]:
    problems = api_key_problems(document.path, document.text)
    if problems:
        return problems
    message = api_key_message()
    paths = iter_api_key_paths(document.data)
    return document.iter_problems((path, message) for path in paths)


def _plus_number_problems(document: Document) -> Iterator[Problem]:
    # Metadata is sent as written, so `+15550100123` there would arrive as the
    # number 15550100123. Other fields are checked by the schema.
    paths = document.plus_numbers
    document.expect(paths[: MAX_PROBLEMS_PER_FILE + 1])
    for path in paths:
        written = document.locate(path).text
        yield document.problem(
            path,
            f"{written} was read as a number, which drops the +; quote it to "
            f'send it as written: "{written}"',
        )


def _schema_problems(document: Document, fields: set[str]) -> Iterator[Problem]:
    """Yield one problem per field that breaks the schema, adding it to `fields`.

    jsonschema finds errors lazily, so a caller that stops iterating stops the
    validation too. NOTE: it still walks every valid value before an error, so a
    file of 600,000 valid recipients with one error after them took 56 s to
    check on a 2-vCPU machine under CPython 3.11.
    """
    errors = iter(job_validator().iter_errors(document.data))
    while batch := _next_schema_errors(errors, fields):
        document.expect(_location_path(error) for error in batch)
        for error in batch:
            yield _schema_problem(document, error)


def _next_schema_errors(errors: Iterator[Any], fields: set[str]) -> list[Any]:
    # A value can break several keywords at once (`version = "1"` is neither an
    # integer nor 1); the first message, usually about its type, is enough.
    batch = []
    for error in errors:
        field = format_field(_schema_target(error)[0])
        if field in fields:
            continue
        fields.add(field)
        batch.append(error)
        if len(batch) > MAX_PROBLEMS_PER_FILE:
            break
    return batch


def _location_path(error: Any) -> FieldPath:
    path, at_key = _schema_target(error)
    return (*path, KEY_MARK) if at_key else path


def _call_findings(
    defaults: dict[str, Any], calls: list[dict[str, Any]]
) -> Iterator[tuple[FieldPath, str]]:
    for index, call in enumerate(calls):
        missing = [
            name for name in ("from", "to") if _value(call, defaults, name) is None
        ]
        for name in missing:
            message = f"missing `{name}`; set it on the call or in `defaults`"
            yield ("calls", index), message
        if not missing:
            yield from _call_address_findings(index, defaults, call)


def _value(call: dict[str, Any], defaults: dict[str, Any], name: str) -> Any:
    return call.get(name, defaults.get(name))


def _build_call(index: int, defaults: dict[str, Any], call: dict[str, Any]) -> CallSpec:
    def value(name: str) -> Any:
        return _value(call, defaults, name)

    from_channel = value("fromChannel") or DEFAULT_CHANNEL
    to_channel = value("toChannel") or DEFAULT_CHANNEL
    recipients = value("to")
    if not isinstance(recipients, list):
        recipients = [recipients]
    count, interval = _repeat(value("repeat"))
    return CallSpec(
        index=index,
        from_address=value("from"),
        from_channel=from_channel,
        to_channel=to_channel,
        metadata={**defaults.get("metadata", {}), **call.get("metadata", {})},
        recipients=recipients,
        repeat_count=count,
        interval_seconds=interval,
    )


def _tolerant_address_problems(document: Document) -> Iterator[Problem]:
    data = document.data
    if not isinstance(data, dict) or not isinstance(data.get("calls"), list):
        return
    defaults = data.get("defaults")
    if not isinstance(defaults, dict):
        defaults = {}

    def findings() -> Iterator[tuple[FieldPath, str]]:
        for index, call in enumerate(data["calls"]):
            if isinstance(call, dict):
                yield from _call_address_findings(index, defaults, call)

    yield from document.iter_problems(findings())


def _call_address_findings(
    index: int, defaults: dict[str, Any], call: dict[str, Any]
) -> Iterator[tuple[FieldPath, str]]:
    """Check `from` and each `to` of one call against its channels.

    Yields the field path and message of each problem. Values of the wrong type or
    on an unknown channel are skipped: the schema reports those.
    """

    def source(name: str) -> FieldPath:
        if name in call:
            return ("calls", index, name)
        return ("defaults", name)

    def value(name: str) -> Any:
        return _value(call, defaults, name)

    from_channel = value("fromChannel") or DEFAULT_CHANNEL
    to_channel = value("toChannel") or DEFAULT_CHANNEL
    checks: list[tuple[Any, str, FieldPath]] = [
        (value("from"), from_channel, source("from"))
    ]
    recipients = value("to")
    if isinstance(recipients, list):
        items = [(item, (*source("to"), i)) for i, item in enumerate(recipients)]
    else:
        items = [(recipients, source("to"))]
    for item, path in items:
        if isinstance(item, dict):
            checks.append((item.get("address"), to_channel, (*path, "address")))
        else:
            checks.append((item, to_channel, path))
    for address, channel, path in checks:
        if not isinstance(address, str) or channel not in CHANNELS:
            continue
        message = address_problem(address, channel)
        if message:
            yield path, message


def _repeat(repeat: Any) -> tuple[int, int]:
    if repeat is None:
        return 1, 0
    if isinstance(repeat, int):
        return repeat, 0
    interval = repeat.get("interval")
    seconds = int(interval[:-1]) * _INTERVAL_UNITS[interval[-1]] if interval else 0
    return repeat["count"], seconds


def address_problem(address: str, channel: str) -> str | None:
    """Return what is wrong with `address` on `channel`, or None when it is valid."""
    if channel == "webrtc":
        if definition_pattern("webrtcIdentifier").fullmatch(address):
            return None
        message = (
            f"{address!r} is not a valid WebRTC identifier: use 1 to 128 letters, "
            "digits and . _ - : @, starting with a letter or digit"
        )
        if definition_pattern("e164").fullmatch(address):
            message += "; for a phone number, set the channel to pstn or whatsapp"
        return message
    if definition_pattern("e164").fullmatch(address):
        return None
    return f"{address!r} is not an E.164 number ({channel} channel): " + _e164_hint(
        address
    )


def _e164_hint(address: str) -> str:
    foreign = next((char for char in address if not char.isascii()), None)
    if foreign is not None:
        # Full-width plus signs, Arabic-Indic digits and invisible direction marks
        # look right on screen but are not E.164.
        name = unicodedata.name(foreign, "an invisible character")
        return (
            f"it contains U+{ord(foreign):04X} ({name}); type it with an ASCII + "
            "and the digits 0-9 only"
        )
    if not address.startswith("+") and any(char.isalpha() for char in address):
        return (
            "phone numbers contain digits only; if this is a WebRTC identity, set "
            "the channel (fromChannel or toChannel) to webrtc"
        )
    cleaned = _PHONE_PUNCTUATION.sub("", address)
    if cleaned != address and definition_pattern("e164").fullmatch(cleaned):
        return f"remove spaces, dashes, dots, underscores and brackets: {cleaned!r}"
    if cleaned != address:
        rest = _e164_hint(cleaned) if cleaned else "write the number"
        return f"remove spaces, dashes, dots, underscores and brackets, and {rest}"
    if not address.startswith("+"):
        return "start with + and the country code, as in '+15550100123'"
    digits = address[1:]
    if not digits:
        return "a plus alone is not a number; add the country code and number"
    if not digits.isdigit():
        return "after the plus, use digits only"
    if digits.startswith("0"):
        return "country codes never start with 0"
    if len(digits) > 15:
        return f"it has {len(digits)} digits; E.164 allows at most 15"
    return "it is too short; add the full number after the country code"


def _size_problems(document: Document, job: Job) -> list[Problem]:
    # The count comes from the list lengths, so an oversized job is rejected before
    # anything is expanded.
    count = job.planned_count
    if count <= job.max_planned_calls:
        return []
    hard_limit = property_limit("maxPlannedCalls", "maximum")
    return [
        document.problem(
            ("calls",),
            f"the job expands to {count:,} planned calls, more than maxPlannedCalls "
            f"({job.max_planned_calls:,}); if that is intended, raise "
            f"maxPlannedCalls (at most {hard_limit:,})",
        )
    ]


# Schema errors as messages -------------------------------------------------------


def _schema_target(error: Any) -> tuple[FieldPath, bool]:
    """Return the field path a schema error is reported at, and whether at its key."""
    path: FieldPath = tuple(error.absolute_path)
    instance = error.instance
    keyword = error.validator
    if keyword == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        return (*path, sorted(set(instance) - allowed)[0]), True
    if "propertyNames" in error.schema_path:
        return (*path, instance), True
    if keyword == "required":
        # jsonschema reports each missing property as its own error, naming it only
        # in the message.
        named = _REQUIRED_MESSAGE.fullmatch(str(error.message))
        missing = [name for name in error.validator_value if name not in instance]
        return (*path, named.group(1) if named else missing[0]), False
    return path, False


def _schema_problem(document: Document, error: Any) -> Problem:
    path, at_key = _schema_target(error)
    name = path[-1] if path else ""
    keyword = error.validator
    if keyword == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        message = _unknown_field(str(name), allowed)
        return document.problem(path, message, at_key=True)
    if at_key:
        return document.problem(
            path,
            f"metadata key `{name}` is reserved: keys starting with chirpJobs "
            "carry the plan key and run id",
            at_key=True,
        )
    if keyword == "required":
        return document.problem(path, f"missing required field `{name}`")
    return document.problem(path, _value_message(document, path, error))


def _unknown_field(name: str, allowed: list[str]) -> str:
    message = f"unknown field `{name}`"
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    if close:
        return f"{message}; did you mean `{close[0]}`?"
    return f"{message}; expected one of: {', '.join(allowed)}"


def _value_message(document: Document, path: FieldPath, error: Any) -> str:
    keyword = error.validator
    instance = error.instance
    written = _as_written(document, path, instance)
    name = next((part for part in reversed(path) if isinstance(part, str)), "")
    if keyword == "type" and not path:
        return (
            "a job file is a mapping of fields (version, name, calls), "
            f"not {_kind(instance)}"
        )
    if keyword == "type":
        message = _type_message(name, written, instance, error.validator_value)
        if document.format == "toml" and path == ("calls",):
            message += "; write [[calls]], with double brackets, above each call"
        return message
    if keyword == "enum":
        close = difflib.get_close_matches(str(instance), CHANNELS, n=1)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        return f"{written} is not a channel; use pstn, webrtc or whatsapp{hint}"
    if keyword == "const":
        return f"unsupported version {written}; this chirp-jobs reads version 1"
    if keyword == "pattern" and name == "name":
        return (
            f"{written} is not a slug: use lowercase letters, digits and single "
            "dashes, such as `appointment-reminders`"
        )
    if keyword == "pattern" and name == "interval":
        return (
            f"{written} is not an interval: use a whole number above zero and s, m "
            "or h, such as 90s or 10m"
        )
    if keyword in ("minimum", "maximum"):
        relation = "at least" if keyword == "minimum" else "at most"
        bound = f"{error.validator_value:,}"
        return f"{written} is out of range: use a whole number {relation} {bound}"
    if keyword in ("minItems", "minLength"):
        return "must not be empty"
    return str(error.message)


def _type_message(name: str, written: str, instance: Any, expected: Any) -> str:
    is_number = isinstance(instance, int | float) and not isinstance(instance, bool)
    if is_number and name in ("from", "to", "address"):
        if not written.startswith("+"):
            return (
                f"{written} was read as a number; quote phone numbers and start "
                'them with + and the country code, as in "+15550100123"'
            )
        return (
            f"{written} was read as a number, which loses the leading + and "
            f'zeros; quote phone numbers: "{written}"'
        )
    if is_number and name == "interval":
        return f'{written} needs a unit: write "{written}s", or use m or h'
    if expected == "integer" and isinstance(instance, float):
        return f"{written} must be a whole number, such as {int(instance)}"
    expected_words = {
        "string": "text",
        "integer": "a whole number",
        "object": "a mapping of fields",
        "array": "a list",
    }
    wanted = expected_words.get(expected, expected)
    if instance is None:
        return f"{written} is no value (null); expected {wanted}"
    return f"{written} has the wrong type: expected {wanted}"


def _kind(instance: Any) -> str:
    if isinstance(instance, list):
        return "a list"
    if isinstance(instance, str):
        return "text"
    return "a single value"


def _as_written(document: Document, path: FieldPath, instance: Any) -> str:
    location = document.locate(path)
    if location.text is not None and not isinstance(instance, dict | list):
        return location.text
    if isinstance(instance, str):
        return repr(instance)
    if isinstance(instance, bool):
        return "true" if instance else "false"
    if isinstance(instance, dict):
        return "a mapping"
    if isinstance(instance, list):
        return "a list"
    if instance is None:
        return "null"
    return str(instance)
