"""`report --refresh`: fetch the current state of created calls and record it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .report import CALL_STATE, Outcome, Results
from .results import CREATED, ResultsWriter, canonical_target, utc_now
from .runner import Pacer, api_error

logger = logging.getLogger(__name__)


@dataclass
class RefreshCounts:
    """How many created calls were fetched, failed to fetch, or were skipped."""

    fetched: int = 0
    failed: int = 0
    other_target: int = 0


def refresh_states(
    results: Results, client: httpx.Client, target: str, rate: float
) -> RefreshCounts:
    """Fetch `GET /v1/calls/{id}` for each created call sent to `target`.

    Requests are paced to `rate` per second, as a run is. Each response is appended
    as a `callState` record to the results file its call was read from, and added
    to `results`. Calls created through another target (another base URL, or the
    sandbox) are not looked up, since their ids mean nothing there.
    """
    counts = RefreshCounts()
    pacer = Pacer(rate)
    expected_target = canonical_target(target)
    for source, records in _created_by_file(results).items():
        with ResultsWriter(Path(source)) as writer:
            for record in records:
                if canonical_target(record.target or "") != expected_target:
                    counts.other_target += 1
                    continue
                pacer.wait()
                state = _fetch_state(client, record)
                writer.write(state)
                results.add(state, source)
                if state["status"] is None:
                    counts.failed += 1
                else:
                    counts.fetched += 1
    return counts


def _created_by_file(results: Results) -> dict[str, list[Outcome]]:
    by_file: dict[str, list[Outcome]] = {}
    for outcome in results.outcomes.values():
        if outcome.outcome == CREATED and outcome.call_id is not None:
            by_file.setdefault(outcome.source, []).append(outcome)
    return by_file


def _fetch_state(client: httpx.Client, record: Outcome) -> dict[str, Any]:
    call_id = str(record.call_id)
    path = f"/v1/calls/{call_id}"
    key = record.key
    state: dict[str, Any] = {
        "type": CALL_STATE,
        "key": key,
        "runId": record.run_id,
        "callId": call_id,
        "status": None,
        "httpStatus": None,
        "call": None,
        "error": None,
        "fetchedAt": None,
    }
    started = time.perf_counter()
    # NOTE: a 429 or a transport error is recorded as a failed fetch, not retried;
    # a GET is safe to repeat, so running `report --refresh` again fetches it.
    try:
        response = client.get(path)
    except httpx.TransportError as error:
        logger.error("GET %s %s: failed: %s", path, key, type(error).__name__)
        state["error"] = {
            "type": "transport_error",
            "code": None,
            "message": type(error).__name__,
            "param": None,
        }
        state["fetchedAt"] = utc_now()
        return state
    elapsed_ms = (time.perf_counter() - started) * 1000
    logger.info("GET %s %d %.0f ms %s", path, response.status_code, elapsed_ms, key)
    _record_response(state, response)
    if state["error"] is not None:
        logger.error("GET %s %s: HTTP %d", path, key, response.status_code)
    return state


def _record_response(state: dict[str, Any], response: httpx.Response) -> None:
    state["httpStatus"] = response.status_code
    state["fetchedAt"] = utc_now()
    body = _json(response)
    if response.status_code == 200 and isinstance(body, dict):
        state["call"] = body
        state["status"] = body.get("status")
    else:
        state["error"] = api_error(body, response.text)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
