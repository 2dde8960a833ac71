"""The published JSON Schema of job files, and the patterns the code takes from it."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

SCHEMA_FILE = "job.schema.json"


@functools.cache
def schema_text() -> str:
    """Return the schema as published: inside the installed package, else the checkout.

    A wheel carries the schema in `chirp_jobs/schemas/`. An editable install or a
    plain checkout reads the repository's `schemas/` folder, so there is one copy to
    edit.
    """
    packaged = resources.files("chirp_jobs").joinpath("schemas", SCHEMA_FILE)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parent.parent / "schemas" / SCHEMA_FILE
    return checkout.read_text(encoding="utf-8")


@functools.cache
def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_text())
    return schema


@functools.cache
def job_validator() -> Any:
    """Return the job file validator, built once per process.

    Its `iter_errors` yields jsonschema errors, which carry the paths and keywords
    that error messages are built from.
    """
    return _CheckedValidator(_compiled_check())


@functools.cache
def strict_validator() -> Any:
    """Return the jsonschema validator of job files, built once per process."""
    # jsonschema costs about 80 ms to import, so commands that never validate
    # (`--help`, `sandbox`) do not pay for it.
    from jsonschema import Draft202012Validator, validators

    # jsonschema counts 2.0 as an integer, as the specification allows; a job file
    # with `repeat: 2.0` is more likely a mistake than a count, so floats are
    # rejected where the schema requires an integer.
    type_checker = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: type(value) is int
    )
    strict = validators.extend(  # type: ignore[no-untyped-call]
        Draft202012Validator, type_checker=type_checker
    )
    return strict(load_schema())


def _compiled_check() -> Callable[[Any], Any]:
    import fastjsonschema

    # fastjsonschema compiles the schema to Python code, which checks a valid
    # document several times faster than jsonschema walks it; the figures are in
    # benchmarks/RESULTS.md.
    return fastjsonschema.compile(load_schema(), use_formats=False)


class _CheckedValidator:
    """A jsonschema validator with a compiled check in front of it.

    The compiled check only decides that a document is valid, and jsonschema
    remains the reference: any document the check rejects, or that contains a
    float, is validated again by jsonschema, whose errors are returned. Floats go
    to jsonschema because fastjsonschema counts 2.0 as an integer. jsonschema is
    imported only then, so validating valid files does not pay for its import.
    """

    def __init__(self, compiled: Callable[[Any], Any]) -> None:
        self._compiled = compiled

    def iter_errors(self, instance: Any) -> Iterator[Any]:
        if not _contains_float(instance):
            try:
                self._compiled(instance)
            except Exception:  # Any failure, of any type, defers to jsonschema.
                pass
            else:
                return iter(())
        return iter(strict_validator().iter_errors(instance))


def _contains_float(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is float:
            return True
        if kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
    return False


@functools.cache
def definition_pattern(name: str) -> re.Pattern[str]:
    """Compile the `pattern` of the schema definition `name` (such as `e164`)."""
    return re.compile(load_schema()["$defs"][name]["pattern"])


def definition_limit(name: str, keyword: str) -> int:
    value: int = load_schema()["$defs"][name][keyword]
    return value


def property_limit(name: str, keyword: str) -> int:
    value: int = load_schema()["properties"][name][keyword]
    return value
