"""Expand a job into its plan: the exact API requests, each with a stable key."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .jobs import KEY_METADATA, CallSpec, Job

# 16 hex digits (64 bits) keep the chance of two requests of a million-call plan
# sharing a digest near 3 in 100 million, and such a clash is reported as a
# duplicate request, never sent.
DIGEST_LENGTH = 16


@dataclass(frozen=True, slots=True)
class Origin:
    """The place in its job file that a planned call comes from (0-based indexes)."""

    path: str
    call_index: int
    recipient_index: int
    repeat_index: int


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """One request of the plan.

    `key` is stable: it depends on the job name, the request body and the repeat
    index, so the same file always gives the same keys and editing one call changes
    only that call's keys. `offset_seconds` is the earliest send time, counted from
    the start of the run. `repeat_count` and `interval_seconds` are those of the
    job call, which the runner needs to space the repeats of one recipient.
    """

    key: str
    request: dict[str, Any]
    origin: Origin
    offset_seconds: int
    repeat_count: int = 1
    interval_seconds: int = 0

    @property
    def series(self) -> str:
        """The key of this call's series: its plan key without the repeat index."""
        return series_key(self.key)

    @property
    def spaced(self) -> bool:
        """Whether the repeats of this call's recipient are spaced by an interval."""
        return _spaced(self.repeat_count, self.interval_seconds)


def _spaced(repeat_count: int, interval_seconds: int) -> bool:
    return repeat_count > 1 and interval_seconds > 0


def series_key(key: str) -> str:
    """Return the part of a plan key that every repeat of one recipient shares.

    Plan keys are `NAME:DIGEST:REPEAT`, so the key of a series is `NAME:DIGEST`.
    """
    return key.rpartition(":")[0]


def request_body(call: CallSpec, recipient: Any) -> dict[str, Any]:
    """Return the request body for one recipient of a call, before its key is added."""
    if isinstance(recipient, dict):
        address = recipient["address"]
        metadata = {**call.metadata, **recipient.get("metadata", {})}
    else:
        address = recipient
        metadata = call.metadata
    return {
        "from": call.from_address,
        "to": address,
        "fromChannel": call.from_channel,
        "toChannel": call.to_channel,
        "metadata": metadata,
    }


def request_digest(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:DIGEST_LENGTH]


def iter_recipient_bodies(job: Job) -> Iterator[tuple[CallSpec, int, dict[str, Any]]]:
    """Yield each call's request body per recipient, in file order."""
    for call in job.calls:
        for recipient_index, recipient in enumerate(call.recipients):
            yield call, recipient_index, request_body(call, recipient)


def spaced_series(job: Job) -> set[str]:
    """Return the series keys of the recipients whose repeats an interval spaces."""
    return {
        f"{job.name}:{request_digest(request_body(call, recipient))}"
        for call in job.calls
        if _spaced(call.repeat_count, call.interval_seconds)
        for recipient in call.recipients
    }


def iter_plan(job: Job) -> Iterator[PlannedCall]:
    """Yield the plan lazily: calls in file order, then recipients, then repeats."""
    for call, recipient_index, body in iter_recipient_bodies(job):
        series = f"{job.name}:{request_digest(body)}"
        metadata = body["metadata"]
        for repeat_index in range(call.repeat_count):
            key = f"{series}:{repeat_index}"
            request = {**body, "metadata": {**metadata, KEY_METADATA: key}}
            yield PlannedCall(
                key=key,
                request=request,
                origin=Origin(job.path, call.index, recipient_index, repeat_index),
                offset_seconds=repeat_index * call.interval_seconds,
                repeat_count=call.repeat_count,
                interval_seconds=call.interval_seconds,
            )
