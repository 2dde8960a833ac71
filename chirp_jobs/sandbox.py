"""A local Chirp-compatible calling API, for trying jobs and for tests.

`Sandbox.handle` implements the API once, on plain values; `start_server` serves it
over HTTP and `chirp_jobs.client.SandboxTransport` serves it in-process to httpx. It
follows the documented contract of the Chirp calling API: Bearer app keys, the
request checks of POST /v1/calls, the error body, KSUID-shaped ids with a `test_`
infix for test keys, X-RateLimit-* headers and a call lifecycle. It places no calls.

`SandboxConfig` also injects faults: rate limits enforced with 429, 5xx answers,
latency, refused connections, and calls created but answered late or not at all.
Which request meets a fault is decided from the seed, the plan key in the
request's metadata and how many requests with that key came before, so a run
meets the same faults however its threads interleave.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .errors import ChirpJobsError, ConfigError
from .jobs import CHANNELS, KEY_METADATA
from .schema import definition_pattern

logger = logging.getLogger(__name__)

REQUEST_FIELDS = frozenset(["from", "to", "fromChannel", "toChannel", "metadata"])
_APP_KEY = re.compile(r"sk_(live|test)_app_[A-Za-z0-9_]+")
_ADMIN_KEY = re.compile(r"sk_admin_[A-Za-z0-9_]+")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_KSUID_EPOCH = 1_400_000_000
_MAX_BODY_BYTES = 1024 * 1024
# The limits of http.client, which http.server applies to request headers.
_MAX_HEADER_LINE_BYTES = 65536
_MAX_HEADERS = 100
# Seconds the HTTP server waits for each read or write on a connection before it
# closes the connection, so idle or half-sent connections do not hold a thread.
READ_TIMEOUT_SECONDS = 30.0

# The states of a sandbox call, each with its start as a fraction of
# `SandboxConfig.lifecycle_seconds` after creation.
_LIFECYCLE = (
    (0.0, "initiated"),
    (0.1, "ringing"),
    (0.3, "in_progress"),
    (1.0, "completed"),
)


@dataclass
class SandboxConfig:
    """Behaviour of a sandbox where the Chirp documentation leaves a choice, and
    the faults it injects.

    `assigned_numbers` is the app's numbers; None means any `from` is assigned.
    `rate_limit` is requests per minute per key, reported in X-RateLimit-* headers
    and enforced with 429 once used up when `enforce_rate_limit` is set.
    `rate_limit_per_second`, when set, is enforced per key with 429 and a
    Retry-After of whole seconds (a token bucket holding one second of requests).
    `lifecycle_seconds` is how long a call takes from `initiated` to `completed`.

    Faults of `POST /v1/calls`:
    - `throttle_first`: the first N requests of each plan key get 429 with
      `Retry-After: throttle_retry_after` (seconds).
    - `server_error_rate`: the share of requests answered 500, 502 or 503; half
      of them after the call was created, as a server failing mid-request would.
    - `drop_after_create_rate`: the share for which the call is created and the
      connection closed without an answer.
    - `late_answer_rate`: the share for which the call is created and the answer
      sent `late_answer_seconds` later (past the client's timeout, typically).
    The three shares are drawn from one roll per request, so their sum must not
    exceed 1. `latency_seconds` delays every answer. `refuse_seconds` refuses
    connections for that long after the sandbox starts (over HTTP, the port is
    bound but not listening; in-process, the transport raises ConnectError).
    """

    assigned_numbers: frozenset[str] | None = None
    rate_limit: int = 120
    enforce_rate_limit: bool = False
    rate_limit_per_second: float | None = None
    lifecycle_seconds: float = 5.0
    seed: int | None = None
    throttle_first: int = 0
    throttle_retry_after: int = 2
    server_error_rate: float = 0.0
    drop_after_create_rate: float = 0.0
    late_answer_rate: float = 0.0
    late_answer_seconds: float = 3.0
    latency_seconds: float = 0.0
    refuse_seconds: float = 0.0

    def __post_init__(self) -> None:
        shares = {
            "server_error_rate": self.server_error_rate,
            "drop_after_create_rate": self.drop_after_create_rate,
            "late_answer_rate": self.late_answer_rate,
        }
        for name, share in shares.items():
            if not 0.0 <= share <= 1.0:
                raise ConfigError(f"invalid {name} {share}: use a share from 0 to 1")
        if sum(shares.values()) > 1.0:
            raise ConfigError(
                "invalid fault shares: the 5xx, drop and late-answer shares add up "
                f"to {sum(shares.values()):g}; lower them to a total of at most 1"
            )
        durations = {
            "latency_seconds": self.latency_seconds,
            "late_answer_seconds": self.late_answer_seconds,
            "refuse_seconds": self.refuse_seconds,
        }
        for name, seconds in durations.items():
            if seconds < 0:
                raise ConfigError(f"invalid {name} {seconds}: use 0 or more")
        if self.rate_limit_per_second is not None and self.rate_limit_per_second <= 0:
            raise ConfigError(
                f"invalid rate_limit_per_second {self.rate_limit_per_second}: "
                "use a number above 0"
            )


# Fault kinds, as `Sandbox.injected_faults` names them.
THROTTLED = "throttled"
SERVER_ERROR = "server_error"
SERVER_ERROR_AFTER_CREATE = "server_error_after_create"
DROP_AFTER_CREATE = "drop_after_create"
LATE_ANSWER = "late_answer"


@dataclass
class SandboxResponse:
    """An answer for the transport to send: after `delay_seconds`, and only if
    `drop` is false (else the transport closes the connection unanswered)."""

    status: int
    headers: dict[str, str]
    body: bytes
    delay_seconds: float = 0.0
    drop: bool = False


@dataclass
class _Window:
    start: float
    count: int = 0


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class _StoredCall:
    call: dict[str, Any]
    created: float = field(default_factory=time.time)


class Sandbox:
    """The in-memory state and request handling of one sandbox API."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self._random = random.Random(self.config.seed)
        self._lock = threading.Lock()
        self._calls: dict[str, _StoredCall] = {}
        self._windows: dict[str, _Window] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._posts_by_key: Counter[str] = Counter()
        self._faults: list[tuple[str, str]] = []
        self._started = time.monotonic()
        self.request_count = 0

    # Inspection, for tests and `GET /_sandbox/calls` -----------------------------

    def created_calls(self) -> list[dict[str, Any]]:
        """Return a copy of every call this sandbox created, oldest first."""
        with self._lock:
            return [dict(stored.call) for stored in self._calls.values()]

    def count_by_key(self) -> Counter[str]:
        """Count created calls per plan key (the `chirpJobsKey` metadata)."""
        return Counter(
            str(call["metadata"].get(KEY_METADATA)) for call in self.created_calls()
        )

    def injected_faults(self) -> list[tuple[str, str]]:
        """Return each injected fault as (kind, plan key), in order."""
        with self._lock:
            return list(self._faults)

    def refusing_for(self) -> float:
        """Return how many more seconds connections are refused (0: accepting)."""
        elapsed = time.monotonic() - self._started
        return max(0.0, self.config.refuse_seconds - elapsed)

    # Requests -------------------------------------------------------------------

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> SandboxResponse:
        """Handle one HTTP request. `headers` must have lower-case names."""
        response = self._route(method, path, headers, body)
        response.delay_seconds += self.config.latency_seconds
        return response

    def _route(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> SandboxResponse:
        with self._lock:
            self.request_count += 1
        path = path.split("?", 1)[0]
        if path == "/_sandbox/calls" and method == "GET":
            return _json_response(200, {"calls": self.created_calls()}, {})
        key = _bearer_key(headers.get("authorization", ""))
        if isinstance(key, SandboxResponse):
            return key
        limit_headers, limited = self._count_request(key)
        if limited is not None:
            return _with_headers(limited, limit_headers)
        if path == "/v1/calls":
            if method != "POST":
                response = _error(405, "invalid_request_error", "method not allowed")
            else:
                response = self._create_call(key, body)
        elif path.startswith("/v1/calls/") and path.count("/") == 3:
            if method != "GET":
                response = _error(405, "invalid_request_error", "method not allowed")
            else:
                response = self._get_call(path.rsplit("/", 1)[1])
        else:
            response = _error(404, "invalid_request_error", f"no route for {path}")
        return _with_headers(response, limit_headers)

    def _count_request(self, key: str) -> tuple[dict[str, str], SandboxResponse | None]:
        now = time.time()
        window_start = math.floor(now / 60) * 60
        with self._lock:
            window = self._windows.get(key)
            if window is None or window.start != window_start:
                window = self._windows[key] = _Window(window_start)
            window.count += 1
            count = window.count
        limit = self.config.rate_limit
        per_second = self.config.rate_limit_per_second
        if per_second is not None:
            # The headers count a minute, as the Chirp docs do, so a per-second
            # limit is reported as its minute's worth.
            limit = max(limit, math.ceil(per_second * 60))
        reset = int(window_start + 60)
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - count)),
            "X-RateLimit-Reset": str(reset),
        }
        if self.config.enforce_rate_limit and count > limit:
            return headers, _rate_limited(max(1, math.ceil(reset - now)))
        per_second = self._take_token(key, time.monotonic())
        if per_second is not None:
            return headers, _rate_limited(per_second)
        return headers, None

    def _take_token(self, key: str, now: float) -> int | None:
        """Spend one token of the per-second limit; return Retry-After if none."""
        rate = self.config.rate_limit_per_second
        if rate is None:
            return None
        capacity = max(1.0, rate)
        with self._lock:
            bucket = self._buckets.setdefault(key, _Bucket(capacity, now))
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            return max(1, math.ceil((1.0 - bucket.tokens) / rate))

    def _create_call(self, key: str, body: bytes) -> SandboxResponse:
        request = _parse_body(body)
        if isinstance(request, SandboxResponse):
            return request
        invalid = self._check_request(request)
        if invalid is not None:
            return invalid
        fault = self._choose_fault(request)
        if fault == THROTTLED:
            return _rate_limited(self.config.throttle_retry_after)
        if fault == SERVER_ERROR:
            return self._server_error()
        created = self._store_call(key, request)
        if fault == SERVER_ERROR_AFTER_CREATE:
            return self._server_error()
        if fault == DROP_AFTER_CREATE:
            created.drop = True
        elif fault == LATE_ANSWER:
            created.delay_seconds = self.config.late_answer_seconds
        return created

    def _choose_fault(self, request: dict[str, Any]) -> str | None:
        """Pick this request's fault from the seed, its plan key and its count."""
        metadata = request.get("metadata") or {}
        # Requests without a plan key share one count, so they still meet faults.
        with self._lock:
            plan_key = str(metadata.get(KEY_METADATA, ""))
            earlier = self._posts_by_key[plan_key]
            self._posts_by_key[plan_key] += 1
        fault = self._roll_fault(plan_key, earlier)
        if fault is not None:
            with self._lock:
                self._faults.append((fault, plan_key))
            logger.info("sandbox injects %s for %s", fault, plan_key)
        return fault

    def _roll_fault(self, plan_key: str, earlier: int) -> str | None:
        config = self.config
        if earlier < config.throttle_first:
            return THROTTLED
        roll = random.Random(f"{config.seed}:{plan_key}:{earlier}").random()
        bands = (
            (config.server_error_rate / 2, SERVER_ERROR),
            (config.server_error_rate / 2, SERVER_ERROR_AFTER_CREATE),
            (config.drop_after_create_rate, DROP_AFTER_CREATE),
            (config.late_answer_rate, LATE_ANSWER),
        )
        for share, kind in bands:
            if roll < share:
                return kind
            roll -= share
        return None

    def _server_error(self) -> SandboxResponse:
        with self._lock:
            status = self._random.choice((500, 502, 503))
        return _error(status, "api_error", "The sandbox injected a server error.")

    def _store_call(self, key: str, request: dict[str, Any]) -> SandboxResponse:
        test_mode = key.startswith("sk_test_")
        now = time.time()
        with self._lock:
            call_id = self._new_id("call", test_mode, now)
            app_id = _app_id(key, test_mode)
            call = {
                "id": call_id,
                "appId": app_id,
                "direction": "outbound",
                "status": "initiated",
                "fromAddress": request["from"],
                "toAddress": request["to"],
                "fromChannel": request.get("fromChannel", "pstn"),
                "toChannel": request.get("toChannel", "pstn"),
                "duration": None,
                "endReason": None,
                "metadata": request.get("metadata", {}),
                "livekitRoomName": None,
                "startedAt": None,
                "answeredAt": None,
                "endedAt": None,
                "createdAt": _iso(now),
            }
            if "webrtc" in (call["fromChannel"], call["toChannel"]):
                call["livekitRoomName"] = "room_" + call_id.rsplit("_", 1)[1]
            self._calls[call_id] = _StoredCall(call, now)
        logger.info("sandbox created %s for %s", call_id, call["toAddress"])
        return _json_response(201, call, {})

    def _new_id(self, prefix: str, test_mode: bool, now: float) -> str:
        infix = "test_" if test_mode else ""
        while True:
            candidate = (
                f"{prefix}_{infix}{_ksuid(int(now), self._random.getrandbits(128))}"
            )
            if candidate not in self._calls:
                return candidate

    def _check_request(self, request: dict[str, Any]) -> SandboxResponse | None:
        for name in sorted(set(request) - REQUEST_FIELDS):
            return _invalid(f"unknown parameter: {name}", "parameter_unknown", name)
        for name in ("from", "to"):
            if name not in request:
                return _invalid(f"{name} is required", "parameter_missing", name)
            if not isinstance(request[name], str):
                return _invalid(f"{name} must be a string", "parameter_invalid", name)
        for name in ("fromChannel", "toChannel"):
            if request.get(name, "pstn") not in CHANNELS:
                return _invalid(
                    f"{name} must be one of pstn, webrtc, whatsapp",
                    "parameter_invalid",
                    name,
                )
        if not isinstance(request.get("metadata", {}), dict):
            return _invalid(
                "metadata must be an object", "parameter_invalid", "metadata"
            )
        e164 = definition_pattern("e164")
        for name, channel in (("from", "fromChannel"), ("to", "toChannel")):
            if request.get(channel, "pstn") == "webrtc":
                if not request[name]:
                    return _invalid(
                        f"{name} must not be empty", "parameter_invalid", name
                    )
            elif not e164.fullmatch(request[name]):
                return _invalid(
                    f"{name} is not a valid E.164 phone number",
                    "invalid_phone_number",
                    name,
                )
        assigned = self.config.assigned_numbers
        if assigned is not None and request["from"] not in assigned:
            return _invalid(
                "The from number is not assigned to this app",
                "phone_number_not_assigned",
                "from",
            )
        return None

    def _get_call(self, call_id: str) -> SandboxResponse:
        with self._lock:
            stored = self._calls.get(call_id)
            if stored is None:
                return _error(
                    404,
                    "invalid_request_error",
                    f"No call found with id {call_id}",
                    code="resource_not_found",
                    param="callId",
                )
            self._advance(stored, time.time())
            return _json_response(200, dict(stored.call), {})

    def _advance(self, stored: _StoredCall, now: float) -> None:
        age = (now - stored.created) / max(self.config.lifecycle_seconds, 1e-9)
        call = stored.call
        status = call["status"]
        for start, state in _LIFECYCLE:
            if age >= start:
                status = state
        call["status"] = status
        if status in ("ringing", "in_progress", "completed") and not call["startedAt"]:
            call["startedAt"] = _iso(stored.created)
        if status in ("in_progress", "completed") and not call["answeredAt"]:
            call["answeredAt"] = _iso(
                stored.created + 0.3 * self.config.lifecycle_seconds
            )
        if status == "completed" and not call["endedAt"]:
            ended = stored.created + self.config.lifecycle_seconds
            call["endedAt"] = _iso(ended)
            call["duration"] = round(0.7 * self.config.lifecycle_seconds)
            call["endReason"] = "hangup"


def _bearer_key(header: str) -> str | SandboxResponse:
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key:
        return _error(
            401,
            "authentication_error",
            "Missing API key: send Authorization: Bearer <key>",
            code="missing_api_key",
        )
    key = key.strip()
    if _ADMIN_KEY.fullmatch(key):
        return _error(
            401,
            "authentication_error",
            "Admin keys cannot be used with app endpoints; use an app key",
            code="invalid_api_key",
        )
    if not _APP_KEY.fullmatch(key):
        return _error(
            401, "authentication_error", "Invalid API key", code="invalid_api_key"
        )
    return key


def _rate_limited(retry_after: int) -> SandboxResponse:
    response = _error(
        429,
        "invalid_request_error",
        f"Rate limit exceeded. Try again in {retry_after} seconds.",
        code="rate_limit_exceeded",
    )
    response.headers["Retry-After"] = str(retry_after)
    return response


def _parse_body(body: bytes) -> dict[str, Any] | SandboxResponse:
    # NaN, Infinity and numbers too large for a float are not JSON (RFC 8259), and
    # echoing them back would make the response body invalid JSON. Nesting deeper
    # than the interpreter's recursion limit raises RecursionError.
    try:
        request = json.loads(
            body or b"null",
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except (ValueError, RecursionError):
        return _invalid("request body is not valid JSON", "invalid_json", None)
    if not isinstance(request, dict):
        return _invalid("request body must be a JSON object", "invalid_json", None)
    return request


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is out of range for a float")
    return number


def _invalid(message: str, code: str, param: str | None) -> SandboxResponse:
    return _error(400, "invalid_request_error", message, code=code, param=param)


def _error(
    status: int,
    error_type: str,
    message: str,
    code: str | None = None,
    param: str | None = None,
) -> SandboxResponse:
    error: dict[str, Any] = {"type": error_type, "message": message}
    if code is not None:
        error["code"] = code
    if param is not None:
        error["param"] = param
    return _json_response(status, {"error": error}, {})


def _json_response(
    status: int, payload: Any, headers: dict[str, str]
) -> SandboxResponse:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return SandboxResponse(
        status, {"Content-Type": "application/json", **headers}, body
    )


def _with_headers(
    response: SandboxResponse, headers: dict[str, str]
) -> SandboxResponse:
    response.headers.update(headers)
    return response


def _app_id(key: str, test_mode: bool) -> str:
    # One key belongs to one app, so the app id is derived from the key: stable for
    # the life of the sandbox and never revealing the key itself.
    digest = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:20], "big")
    return "app_" + ("test_" if test_mode else "") + _base62(digest)


def _ksuid(timestamp: int, payload: int) -> str:
    """Return a KSUID: 4 bytes of seconds since 2014-05-13 and 16 random bytes."""
    return _base62((max(0, timestamp - _KSUID_EPOCH) << 128) | payload)


def _base62(value: int) -> str:
    """Return a 160-bit number as 27 base62 digits, as KSUIDs are written."""
    digits = []
    while value:
        value, remainder = divmod(value, 62)
        digits.append(_BASE62[remainder])
    return "".join(reversed(digits)).rjust(27, "0")


def _iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# HTTP server ----------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A buffered wfile, which handle_one_request() flushes after each request, sends
    # the head and the body in one send(2) instead of two. That made sequential
    # keep-alive requests 10 to 15% faster on loopback (2 vCPU, CPython 3.11).
    wbufsize = -1
    server: SandboxServer

    def parse_request(self) -> bool:
        """Parse the request line and headers of an HTTP/1.0 or HTTP/1.1 request.

        This replaces http.server's parser, which builds the headers with the
        email package and took about a third of the sandbox's CPU time per request
        (py-spy, sequential keep-alive requests). On failure the error response has
        been sent and False is returned.
        """
        self.command = None  # type: ignore[assignment]
        # Errors are sent with a status line, which http.server leaves out for
        # the HTTP/0.9 that it assumes until the request line is read.
        self.request_version = "HTTP/1.0"
        self.close_connection = True
        raw_line: bytes = self.raw_requestline  # type: ignore[attr-defined]
        self.requestline = str(raw_line, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if not words:
            return False
        if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1"):
            self.send_error(
                HTTPStatus.BAD_REQUEST, f"Bad request syntax ({self.requestline!r})"
            )
            return False
        self.command, self.path, self.request_version = words
        headers = self._read_headers()
        if headers is None:
            return False
        self.headers = headers
        connection = headers.get("Connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive"
        )
        expect = headers.get("Expect", "").lower()
        if expect == "100-continue" and self.request_version == "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def _read_headers(self) -> HTTPMessage | None:
        headers = HTTPMessage()
        for _ in range(_MAX_HEADERS + 1):
            line = self.rfile.readline(_MAX_HEADER_LINE_BYTES + 1)
            if len(line) > _MAX_HEADER_LINE_BYTES:
                self.send_error(
                    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long"
                )
                return None
            if line in (b"\r\n", b"\n", b""):
                return headers
            text = line.decode("iso-8859-1").rstrip("\r\n")
            name, separator, value = text.partition(":")
            # A field name with spaces around it is rejected, and so is a folded
            # line (one that starts with a space), obsolete since HTTP/1.1.
            if not separator or not name or name != name.strip():
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad header line {text!r}")
                return None
            headers[name] = value.strip()
        self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
        return None

    def setup(self) -> None:
        super().setup()
        # A read or write that times out raises TimeoutError, which
        # handle_one_request() catches by closing the connection.
        self.connection.settimeout(self.server.read_timeout)

    def _serve(self) -> None:
        length_text = self.headers.get("Content-Length") or "0"
        length = int(length_text) if length_text.isdigit() else -1
        if "Transfer-Encoding" in self.headers:
            # The body's end cannot be found without decoding the chunks, so the
            # connection is closed rather than read as the next request.
            response = _error(
                501,
                "invalid_request_error",
                "Transfer-Encoding is not supported; send the body with Content-Length",
                code="transfer_encoding_not_supported",
            )
            logger.info(
                "sandbox rejects Transfer-Encoding from %s", self.client_address
            )
            self.close_connection = True
        elif length < 0:
            response = _invalid(
                f"invalid Content-Length {length_text!r}", "invalid_request", None
            )
            self.close_connection = True
        elif length > _MAX_BODY_BYTES:
            response = _invalid("request body is too large", "body_too_large", None)
            self.close_connection = True
        else:
            body = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            response = self.server.sandbox.handle(
                self.command, self.path, headers, body
            )
        if response.delay_seconds:
            time.sleep(response.delay_seconds)
        if response.drop:
            self.close_connection = True
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    do_GET = _serve
    do_POST = _serve
    do_PUT = _serve
    do_DELETE = _serve
    do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("sandbox: " + format, *args)


class SandboxServer(ThreadingHTTPServer):
    """The sandbox over HTTP/1.1 with keep-alive, one thread per connection."""

    daemon_threads = True

    def __init__(
        self,
        sandbox: Sandbox,
        host: str,
        port: int,
        read_timeout: float = READ_TIMEOUT_SECONDS,
    ) -> None:
        # An empty host binds every interface (0.0.0.0), which exposes the sandbox
        # to the network, so it is rejected and 0.0.0.0 must be given explicitly.
        if not host:
            raise ChirpJobsError(
                "invalid host '': give an address to listen on, such as 127.0.0.1 "
                "(or 0.0.0.0 for every interface)"
            )
        self.sandbox = sandbox
        self.read_timeout = read_timeout
        self._listening = False
        super().__init__((host, port), _Handler)

    def server_activate(self) -> None:
        # A bound socket that is not listening makes the kernel refuse connections
        # (ECONNREFUSED), which is how `refuse_seconds` refuses them.
        if self.sandbox.refusing_for() <= 0:
            self._listen()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        refusing = self.sandbox.refusing_for()
        if refusing > 0:
            time.sleep(refusing)
        self._listen()
        super().serve_forever(poll_interval)

    def _listen(self) -> None:
        if not self._listening:
            self.socket.listen(self.request_queue_size)
            self._listening = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up on a late answer closes its end; that is expected.
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.debug("sandbox: %s closed the connection early", client_address)
            return
        super().handle_error(request, client_address)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        # Without TCP_NODELAY, Nagle's algorithm delays each small response by
        # about 40 ms, until the client's delayed ACK arrives.
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, address

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode("ascii")
        return f"http://{host}:{port}"


def start_server(
    sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0
) -> SandboxServer:
    """Serve `sandbox` on a background thread; port 0 picks a free port."""
    server = SandboxServer(sandbox, host, port)
    thread = threading.Thread(target=server.serve_forever, name="sandbox", daemon=True)
    thread.start()
    return server
