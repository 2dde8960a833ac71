"""The results file: one JSON line per planned call outcome, appended as it arrives.

Besides outcome records the file contains progress records: an `intent` record is
written before each request is sent, and a `not_placed` record after an attempt
that provably placed no call. A later invocation of the same run reads them back
(`load_run_state`) to tell finished, in-flight and untouched planned calls apart.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import re
import threading
from collections.abc import Container, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigError, ResultsLockedError, ResultsWriteError
from .logs import redact
from .planning import PlannedCall, series_key

logger = logging.getLogger(__name__)

CREATED = "created"
FAILED = "failed"
UNKNOWN = "unknown"
OUTCOMES = (CREATED, FAILED, UNKNOWN)
# Progress records, written by the runner around each attempt; never an outcome.
INTENT = "intent"
NOT_PLACED = "not_placed"

# fdatasync makes appended records as durable as fsync does, because it flushes
# the file size needed to read them back, and it skips the timestamps. It measured
# 7 to 18% cheaper per intent on ext4 here. macOS has no fdatasync.
_flush_data = getattr(os, "fdatasync", os.fsync)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")


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
    finished_at: str | None


def result_record(
    planned: PlannedCall,
    request: dict[str, Any],
    outcome: Outcome,
    job: str,
    run_id: str,
    target: str,
    key_mode: str,
) -> dict[str, Any]:
    """Return the results-file record of one outcome (fields: docs/results.md)."""
    origin = planned.origin
    return {
        "key": planned.key,
        "job": job,
        "runId": run_id,
        "target": target,
        "keyMode": key_mode,
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


def _locked(holder: str, name: str) -> ResultsLockedError:
    return ResultsLockedError(
        f"another run (process {holder}) is writing {name}; "
        "wait for it to finish, or use another --results file"
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
            # O_NOFOLLOW: a symlink planted at the lock path must not make the
            # lock truncate the file it points to.
            descriptor = os.open(
                self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
            )
            stream = os.fdopen(descriptor, "a+", encoding="utf-8")
        except OSError as error:
            raise _unwritable(self.path, error) from None
        try:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            stream.seek(0)
            holder = stream.read().strip() or "unknown"
            stream.close()
            raise _locked(holder, self.path.name[:-5]) from None
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
    """Append records to a JSON lines file, one `write(2)` call per record.

    A record is handed to the operating system before `write` returns, so a crash
    of chirp-jobs, `kill -9` included, loses no record already written. With
    `fsync` set, `sync` forces the records to the disk (the runner calls it after
    each intent) and `close` does so once more. The writer holds the results
    file's lock from `__enter__` to `__exit__`, and repairs a torn last line left
    by an earlier crash once it holds the lock.
    """

    def __init__(self, path: Path, fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        self._lock = ResultsLock(path)
        self._descriptor: int | None = None
        # Group commit: records written and records known to be on the disk, so
        # one fsync covers every worker whose intent was written before it began.
        self._sync_state = threading.Condition()
        self._written = 0
        self._synced = 0
        self._syncing = False

    def __enter__(self) -> ResultsWriter:
        self._lock.acquire()
        try:
            repair_torn_tail(self.path)
            created = not self.path.exists()
            self._descriptor = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
            if created and self.fsync:
                # The new name must be on the disk too, or a power loss could take
                # the whole file, intents and all, with it.
                _sync_directory(self.path.parent)
        except OSError as error:
            self._lock.release()
            raise _unwritable(self.path, error) from None
        # The sidecar lock is found by name, so a symlink or hard link to the same
        # results file, or a deleted sidecar, would slip past it. The file itself
        # is locked too, which holds for every name it has.
        try:
            fcntl.flock(self._descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise _locked("unknown", self.path.name) from None
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def write(self, record: dict[str, Any]) -> None:
        if self._descriptor is None:
            raise RuntimeError("ResultsWriter.write called outside its with block")
        # An API that echoes the key (in an error message, say) must not put it in
        # a file that is kept and shared, so keys are redacted from every line.
        line = redact(json.dumps(record, ensure_ascii=False))
        data = (line + "\n").encode("utf-8")
        # One write(2) of the whole line: with O_APPEND the kernel appends it in one
        # piece, so only a crash inside that call can leave a torn line.
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._descriptor, view) :]
            with self._sync_state:
                self._written += 1
        except OSError as error:
            # The record is logged whole, so an outcome the file could not take
            # (disk full, say) is still in the run's stderr.
            logger.critical("cannot write %s (%s); record: %s", self.path, error, line)
            raise ResultsWriteError(
                f"cannot write {self.path}: {error.strerror}; the run stopped, and "
                "the record it could not write is in the log above"
            ) from None

    def sync(self) -> None:
        """Force every record written so far to the disk, when `fsync` is set.

        The runner calls it after each intent and before sending, outside its
        lock. Workers that arrive while an fsync runs wait for it and share the
        next one, so concurrent intents cost one fsync, not one each. Outcome
        records reach the disk with the next sync or at `close`.
        """
        descriptor = self._descriptor
        if not self.fsync or descriptor is None:
            return
        with self._sync_state:
            target = self._written
            while self._synced < target:
                if self._syncing:
                    self._sync_state.wait()
                    continue
                self._fsync_unlocked(descriptor)

    def _fsync_unlocked(self, descriptor: int) -> None:
        """Run one fsync with `_sync_state` released; called with it held."""
        covered = self._written
        self._syncing = True
        self._sync_state.release()
        try:
            _flush_data(descriptor)
        except OSError as error:
            raise ResultsWriteError(
                f"cannot write {self.path}: {error.strerror}; the run stopped"
            ) from None
        finally:
            self._sync_state.acquire()
            self._syncing = False
            self._sync_state.notify_all()
        self._synced = max(self._synced, covered)

    def close(self) -> None:
        if self._descriptor is not None:
            if self.fsync:
                with contextlib.suppress(OSError):
                    os.fsync(self._descriptor)
            os.close(self._descriptor)
            self._descriptor = None
        self._lock.release()


def _sync_directory(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def torn_path(results: Path) -> Path:
    return results.with_name(results.name + ".torn")


def repair_torn_tail(path: Path) -> int:
    """Cut an unterminated last line off `path`; return how many bytes were cut.

    Only a crash while a line was being written leaves one. The cut bytes are
    appended to `PATH.torn` beside the results file, so nothing is thrown away.
    A torn intent record means its request was never sent, because a request is
    sent only after its intent is written. A torn outcome record leaves its intent
    without an outcome, so the next invocation of the run reports it `unknown`.
    """
    try:
        with path.open("rb+") as stream:
            size = stream.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            keep = _last_line_end(stream, size)
            if keep == size:
                return 0
            stream.seek(keep)
            fragment = stream.read()
            with torn_path(path).open("ab") as torn:
                torn.write(fragment + b"\n")
                torn.flush()
                os.fsync(torn.fileno())
            stream.truncate(keep)
            os.fsync(stream.fileno())
    except FileNotFoundError:
        return 0
    logger.warning(
        "%s ended in a torn line of %d bytes (left by a crash); moved it to %s",
        path,
        len(fragment),
        torn_path(path),
    )
    return len(fragment)


def _last_line_end(stream: IO[bytes], size: int) -> int:
    """Return the offset just after the last newline of `stream`, or 0."""
    position = size
    while position > 0:
        start = max(0, position - 65536)
        stream.seek(start)
        chunk = stream.read(position - start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """Yield every record of a results file, progress records included.

    An unterminated last line that is not valid JSON is a torn line left by a
    crash. It is skipped, because the next run on the file repairs it. Any other
    line that is not a JSON object raises `ConfigError` naming its line.
    """
    with path.open("rb") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                if not line.endswith(b"\n"):
                    return
                record = None
            if not isinstance(record, dict):
                raise ConfigError(
                    f"{path}:{number}: not a results record (a JSON object); "
                    "move the damaged line out of the file and run again"
                )
            yield record


def read_records(path: Path) -> list[dict[str, Any]]:
    """Return every record of a results file, progress records included."""
    return list(iter_records(path))


def read_results(path: Path) -> list[dict[str, Any]]:
    """Return the records of a results file in file order, without progress
    records (`intent`, `not_placed`): outcome records and any other kind."""
    return [record for record in iter_records(path) if not is_progress(record)]


def is_outcome(record: dict[str, Any]) -> bool:
    return record.get("outcome") in OUTCOMES


def is_progress(record: dict[str, Any]) -> bool:
    return record.get("outcome") in (INTENT, NOT_PLACED)


@dataclass
class RunState:
    """What earlier invocations of one run recorded, by plan key.

    `outcomes` is the last outcome record of each key. `in_flight` is the last
    intent record of each key whose request was sent with no outcome recorded
    after it, because the process stopped before the response came. `last_sent`
    is the latest `sentAt` over every attempt of each spaced series (a plan key
    without its repeat index), so a resume can space the repeats still to place.
    """

    run_id: str
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    in_flight: dict[str, dict[str, Any]] = field(default_factory=dict)
    first_sent_at: str | None = None
    last_sent: dict[str, datetime] = field(default_factory=dict)
    # (target, key mode) of this run id's records that do not count for it.
    other_targets: set[tuple[str, str]] = field(default_factory=set)


def load_run_state(
    path: Path,
    run_id: str,
    target: str,
    key_mode: str,
    spaced: Container[str] = frozenset(),
) -> RunState:
    """Read the records of run `run_id` from `path` (a missing file is empty).

    Only records sent to the same `target` with the same `key_mode` count: a
    sandbox trial or a test-key run under the same run id placed no call that a
    live run may skip. `last_sent` covers only the series named in `spaced`.
    """
    state = RunState(run_id)
    if not path.exists():
        return state
    this_target = canonical_target(target)
    for record in iter_records(path):
        if record.get("runId") != run_id:
            continue
        recorded = canonical_target(str(record.get("target")))
        if (recorded, record.get("keyMode")) != (this_target, key_mode):
            state.other_targets.add((recorded, str(record.get("keyMode"))))
            continue
        key = str(record.get("key"))
        kind = record.get("outcome")
        if state.first_sent_at is None and record.get("sentAt"):
            state.first_sent_at = record["sentAt"]
        series = series_key(key)
        if series in spaced:
            _note_sent(state.last_sent, series, record.get("sentAt"))
        if kind == INTENT:
            state.in_flight[key] = record
        elif kind == NOT_PLACED:
            state.in_flight.pop(key, None)
        elif kind in OUTCOMES:
            state.in_flight.pop(key, None)
            state.outcomes[key] = record
    return state


# A results file names a few targets over and over, and a report reads each line.
@functools.lru_cache(maxsize=64)
def canonical_target(target: str) -> str:
    """Return one spelling of a base URL, so that a resume finds its own records.

    `http://host:8787/`, `HTTP://Host:8787` and `http://host:8787` name one API:
    counted as three targets, each would place every call again. The scheme and
    host are lowercased, a default port and trailing slashes dropped. Anything
    that is not a URL (`sandbox`) is returned as it is.
    """
    try:
        parts = urlsplit(target.strip())
        port = parts.port
    except ValueError:
        return target
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return target
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path.rstrip("/"), parts.query, ""))


def parse_timestamp(text: object) -> datetime | None:
    """Return a record's ISO 8601 time (UTC if it has no offset), or None."""
    if not isinstance(text, str):
        return None
    # Python 3.11 reads at most six digits of a fraction. Nanoseconds, as other
    # tools write them, are cut to microseconds, so the record is not dropped.
    text = _LONG_FRACTION.sub(r"\1", text.replace("Z", "+00:00"))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def _note_sent(last_sent: dict[str, datetime], series: str, sent_at: object) -> None:
    moment = parse_timestamp(sent_at)
    if moment is None:
        return
    earlier = last_sent.get(series)
    if earlier is None or moment > earlier:
        last_sent[series] = moment


def interrupted_record(intent: dict[str, Any], message: str) -> dict[str, Any]:
    """Return the `unknown` outcome of a request whose response never arrived."""
    return {
        **intent,
        "outcome": UNKNOWN,
        "httpStatus": None,
        "call": None,
        "error": {
            "type": "interrupted",
            "code": "in_flight",
            "message": message,
            "param": None,
        },
        "finishedAt": utc_now(),
    }
