"""Find text that looks like a Chirp API key in a job file, and keep it out of messages.

Keys come from the CHIRP_API_KEY environment variable, and job files are checked in,
so a key in a job file has leaked.
"""

from __future__ import annotations

import dataclasses
import re

from .errors import Problem

_API_KEY = re.compile(r"sk_(?:live_app|test_app|admin)_[A-Za-z0-9]")
_API_KEY_VALUE = re.compile(r"(sk_(?:live_app|test_app|admin)_)[A-Za-z0-9]+")


def api_key_problems(path: str, text: str) -> list[Problem]:
    """Return one problem for each API-key-like text in a job file's text."""
    # The whole text is searched, comments included: a key in a comment of a
    # checked-in file has leaked all the same. The value is never echoed.
    problems = []
    for match in _API_KEY.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        column = match.start() - text.rfind("\n", 0, match.start())
        problems.append(
            Problem(
                path,
                line,
                column,
                "",
                "this looks like a Chirp API key; remove it and revoke it: "
                "chirp-jobs reads the key from the CHIRP_API_KEY environment "
                "variable, and job files are checked in",
            )
        )
    return problems


def redact_api_keys(problems: list[Problem]) -> list[Problem]:
    """Replace API-key-like text in problem messages, which quote values as written."""
    redacted = []
    for problem in problems:
        message = _API_KEY_VALUE.sub(r"\1[redacted]", problem.message)
        if message != problem.message:
            problem = dataclasses.replace(problem, message=message)
        redacted.append(problem)
    return redacted
