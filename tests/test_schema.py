from __future__ import annotations

import json
import re

from jsonschema import Draft202012Validator

from chirp_jobs.schema import definition_pattern, job_validator, load_schema

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
