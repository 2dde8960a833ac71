"""Find text that looks like a Chirp API key in a job file, and keep it out of messages.

Keys come from the CHIRP_API_KEY environment variable, and job files are checked in,
so a key in a job file has leaked.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterator
from typing import Any

from .errors import MAX_PROBLEMS_PER_FILE, Problem

FieldPath = tuple[str | int, ...]

# A key starts a word: `desk_admin_east` or `risk_test_app_notes` is no key.
_API_KEY = re.compile(r"(?<![A-Za-z0-9_])sk_(?:live_app|test_app|admin)_[A-Za-z0-9]")
# The rest of a key runs to a space, quote, backtick or separator, as the log
# redaction reads it: `run` accepts keys with any printable character, hyphens
# included.
_API_KEY_VALUE = re.compile(
    r"(?<![A-Za-z0-9_])(sk_(?:live_app|test_app|admin)_)[A-Za-z0-9][^\s\"'`,;&]*"
)
_KEY_MESSAGE = (
    "this looks like a Chirp API key; remove it and revoke it: chirp-jobs reads the "
    "key from the CHIRP_API_KEY environment variable, and job files are checked in"
)


def api_key_problems(path: str, text: str) -> list[Problem]:
    """Return one problem for each API-key-like text in a job file's text.

    At most `MAX_PROBLEMS_PER_FILE` + 1 are returned.
    """
    # The whole text is searched, comments included: a key in a comment of a
    # checked-in file has leaked all the same. The value is never echoed.
    problems = []
    # One problem past the limit is kept, so the caller reports there are more.
    matches = itertools.islice(_API_KEY.finditer(text), MAX_PROBLEMS_PER_FILE + 1)
    for match in matches:
        line = text.count("\n", 0, match.start()) + 1
        column = match.start() - text.rfind("\n", 0, match.start())
        problems.append(Problem(path, line, column, "", _KEY_MESSAGE))
    return problems


def iter_api_key_paths(value: Any, path: FieldPath = ()) -> Iterator[FieldPath]:
    """Yield the field path of each parsed key or string that looks like a key.

    The text scan misses a key spelled with escapes (`\x4d`, `\u004d`) or a line
    continuation, which the parser turns back into the key.
    """
    if isinstance(value, dict):
        for name, item in value.items():
            if _API_KEY.search(str(name)):
                yield (*path, name)
            yield from iter_api_key_paths(item, (*path, name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from iter_api_key_paths(item, (*path, index))
    elif isinstance(value, str) and _API_KEY.search(value):
        yield path


def api_key_message() -> str:
    return _KEY_MESSAGE


def redact_api_keys(problems: list[Problem]) -> list[Problem]:
    """Replace API-key-like text in problem messages, which quote values as written."""
    redacted = []
    for problem in problems:
        message = _API_KEY_VALUE.sub(r"\1[redacted]", problem.message)
        field = _API_KEY_VALUE.sub(r"\1[redacted]", problem.field)
        if (message, field) != (problem.message, problem.field):
            problem = dataclasses.replace(problem, message=message, field=field)
        redacted.append(problem)
    return redacted
