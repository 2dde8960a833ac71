"""Load TOML job files with tomllib, and find positions that tomllib does not report.

tomllib (Python 3.11) reports a line and column only in its decode errors, so the
positions of values are found by `toml_locations`, a scanner run only when a
problem needs a position.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import re
import sys
import tomllib
from collections.abc import Iterator
from datetime import date, datetime, time
from typing import Any

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

# Arrays and inline tables nest no deeper than this, and a dotted key or table
# header has fewer parts. tomllib parses nested arrays recursively (a RecursionError
# past about 1,000 levels) and spends quadratic time on long dotted keys, so both
# are checked before tomllib parses the text.
MAX_TOML_NESTING = 64

_POSITION = re.compile(r"\s*\((?:at line (\d+), column (\d+)|at end of document)\)")
# The tokens that change nesting, with strings and comments matched whole so that
# brackets and dots inside them are skipped.
_NESTING_TOKEN = re.compile(
    r'"""(?:\\[\s\S]|[^\\])*?"""'
    r"|'''[\s\S]*?'''"
    r'|"(?:\\.|[^"\\\n])*"'
    r"|'[^'\n]*'"
    r"|#[^\n]*"
    r"|[\[\]{}.=,\n]"
)
_KEY_LINE = re.compile(r"^\s*([A-Za-z0-9_.\"' -]+?)\s*=\s*([^#]*?)\s*(?:#.*)?$")
_UNQUOTED_TEXT = re.compile(r"[A-Za-z0-9_+][^\"'\[{]*")
_TOML_WORDS = frozenset(["true", "false", "inf", "nan", "+inf", "-inf", "+nan", "-nan"])
_LONG_INTEGER = re.compile(r"[-+]?[0-9][0-9_]*")
# A value that may be an integer written with a leading +. Matches inside strings
# too, which the scanner then rules out.
_MAYBE_PLUS_NUMBER = re.compile(r"(?:^|[=\[,{])[ \t]*\+[0-9]", re.MULTILINE)


def parse_toml(text: str, path: str) -> Any:
    """Parse TOML text into plain data, raising `JobFileError` for anything invalid."""
    _check_nesting(text, path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise _decode_error(text, path, str(error)) from None
    except ValueError:
        # tomllib converts integer literals with int(), which raises a plain
        # ValueError past Python's limit on digits (sys.get_int_max_str_digits).
        raise _long_integer_error(text, path) from None
    # One problem past the limit is kept, so `load_job` reports there are more.
    problems = list(itertools.islice(_unsupported(data, ()), MAX_PROBLEMS_PER_FILE + 1))
    if problems:
        locations = toml_locations(text)
        raise JobFileError(
            [_problem(path, locations, field, message) for field, message in problems]
        )
    return data


def toml_plus_numbers(text: str, data: Any) -> list[FieldPath]:
    """Return the paths of integers in metadata written with a leading +."""
    if _MAYBE_PLUS_NUMBER.search(text) is None:
        return []
    # Only the integers in metadata are looked up, so a long list of unquoted
    # numbers elsewhere, which the schema rejects anyway, costs no scan.
    candidates = list(_metadata_integers(data, (), False))
    if not candidates:
        return []
    locations = toml_locations(text, frozenset(candidates))
    written = [(field, locations.get(field)) for field in candidates]
    return [
        field
        for field, where in written
        if where is not None
        and where.text
        and where.text.startswith("+")
        and _LONG_INTEGER.fullmatch(where.text)
    ]


def _metadata_integers(
    value: Any, path: FieldPath, in_metadata: bool
) -> Iterator[FieldPath]:
    if isinstance(value, dict):
        for key, item in value.items():
            inside = in_metadata or key == "metadata"
            yield from _metadata_integers(item, (*path, key), inside)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _metadata_integers(item, (*path, index), in_metadata)
    elif in_metadata and type(value) is int:
        yield path


def _problem(
    path: str, locations: dict[FieldPath, Location], field: FieldPath, message: str
) -> Problem:
    where = nearest_location(locations, field)
    return Problem(path, where.line, where.column, format_field(field), message)


def _check_nesting(text: str, path: str) -> None:
    # Counting is cheap and settles most files: nesting needs that many brackets.
    brackets = text.count("[") + text.count("{")
    if brackets <= MAX_TOML_NESTING and text.count(".") < MAX_TOML_NESTING:
        return
    depth = 0
    dots = 0
    for token in _NESTING_TOKEN.finditer(text):
        kind = token.group()
        if kind in ("[", "{"):
            depth += 1
            dots = 0
        elif kind in ("]", "}"):
            depth -= 1
            dots = 0
        elif kind == ".":
            dots += 1
        elif kind in ("=", ",", "\n"):
            dots = 0
        if depth > MAX_TOML_NESTING or dots >= MAX_TOML_NESTING:
            line, column = _line_column(text, token.start())
            raise JobFileError(
                [
                    Problem(
                        path,
                        line,
                        column,
                        "",
                        f"invalid TOML: nested more than {MAX_TOML_NESTING} levels "
                        "deep; job files need only a few levels",
                    )
                ]
            )


def _line_column(text: str, offset: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1


def _decode_error(text: str, path: str, message: str) -> JobFileError:
    position = _POSITION.search(message)
    if position and position.group(1):
        line, column = int(position.group(1)), int(position.group(2))
    else:
        # "at end of document": point after the last character.
        line, column = _line_column(text, len(text.rstrip("\n")))
    message = _POSITION.sub("", message).strip()
    message = message[0].lower() + message[1:] if message else "invalid TOML"
    if message.startswith(
        ("cannot overwrite a value", "cannot declare", "duplicate inline table key")
    ):
        duplicate = _duplicate_problem(text, path, line)
        if duplicate is not None:
            return JobFileError([duplicate])
    hint = _decode_hint(text, message, line)
    return JobFileError(
        [Problem(path, line, column, "", f"invalid TOML: {message}{hint}")]
    )


def _decode_hint(text: str, message: str, line: int) -> str:
    lines = text.splitlines()
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    key_line = _KEY_LINE.match(source)
    if message.startswith(("invalid value", "expected newline or end of document")):
        if key_line and _is_unquoted_text(key_line.group(2)):
            key, value = key_line.groups()
            return f'; strings need quotes: {key} = "{value}"'
        if key_line and "," in key_line.group(2):
            key, value = key_line.groups()
            return f"; put a list in brackets: {key} = [{value}]"
        return "; write one key = value per line, and quote text"
    if message.startswith("illegal character '\\n'") or message.startswith(
        ("unterminated string", 'expected "')
    ):
        return '; close the string on the same line, or use """ for several lines'
    if message.startswith("unclosed array"):
        return "; close the list with ]"
    if message.startswith("unclosed inline table") or (
        message.startswith("invalid initial character for a key part")
        and "{" in source
        and "}" not in source
    ):
        return "; an inline table { ... } must be on one line; use a [table] instead"
    if message.startswith("expected '=' after a key"):
        return "; write key = value, and quote keys that contain spaces"
    return ""


def _is_unquoted_text(value: str) -> bool:
    return bool(_UNQUOTED_TEXT.fullmatch(value)) and value not in _TOML_WORDS


def _long_integer_error(text: str, path: str) -> JobFileError:
    limit = sys.get_int_max_str_digits()
    locations = toml_locations(text)
    for field, where in locations.items():
        written = where.text or ""
        if _LONG_INTEGER.fullmatch(written) and len(written) > limit:
            digits = sum(char.isdigit() for char in written)
            message = long_integer_message(digits, limit)
            return JobFileError(
                [Problem(path, where.line, where.column, format_field(field), message)]
            )
    return JobFileError([Problem(path, 0, 0, "", long_integer_message(0, limit))])


def long_integer_message(digits: int, limit: int) -> str:
    """Return the message for an integer too long for Python to convert."""
    count = f"{digits:,} digits" if digits else "too many digits"
    return (
        f"an integer with {count} is too long to read (at most {limit:,}); "
        "use a number in the field's range, or quote it if it is text"
    )


def _duplicate_problem(text: str, path: str, line: int) -> Problem | None:
    # tomllib names neither the key nor the earlier line, so the keys and tables
    # up to the failing line are scanned again in file order.
    scanner = _TomlScanner(text)
    scanner.scan_safely()
    first_lines: dict[FieldPath, int] = {}
    for field, where, is_table in scanner.definitions:
        if field not in first_lines:
            first_lines[field] = where.line
            continue
        if where.line != line:
            continue
        header = ".".join(part for part in field if isinstance(part, str))
        name = f"table `[{header}]`" if is_table else f"key `{field[-1]}`"
        return Problem(
            path,
            where.line,
            where.column,
            format_field(field),
            f"duplicate {name} at line {line}; first defined at line "
            f"{first_lines[field]}",
        )
    return None


def _unsupported(value: Any, path: FieldPath) -> Iterator[tuple[FieldPath, str]]:
    if isinstance(value, dict | list) and len(path) >= MAX_TOML_NESTING:
        yield path, f"nested more than {MAX_TOML_NESTING} levels deep"
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _unsupported(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _unsupported(item, (*path, index))
    elif isinstance(value, datetime | date | time):
        yield path, "dates and times are not supported; quote the value as a string"
    elif isinstance(value, float) and (value != value or value in (1e999, -1e999)):
        yield path, "inf and nan are not valid JSON numbers; quote the value"


# Positions ----------------------------------------------------------------------

_SPACE = re.compile(r"(?:[ \t]|#[^\n]*)*")
_SPACE_AND_NEWLINES = re.compile(r"(?:[ \t\r\n]|#[^\n]*)*")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_BASIC_STRING = re.compile(r'"(?:\\.|[^"\\\n])*"')
_LITERAL_STRING = re.compile(r"'[^'\n]*'")
_MULTILINE_BASIC = re.compile(r'"""(?:\\[\s\S]|[^\\])*?"{3,5}')
_MULTILINE_LITERAL = re.compile(r"'''[\s\S]*?'{3,5}")
_OTHER_SCALAR = re.compile(r"[^,\]}\n#]*")


class _ScanStopped(Exception):
    """The scanner met text it does not follow; the positions so far are kept."""


def toml_locations(
    text: str, requested: frozenset[FieldPath] | None = None
) -> dict[FieldPath, Location]:
    """Map field paths to the positions of their values and keys in TOML `text`.

    With `requested`, only those paths and their parents are mapped, and the scan
    stops once they are all found.
    """
    scanner = _TomlScanner(text)
    if requested is not None:
        scanner.locations = RequestedLocations(requested)
    scanner.scan_safely()
    return scanner.locations


class _TomlScanner:
    """Follow TOML tables, keys, arrays and inline tables, recording positions.

    The text has passed tomllib (or fails only at a duplicate key), so the scanner
    trusts its syntax and stops at the first thing it does not follow. Nesting is
    bounded by `_check_nesting`, which keeps the recursion in `_value` shallow.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.position = 0
        self.line_starts = [0, *(match.end() for match in re.finditer("\n", text))]
        self.locations: dict[FieldPath, Location] = {}
        # Every key and table header in file order: (path, position, is_table).
        self.definitions: list[tuple[FieldPath, Location, bool]] = []
        self.array_counts: dict[FieldPath, int] = {}

    def scan_safely(self) -> None:
        with contextlib.suppress(_ScanStopped, AllLocated):
            self._scan()

    def _scan(self) -> None:
        table: FieldPath = ()
        while True:
            self._skip(_SPACE_AND_NEWLINES)
            if self.position >= len(self.text):
                return
            start = self.position
            if self.text.startswith("[", start):
                table = self._header()
                self.locations.setdefault(table, self._location(start))
                self.definitions.append((table, self._location(start), True))
                continue
            parts = self._key()
            field = (*table, *parts)
            self._define_key(field, start)
            self._expect("=")
            self._skip(_SPACE)
            self._value(field)

    def _header(self) -> FieldPath:
        start = self.position
        is_array = self.text.startswith("[[", self.position)
        self.position += 2 if is_array else 1
        base = self._key()
        self._expect("]]" if is_array else "]")
        if not is_array:
            return _resolve_arrays(base, self.array_counts)
        index = self.array_counts.get(base, 0)
        self.array_counts[base] = index + 1
        array = _resolve_arrays(base, self.array_counts)
        # The first [[calls]] header stands for the array itself.
        self.locations.setdefault(array, self._location(start))
        return (*array, index)

    def _define_key(self, field: FieldPath, start: int) -> None:
        where = self._location(start)
        self.locations.setdefault((*field, KEY_MARK), where)
        self.definitions.append((field, where, False))

    def _key(self) -> tuple[str, ...]:
        parts: list[str] = []
        while True:
            self._skip(_SPACE)
            match = (
                _BASIC_STRING.match(self.text, self.position)
                or _LITERAL_STRING.match(self.text, self.position)
                or _BARE_KEY.match(self.text, self.position)
            )
            if match is None:
                raise _ScanStopped
            parts.append(_key_part(match.group()))
            self.position = match.end()
            self._skip(_SPACE)
            if not self.text.startswith(".", self.position):
                return tuple(parts)
            self.position += 1

    def _value(self, field: FieldPath) -> None:
        start = self.position
        char = self.text[start : start + 1]
        if char == "[":
            self.locations.setdefault(field, self._location(start))
            self._array(field)
        elif char == "{":
            self.locations.setdefault(field, self._location(start))
            self._inline_table(field)
        else:
            self._scalar(field)

    def _array(self, field: FieldPath) -> None:
        self.position += 1
        index = 0
        while True:
            self._skip(_SPACE_AND_NEWLINES)
            if self.text.startswith("]", self.position):
                self.position += 1
                return
            self._value((*field, index))
            index += 1
            self._skip(_SPACE_AND_NEWLINES)
            if self.text.startswith(",", self.position):
                self.position += 1
            elif not self.text.startswith("]", self.position):
                raise _ScanStopped

    def _inline_table(self, field: FieldPath) -> None:
        self.position += 1
        while True:
            self._skip(_SPACE_AND_NEWLINES)
            if self.text.startswith("}", self.position):
                self.position += 1
                return
            start = self.position
            item = (*field, *self._key())
            self._define_key(item, start)
            self._expect("=")
            self._skip(_SPACE)
            self._value(item)
            self._skip(_SPACE_AND_NEWLINES)
            if self.text.startswith(",", self.position):
                self.position += 1
            elif not self.text.startswith("}", self.position):
                raise _ScanStopped

    def _scalar(self, field: FieldPath) -> None:
        start = self.position
        for pattern in (
            _MULTILINE_BASIC,
            _MULTILINE_LITERAL,
            _BASIC_STRING,
            _LITERAL_STRING,
        ):
            match = pattern.match(self.text, start)
            if match:
                self.locations.setdefault(field, self._location(start))
                self.position = match.end()
                return
        match = _OTHER_SCALAR.match(self.text, start)
        written = match.group().rstrip() if match else ""
        if not written:
            raise _ScanStopped
        self.locations.setdefault(field, self._location(start, written))
        self.position = start + len(written)

    def _expect(self, token: str) -> None:
        self._skip(_SPACE)
        if not self.text.startswith(token, self.position):
            raise _ScanStopped
        self.position += len(token)

    def _skip(self, pattern: re.Pattern[str]) -> None:
        match = pattern.match(self.text, self.position)
        if match:
            self.position = match.end()

    def _location(self, offset: int, text: str | None = None) -> Location:
        line = bisect.bisect_right(self.line_starts, offset)
        return Location(line, offset - self.line_starts[line - 1] + 1, text)


def _key_part(written: str) -> str:
    if written.startswith("'"):
        return written[1:-1]
    if written.startswith('"'):
        if "\\" not in written:
            return written[1:-1]
        part: str = tomllib.loads(f"k = {written}")["k"]
        return part
    return written


def _resolve_arrays(base: FieldPath, array_counts: dict[FieldPath, int]) -> FieldPath:
    # A header such as [calls.metadata] inside an array of tables [[calls]] refers to
    # the array's latest element.
    resolved: list[str | int] = []
    for part in base:
        resolved.append(part)
        count = array_counts.get(tuple(p for p in resolved if isinstance(p, str)))
        if count and tuple(resolved) != base:
            resolved.append(count - 1)
    return tuple(resolved)
