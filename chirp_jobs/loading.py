"""Load job files (YAML or TOML) into plain data, strictly, keeping positions.

Both formats give the same structure of dicts, lists, strings, numbers, booleans and
None. The YAML loader follows the YAML 1.2 core schema for plain scalars instead of
PyYAML's YAML 1.1 rules, so `yes`, `0123`, `1_000`, `1:20` and dates stay the text the
user wrote. Positions are not kept while loading: when a problem needs one, the
document is walked again by `Document.locate`, which keeps the fast path lean.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from .api_keys import api_key_problems
from .errors import MAX_PROBLEMS_PER_FILE, JobFileError, Problem
from .positions import (
    KEY_MARK,
    AllLocated,
    FieldPath,
    Location,
    RequestedLocations,
    format_field,
    nearest_location,
)
from .toml_loading import (
    long_integer_message,
    parse_toml,
    toml_locations,
    toml_plus_numbers,
)

__all__ = ["Document", "FieldPath", "Location", "format_field", "load_document"]

YAML_SUFFIXES = (".yaml", ".yml")
TOML_SUFFIXES = (".toml",)
JOB_FILE_SUFFIXES = YAML_SUFFIXES + TOML_SUFFIXES

# A job file is reviewed by people. 16 MiB is far past any file a person reads, and
# it fits a recipient list of several hundred thousand numbers.
MAX_FILE_BYTES = 16 * 1024 * 1024
# Job files nest five levels deep at most (calls, a call, to, a recipient, metadata);
# metadata may nest further, but not without bound.
MAX_DEPTH = 64
# Aliases share one object, but anything that walks the data (validation, JSON
# encoding) visits each use again, so the nodes reached through aliases are capped.
MAX_ALIAS_NODES = 100_000
# The maximum number of scans for the positions of given paths, after which
# `Document.locate` maps the whole file.
MAX_PARTIAL_SCANS = 3

_EMPTY_FILE = "the file is empty; a job file sets at least version, name and calls"

_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML_NULL = frozenset(["", "~", "null", "Null", "NULL"])
_YAML_TRUE = frozenset(["true", "True", "TRUE"])
_YAML_FALSE = frozenset(["false", "False", "FALSE"])
_YAML_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
# A float needs a dot or an exponent, and its whole part has no leading zero, so
# `0123` stays text instead of becoming 123.0.
_YAML_FLOAT = re.compile(
    r"[-+]?(?:(?:0|[1-9][0-9]*)\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?(?:0|[1-9][0-9]*)[eE][-+]?[0-9]+"
)
_YAML_STR_TAGS = frozenset([None, "!", "tag:yaml.org,2002:str"])
_INFINITY = float("inf")


@dataclass
class Document:
    """A parsed job file: its data and a way to find where each value was written."""

    path: str
    data: Any
    text: str
    format: str
    # Integers in metadata written with a leading +, which the number loses
    # (`+15550100123`). Metadata is sent as written; elsewhere the schema rejects
    # numbers where text belongs.
    plus_numbers: list[FieldPath] = field(default_factory=list)
    _locations: dict[FieldPath, Location] | None = field(default=None, repr=False)
    # The paths `_locations` was scanned for, or None once the whole file is mapped.
    _scanned_for: frozenset[FieldPath] | None = field(default=None, repr=False)
    _expected: set[FieldPath] = field(default_factory=set, repr=False)
    _scans: int = field(default=0, repr=False)

    def expect(self, paths: Iterable[FieldPath]) -> None:
        """Add paths that will be located soon, so that one scan finds them all."""
        self._expected.update(paths)

    def locate(self, path: FieldPath) -> Location:
        """Return the location of the value at `path`, or of its nearest parent."""
        scanned_for = self._scanned_for
        if self._locations is None or (
            scanned_for is not None and path not in scanned_for
        ):
            self._locations = self._scan(path)
        return nearest_location(self._locations, path)

    def _scan(self, path: FieldPath) -> dict[FieldPath, Location]:
        # A scan for given paths keeps only those and their parents, and stops
        # once it has found them all, so a few problems at the start of a large
        # file cost little time and memory. Each path not expected costs a scan,
        # so past a few scans the whole file is mapped instead.
        self._expected.add(path)
        self._scans += 1
        requested = None
        if self._scans <= MAX_PARTIAL_SCANS:
            requested = frozenset(self._expected)
        self._scanned_for = requested
        if self.format == "yaml":
            return _yaml_locations(self.text, requested)
        return toml_locations(self.text, requested)

    def locate_key(self, path: FieldPath) -> Location:
        """Return the location of the key that names the value at `path`."""
        return self.locate((*path, KEY_MARK))

    def problem(self, path: FieldPath, message: str, at_key: bool = False) -> Problem:
        where = self.locate_key(path) if at_key else self.locate(path)
        return Problem(self.path, where.line, where.column, format_field(path), message)

    def iter_problems(
        self, findings: Iterable[tuple[FieldPath, str]]
    ) -> Iterator[Problem]:
        """Yield a problem for each (field path, message), located in batches.

        A batch has `MAX_PROBLEMS_PER_FILE` + 1 paths, so a caller that stops at
        the limit scans the file for positions once.
        """
        pending = iter(findings)
        while batch := list(itertools.islice(pending, MAX_PROBLEMS_PER_FILE + 1)):
            self.expect(path for path, _ in batch)
            for path, message in batch:
                yield self.problem(path, message)


def load_document(path: Path, display: str | None = None) -> Document:
    """Read and parse one job file, raising `JobFileError` for anything invalid."""
    shown = display if display is not None else str(path)
    suffix = path.suffix.lower()
    if suffix not in JOB_FILE_SUFFIXES:
        raise _file_error(
            shown,
            f"unsupported file type {suffix or '(none)'!r}; "
            "job files end in .yaml, .yml or .toml",
        )
    text = _read_text(path, shown)
    try:
        return _parse_document(text, shown, suffix)
    except JobFileError as error:
        # A key in a file that does not parse has leaked all the same.
        problems = [*error.problems, *api_key_problems(shown, text)]
        raise JobFileError(problems, more=error.more) from None


def _parse_document(text: str, shown: str, suffix: str) -> Document:
    if suffix in YAML_SUFFIXES:
        data, plus_numbers = _parse_yaml(text, shown)
        if data is None:
            raise _file_error(shown, _EMPTY_FILE, 1, 1)
        return Document(shown, data, text, "yaml", plus_numbers)
    data = parse_toml(text, shown)
    if not data:
        raise _file_error(shown, _EMPTY_FILE, 1, 1)
    return Document(shown, data, text, "toml", toml_plus_numbers(text, data))


def _file_error(
    path: str, message: str, line: int = 0, column: int = 0
) -> JobFileError:
    return JobFileError([Problem(path, line, column, "", message)])


def _read_text(path: Path, shown: str) -> str:
    try:
        # A FIFO or device named like a job file would block or never end.
        if path.exists() and not path.is_dir() and not path.is_file():
            raise _file_error(shown, "not a regular file; give the job file itself")
        with path.open("rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise _file_error(shown, "file not found") from None
    except IsADirectoryError:
        raise _file_error(shown, "is a folder, not a job file") from None
    except OSError as error:
        raise _file_error(shown, f"cannot read: {error.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise _file_error(
            shown,
            f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; "
            "split it into several jobs",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise _file_error(
            shown, "not valid UTF-8; save the file as UTF-8", line, 1
        ) from None
    # Editors on Windows often write a byte-order mark; both formats accept it here.
    return text.removeprefix("\ufeff")


# YAML ---------------------------------------------------------------------------


class _YamlBuilder:
    """Build plain data from a YAML event stream, iteratively and with limits.

    Working from events instead of PyYAML's node graph keeps memory bounded for deep
    or alias-heavy files, and gives each rule (duplicate keys, tags, core-schema
    scalars) one place.
    """

    def __init__(self, path: str, locations: dict[FieldPath, Location] | None):
        self.path = path
        self.locations = locations
        self.problems: list[Problem] = []
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.alias_nodes = 0
        self.plus_numbers: list[FieldPath] = []

    def build(self, events: Iterator[yaml.Event]) -> Any:
        # Each frame: [container, field path, pending key, key mark, node count,
        # anchor, first-line-of-key map].
        stack: list[list[Any]] = []
        documents = 0
        result: Any = None
        for event in events:
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    self._fail(event, "a job file holds one YAML document; remove ---")
                continue
            if isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                frame = stack.pop()
                value, count, anchor = frame[0], frame[4], frame[5]
                if anchor is not None:
                    self.anchors[anchor] = (value, count)
                if stack:
                    stack[-1][4] += count
                    self._attach(stack[-1], value, event, is_collection=True)
                else:
                    result = value
                continue
            if not isinstance(
                event,
                yaml.ScalarEvent
                | yaml.MappingStartEvent
                | yaml.SequenceStartEvent
                | yaml.AliasEvent,
            ):
                continue
            parent = stack[-1] if stack else None
            if parent is not None and isinstance(parent[0], dict) and parent[2] is None:
                self._take_key(parent, event)
                continue
            path = self._child_path(parent)
            self._record(path, event)
            if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                self._check_collection_tag(event, path)
                if len(stack) >= MAX_DEPTH:
                    self._fail(
                        event,
                        f"nested more than {MAX_DEPTH} levels deep; job files need "
                        "only a few levels",
                    )
                container: Any = {} if isinstance(event, yaml.MappingStartEvent) else []
                stack.append([container, path, None, None, 1, event.anchor, {}])
                continue
            if isinstance(event, yaml.AliasEvent):
                value, count = self._resolve_alias(event)
            else:
                value, count = self._scalar(event, path), 1
                if event.anchor is not None:
                    self.anchors[event.anchor] = (value, 1)
            if parent is None:
                result = value
            else:
                parent[4] += count
                self._attach(parent, value, event, is_collection=False)
        return result

    def _child_path(self, parent: list[Any] | None) -> FieldPath:
        if parent is None:
            return ()
        if isinstance(parent[0], dict):
            return (*parent[1], parent[2])
        return (*parent[1], len(parent[0]))

    def _take_key(self, frame: list[Any], event: yaml.Event) -> None:
        if not isinstance(event, yaml.ScalarEvent):
            self._fail(event, "mapping keys must be plain names, not lists or maps")
        key = event.value
        if key == "<<" and not event.style:
            self._fail(event, "merge keys (<<) are not supported; use `defaults`")
        first = frame[6].get(key)
        line, column = _position(event)
        if self.locations is not None:
            self.locations.setdefault(
                (*frame[1], key, KEY_MARK), Location(line, column)
            )
        # One problem past the limit is kept, so `load_job` reports there are more.
        if first is not None and len(self.problems) <= MAX_PROBLEMS_PER_FILE:
            self.problems.append(
                Problem(
                    self.path,
                    line,
                    column,
                    format_field((*frame[1], key)),
                    f"duplicate key `{key}` at line {line}; "
                    f"first defined at line {first}",
                )
            )
        elif first is None:
            frame[6][key] = line
        frame[2] = key

    def _attach(
        self, frame: list[Any], value: Any, event: yaml.Event, is_collection: bool
    ) -> None:
        container = frame[0]
        if isinstance(container, dict):
            key = frame[2]
            if key not in container:
                container[key] = value
            frame[2] = None
        else:
            container.append(value)

    def _record(self, path: FieldPath, event: yaml.Event) -> None:
        if self.locations is None or path in self.locations:
            return
        text = None
        if isinstance(event, yaml.ScalarEvent) and not event.style:
            text = event.value
        self.locations.setdefault(path, Location(*_position(event), text))

    def _check_collection_tag(self, event: yaml.Event, path: FieldPath) -> None:
        tag = getattr(event, "tag", None)
        if tag is not None and tag not in (
            "tag:yaml.org,2002:map",
            "tag:yaml.org,2002:seq",
        ):
            self._fail(event, _tag_message(tag), path)

    def _resolve_alias(self, event: yaml.AliasEvent) -> tuple[Any, int]:
        anchor = self.anchors.get(event.anchor or "")
        if anchor is None:
            self._fail(event, f"alias *{event.anchor} has no anchor before it")
        value, count = anchor
        self.alias_nodes += count
        if self.alias_nodes > MAX_ALIAS_NODES:
            self._fail(
                event,
                f"aliases expand to more than {MAX_ALIAS_NODES:,} values; "
                "write the values out or use `defaults`",
            )
        return value, count

    def _scalar(self, event: yaml.ScalarEvent, path: FieldPath) -> Any:
        value = event.value
        tag = event.tag
        if tag not in _YAML_STR_TAGS:
            self._fail(event, _tag_message(tag), path)
        # libyaml reports a plain scalar's style as "", the pure-Python parser as None.
        if event.style or tag is not None:
            return value
        # YAML 1.2 core schema, minus the forms whose meaning is easy to misread
        # (0o17, 0x1F, .inf, .nan): those stay the text the user wrote.
        if value in _YAML_NULL:
            return None
        if value in _YAML_TRUE:
            return True
        if value in _YAML_FALSE:
            return False
        if _YAML_INT.fullmatch(value):
            if value.startswith("+") and "metadata" in path:
                self.plus_numbers.append(path)
            try:
                return int(value)
            except ValueError:
                digits = len(value.lstrip("+-"))
                limit = sys.get_int_max_str_digits()
                self._fail(event, long_integer_message(digits, limit), path)
        if _YAML_FLOAT.fullmatch(value):
            number = float(value)
            if number in (_INFINITY, -_INFINITY):
                self._fail(event, f"{value} is too large for a number", path)
            return number
        return value

    def _fail(self, event: yaml.Event, message: str, path: FieldPath = ()) -> NoReturn:
        line, column = _position(event)
        problem = Problem(self.path, line, column, format_field(path), message)
        raise JobFileError([*self.problems, problem])


def _tag_message(tag: str | None) -> str:
    shown = str(tag).replace("tag:yaml.org,2002:", "!!", 1)
    return f"unsupported tag {shown}; job files take plain values, so remove the tag"


def _position(event: yaml.Event) -> tuple[int, int]:
    """Return the 1-based line and column where `event` starts."""
    mark = event.start_mark
    if mark is None:
        return 0, 0
    return mark.line + 1, mark.column + 1


def _yaml_events(text: str, path: str) -> Iterator[yaml.Event]:
    try:
        yield from yaml.parse(text, Loader=_YAML_LOADER)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else 0
        column = mark.column + 1 if mark else 0
        message = error.problem or error.context or "invalid YAML"
        hint = _yaml_hint(text, error)
        raise _file_error(
            path, f"invalid YAML: {message}{hint}", line, column
        ) from None
    except yaml.YAMLError as error:
        raise _file_error(path, f"invalid YAML: {error}") from None


def _yaml_hint(text: str, error: yaml.MarkedYAMLError) -> str:
    message = error.problem or ""
    context = error.context or ""
    mark = error.problem_mark
    found = text[mark.index : mark.index + 1] if mark is not None else ""
    if found == "\t" or "found character '\\t'" in message:
        return "; indent with spaces, not tabs"
    if "quoted scalar" in context and error.context_mark is not None:
        start = error.context_mark.line + 1
        return f"; the quoted text that starts on line {start} is never closed"
    if "maximum nesting depth" in message:
        return f"; job files nest at most {MAX_DEPTH} levels"
    if "mapping values are not allowed" in message:
        return "; put a space after each colon, and quote values that contain ': '"
    if "could not find expected ':'" in message:
        return "; write each field as `key: value`, with a space after the colon"
    if "did not find expected key" in message or "expected <block end>" in message:
        return "; check the indentation of this line against the lines above"
    if "flow sequence" in context:
        return "; close the list with ] and separate items with commas"
    if "flow mapping" in context:
        return "; close the mapping with } and separate fields with commas"
    return ""


def _parse_yaml(text: str, path: str) -> tuple[Any, list[FieldPath]]:
    builder = _YamlBuilder(path, None)
    data = builder.build(_yaml_events(text, path))
    if builder.problems:
        raise JobFileError(builder.problems)
    return data, builder.plus_numbers


def _yaml_locations(
    text: str, requested: frozenset[FieldPath] | None
) -> dict[FieldPath, Location]:
    """Map the field paths in `requested`, or all of them, to their positions."""
    locations = {} if requested is None else RequestedLocations(requested)
    # Positions are needed only for a file already parsed once, so errors here are
    # impossible in practice; a partial map is still better than none.
    with contextlib.suppress(JobFileError, AllLocated):
        _YamlBuilder("", locations).build(_yaml_events(text, ""))
    return locations
