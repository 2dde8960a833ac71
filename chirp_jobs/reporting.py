"""Render plans and run summaries as text for people and JSON for scripts."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from json.encoder import encode_basestring
from typing import Any

from .jobs import KEY_METADATA
from .planning import PlannedCall

PLAN_COLUMNS = ("key", "from", "to", "channels", "at", "metadata")
# Column widths come from the first rows, so a long plan streams without being
# held in memory. A later, wider cell only shifts its own row.
_WIDTH_SAMPLE = 200


def format_offset(seconds: int) -> str:
    """Return an offset from the start of the run as `+0s`, `+90s`, `+10m`, `+2h`."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"+{seconds // size}{unit}"
    return f"+{seconds}s"


def _plan_row(planned: PlannedCall) -> tuple[str, ...]:
    request = planned.request
    metadata = {
        name: value
        for name, value in request["metadata"].items()
        if name != KEY_METADATA
    }
    # Metadata is printed whole, because reviewers approve exactly what is sent. It
    # is the last column, so a long value does not push the others apart.
    shown = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))
    return (
        planned.key,
        request["from"],
        request["to"],
        f"{request['fromChannel']}→{request['toChannel']}",
        format_offset(planned.offset_seconds),
        shown if metadata else "",
    )


def iter_plan_table(plan: Iterable[PlannedCall]) -> Iterator[str]:
    """Yield the lines of the plan table, header first."""
    rows = (_plan_row(planned) for planned in plan)
    sample = list(islice(rows, _WIDTH_SAMPLE))
    widths = [
        max([len(column), *(len(row[i]) for row in sample)])
        for i, column in enumerate(PLAN_COLUMNS)
    ]
    yield _table_line(PLAN_COLUMNS, widths)
    for row in chain(sample, rows):
        yield _table_line(row, widths)


def _table_line(cells: tuple[str, ...], widths: list[int]) -> str:
    padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=True)]
    return "  ".join(padded).rstrip()


def plan_record(planned: PlannedCall) -> dict[str, Any]:
    """Return one planned call as the object that JSON output and saved plans use."""
    origin = planned.origin
    return {
        "key": planned.key,
        "request": planned.request,
        "offsetSeconds": planned.offset_seconds,
        "origin": {
            "file": origin.path,
            "call": origin.call_index,
            "recipient": origin.recipient_index,
            "repeat": origin.repeat_index,
        },
    }


def plan_json_line(planned: PlannedCall) -> str:
    """Return one planned call as a JSON line for `plan --format json`."""
    return json.dumps(plan_record(planned), ensure_ascii=False)


@dataclass
class PlanTotals:
    """Planned call counts per channel pair and per `from` address."""

    calls: int = 0
    by_channel: Counter[str] = field(default_factory=Counter)
    by_from: Counter[str] = field(default_factory=Counter)

    def counted(self, plan: Iterable[PlannedCall]) -> Iterator[PlannedCall]:
        """Yield `plan` unchanged, counting each planned call on the way."""
        for planned in plan:
            request = planned.request
            self.calls += 1
            self.by_channel[f"{request['fromChannel']}→{request['toChannel']}"] += 1
            self.by_from[request["from"]] += 1
            yield planned

    def lines(self) -> Iterator[str]:
        """Yield the totals as text lines, largest count first."""
        for title, counts in (("channel", self.by_channel), ("from", self.by_from)):
            parts = [f"{name} {count:,}" for name, count in counts.most_common()]
            yield f"By {title}: " + (", ".join(parts) if parts else "none")


def iter_plan_json(plan: Iterable[PlannedCall]) -> Iterator[str]:
    """Yield `plan_json_line` of each planned call, encoding each body once.

    The repeats of one recipient differ only in their key, which the planner puts
    last in the metadata, the last field of the request. So the encoded request up
    to the key is reused, which halves the time of a plan with repeats.
    """
    recipient: tuple[str, int, int] | None = None
    prefix: str | None = None
    file_text = ""
    for planned in plan:
        origin = planned.origin
        if (origin.path, origin.call_index, origin.recipient_index) != recipient:
            recipient = (origin.path, origin.call_index, origin.recipient_index)
            prefix = _request_prefix(planned.request)
            file_text = encode_basestring(origin.path)
        if prefix is None:
            yield plan_json_line(planned)
            continue
        key = encode_basestring(planned.key)
        yield (
            f'{{"key": {key}, "request": {prefix}{key}}}}}, '
            f'"offsetSeconds": {planned.offset_seconds}, "origin": {{"file": '
            f'{file_text}, "call": {origin.call_index}, "recipient": '
            f'{origin.recipient_index}, "repeat": {origin.repeat_index}}}}}'
        )


def _request_prefix(request: dict[str, Any]) -> str | None:
    """Return the request's JSON text up to its key, or None if the key is not last."""
    metadata = request.get("metadata")
    if list(request)[-1:] != ["metadata"] or not isinstance(metadata, dict):
        return None
    if list(metadata)[-1:] != [KEY_METADATA]:
        return None
    text = json.dumps(
        {**request, "metadata": {**metadata, KEY_METADATA: ""}}, ensure_ascii=False
    )
    return text[: -len('""}}')]
