"""The results file: one JSON line per planned call outcome, appended as it arrives."""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from .errors import ConfigError, ResultsLockedError
from .planning import PlannedCall

CREATED = "created"
FAILED = "failed"
UNKNOWN = "unknown"
OUTCOMES = (CREATED, FAILED, UNKNOWN)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Outcome:
    """The outcome of one planned call, as the runner determined it."""

    outcome: str
    http_status: int | None
    call: dict[str, Any] | None
    error: dict[str, Any] | None
    attempts: int
    sent_at: str | None
    finished_at: str


def result_record(
    planned: PlannedCall,
    request: dict[str, Any],
    outcome: Outcome,
    job: str,
    run_id: str,
    target: str,
) -> dict[str, Any]:
    """Return the results-file record of one outcome (fields: docs/results.md)."""
    origin = planned.origin
    return {
        "key": planned.key,
        "job": job,
        "runId": run_id,
        "target": target,
        "outcome": outcome.outcome,
        "httpStatus": outcome.http_status,
        "request": request,
        "call": outcome.call,
        "error": outcome.error,
        "attempts": outcome.attempts,
        "sentAt": outcome.sent_at,
        "finishedAt": outcome.finished_at,
        "origin": {
            "file": origin.path,
            "call": origin.call_index,
            "recipient": origin.recipient_index,
            "repeat": origin.repeat_index,
        },
    }


def _unwritable(path: Path, error: OSError) -> ConfigError:
    return ConfigError(
        f"cannot write {path}: {error.strerror}; choose another --results"
    )


def lock_path(results: Path) -> Path:
    return results.with_name(results.name + ".lock")


class ResultsLock:
    """An exclusive lock on a results file, held through a sidecar `.lock` file.

    The lock is an flock(2) lock, which the kernel drops when its holder exits in
    any way, `kill -9` included, so it never goes stale. The holder writes its PID
    into the file so that a second run can name it.
    """

    def __init__(self, results: Path) -> None:
        self.path = lock_path(results)
        self._stream: IO[str] | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            stream = self.path.open("a+", encoding="utf-8")
        except OSError as error:
            raise _unwritable(self.path, error) from None
        try:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            stream.seek(0)
            holder = stream.read().strip() or "unknown"
            stream.close()
            raise ResultsLockedError(
                f"another run (process {holder}) is writing {self.path.name[:-5]}; "
                "wait for it to finish, or use another --results file"
            ) from None
        stream.seek(0)
        stream.truncate()
        stream.write(f"{os.getpid()}\n")
        stream.flush()
        self._stream = stream

    def release(self) -> None:
        if self._stream is not None:
            self._stream.truncate(0)
            self._stream.close()
            self._stream = None


class ResultsWriter:
    """Append records to a JSON lines file, flushing each one as it is written.

    A record is handed to the operating system before `write` returns, so a crash
    of chirp-jobs loses no record already written. The writer holds the results
    file's lock from `__enter__` to `__exit__`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = ResultsLock(path)
        self._stream: IO[str] | None = None

    def __enter__(self) -> ResultsWriter:
        self._lock.acquire()
        try:
            self._stream = self.path.open("a", encoding="utf-8")
        except OSError as error:
            self._lock.release()
            raise _unwritable(self.path, error) from None
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def write(self, record: dict[str, Any]) -> None:
        if self._stream is None:
            raise RuntimeError("ResultsWriter.write called outside its with block")
        self._stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._lock.release()


def read_results(path: Path) -> list[dict[str, Any]]:
    """Return the records of a results file, in file order."""
    with path.open(encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]
