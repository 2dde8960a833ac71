"""Logging to stderr for people (text) and log shippers (JSON), with keys redacted."""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from types import TracebackType
from typing import Any, TextIO

# Chirp keys look like sk_live_app_..., sk_test_app_... and sk_admin_...; any of
# them in a message, its arguments or a traceback is replaced before output. The
# first character must be a letter or digit, so that help such as "use an app key
# (sk_live_app_...)" stays readable.
_SECRET = re.compile(r"sk_(?:live_app|test_app|admin)_[A-Za-z0-9][^\s\"',;&]*")
# Exact values to redact as well, such as the configured key whatever its shape.
_secrets: set[str] = set()
REDACTED = "sk_[REDACTED]"
QUIET, NORMAL, VERBOSE, DEBUG = range(4)
_LEVELS = {
    QUIET: logging.ERROR,
    NORMAL: logging.WARNING,
    VERBOSE: logging.INFO,
    DEBUG: logging.DEBUG,
}
LOG_FORMATS = ("text", "json")


def add_secret(value: str) -> None:
    """Redact `value` from every later log line and error message."""
    if len(value) >= 8:
        _secrets.add(value)


def redact(text: str) -> str:
    """Replace every Chirp API key, and each value given to `add_secret`, in `text`."""
    for value in _secrets:
        text = text.replace(value, REDACTED)
    return _SECRET.sub(REDACTED, text)


class _RedactingText(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _RedactingJson(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, ensure_ascii=False))


def _redacting_excepthook(
    kind: type[BaseException], value: BaseException, trace: TracebackType | None
) -> None:
    text = "".join(traceback.format_exception(kind, value, trace))
    sys.stderr.write(redact(text))


def configure_logging(
    verbosity: int, log_format: str = "text", stream: TextIO | None = None
) -> None:
    """Send chirp-jobs logs to stderr at the level `verbosity` selects.

    QUIET shows errors only, NORMAL adds warnings, VERBOSE adds one line per API
    request, DEBUG adds everything, httpx's own debug output included.
    """
    # A traceback of an unexpected error can show values that contain a key.
    sys.excepthook = _redacting_excepthook
    handler = logging.StreamHandler(stream or sys.stderr)
    if log_format == "json":
        handler.setFormatter(_RedactingJson())
    else:
        handler.setFormatter(_RedactingText("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS[min(verbosity, DEBUG)])
    # httpx logs every request at INFO with the full URL; chirp-jobs logs its own.
    if verbosity < DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    else:
        logging.getLogger("httpx").setLevel(logging.NOTSET)
