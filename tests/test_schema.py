from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator

from chirp_jobs.schema import (
    definition_pattern,
    job_validator,
    load_schema,
    strict_validator,
)

from .conftest import REPOSITORY


def test_schema_is_valid_2020_12() -> None:
    schema = json.loads((REPOSITORY / "schemas" / "job.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_validator_built_once() -> None:
    assert job_validator() is job_validator()


def test_loaded_schema_is_repository_file() -> None:
    on_disk = json.loads((REPOSITORY / "schemas" / "job.schema.json").read_text())
    assert load_schema() == on_disk


def test_objects_closed_except_metadata() -> None:
    schema = load_schema()
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["callFields"]["additionalProperties"] is False
    assert "additionalProperties" not in schema["$defs"]["metadata"]


def test_e164_pattern_accepts_and_rejects() -> None:
    e164 = definition_pattern("e164")
    for good in ("+15550100123", "+6834999", "+123456789012345"):
        assert e164.fullmatch(good), good
    for bad in ("+1234567890123456", "15550100123", "+05550100123", "", "+"):
        assert not e164.fullmatch(bad), bad


def test_webrtc_pattern_is_documented_charset() -> None:
    webrtc = definition_pattern("webrtcIdentifier")
    assert webrtc.fullmatch("webrtc-user-123")
    assert webrtc.fullmatch("agent.7@desk:2")
    assert not webrtc.fullmatch("")
    assert not webrtc.fullmatch("has space")
    assert not webrtc.fullmatch("-leading-dash")
    assert isinstance(webrtc, re.Pattern)


# Values put in place of each field of a valid job, to find any document that the
# compiled check accepts but jsonschema rejects.
_REPLACEMENTS = [
    "",
    "x",
    "+1",
    "+15550100123\n",
    "90x",
    "pstn ",
    0,
    -1,
    2,
    10_001,
    2.0,
    True,
    None,
    [],
    {},
    ["+15550100123"],
    {"count": 2.0},
    {"address": "+15550100123", "extra": 1},
    {"chirpJobsKey": "x"},
]

_VALID_JOB = {
    "version": 1,
    "name": "differential",
    "maxPlannedCalls": 100,
    "defaults": {"from": "+15550100100", "metadata": {"team": "a"}},
    "calls": [
        {
            "to": [{"address": "+15550100131", "metadata": {"id": "1"}}, "+1555"],
            "fromChannel": "pstn",
            "toChannel": "whatsapp",
            "repeat": {"count": 2, "interval": "90s"},
        },
        {"to": "webrtc-user", "toChannel": "webrtc", "repeat": 3},
    ],
}


def _field_paths(
    value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[str | int, ...]]:
    yield path
    if isinstance(value, dict):
        for name, item in value.items():
            yield from _field_paths(item, (*path, name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _field_paths(item, (*path, index))


def _replaced(document: Any, path: tuple[str | int, ...], replacement: Any) -> Any:
    copy = json.loads(json.dumps(document))
    if not path:
        return replacement
    parent = copy
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = replacement
    return copy


def test_compiled_check_never_laxer() -> None:
    strict = strict_validator()
    validator = job_validator()
    assert list(validator.iter_errors(_VALID_JOB)) == []
    compared = 0
    for path in _field_paths(_VALID_JOB):
        for replacement in _REPLACEMENTS:
            document = _replaced(_VALID_JOB, path, replacement)
            expected = [error.message for error in strict.iter_errors(document)]
            actual = [error.message for error in validator.iter_errors(document)]
            assert actual == expected, (path, replacement)
            compared += 1
    assert compared == 25 * len(_REPLACEMENTS)


def test_float_integer_rejected() -> None:
    document = _replaced(_VALID_JOB, ("calls", 1, "repeat"), 2.0)
    messages = [error.message for error in job_validator().iter_errors(document)]
    assert messages == ["2.0 is not of type 'integer'"]
