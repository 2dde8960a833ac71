from __future__ import annotations

import json
import re
import socket
import time

import httpx
import pytest

from chirp_jobs.client import SandboxTransport
from chirp_jobs.sandbox import Sandbox, SandboxConfig, SandboxServer

from .conftest import TEST_KEY

CALL_ID = re.compile(r"^call_(?:test_)?[a-zA-Z0-9]{27}$")
APP_ID = re.compile(r"^app_(?:test_)?[a-zA-Z0-9]{27}$")
BODY = {"from": "+15550100100", "to": "+15550100123"}


def _client(sandbox: Sandbox, key: str | None = TEST_KEY) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(
        base_url="http://sandbox.invalid",
        transport=SandboxTransport(sandbox),
        headers=headers,
    )


def test_create_returns_call_object(sandbox: Sandbox) -> None:
    body = {**BODY, "metadata": {"ticket": "T-1"}}
    response = _client(sandbox).post("/v1/calls", json=body)
    assert response.status_code == 201
    call = response.json()
    assert CALL_ID.match(call["id"])
    assert call["id"].startswith("call_test_")
    assert APP_ID.match(call["appId"])
    assert call["status"] == "initiated"
    assert call["direction"] == "outbound"
    assert call["metadata"] == {"ticket": "T-1"}
    assert call["fromAddress"] == "+15550100100"
    assert call["toAddress"] == "+15550100123"
    assert call["fromChannel"] == "pstn"
    for name in ("duration", "endReason", "livekitRoomName", "endedAt"):
        assert call[name] is None
    assert call["createdAt"].endswith("Z")


def test_live_key_ids_have_no_test_infix(sandbox: Sandbox) -> None:
    call = _client(sandbox, "sk_live_app_abc").post("/v1/calls", json=BODY).json()
    assert CALL_ID.match(call["id"])
    assert not call["id"].startswith("call_test_")


def test_webrtc_call_gets_room(sandbox: Sandbox) -> None:
    body = {"from": "webrtc-user-123", "fromChannel": "webrtc", "to": "+15550100123"}
    call = _client(sandbox).post("/v1/calls", json=body).json()
    assert call["livekitRoomName"]


@pytest.mark.parametrize(
    "key",
    [None, "not-a-key", "sk_admin_abc", "sk_test_abc"],
    ids=["missing", "garbage", "admin", "not-app"],
)
def test_bad_keys_get_401(sandbox: Sandbox, key: str | None) -> None:
    response = _client(sandbox, key).post("/v1/calls", json=BODY)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert sandbox.created_calls() == []


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"to": "+15550100123"}, "parameter_missing", "from"),
        ({**BODY, "to": "+1 555 0100"}, "invalid_phone_number", "to"),
        ({**BODY, "from": "15550100100"}, "invalid_phone_number", "from"),
        ({**BODY, "toChannel": "sms"}, "parameter_invalid", "toChannel"),
        ({**BODY, "ringTimeout": 30}, "parameter_unknown", "ringTimeout"),
        ({**BODY, "metadata": []}, "parameter_invalid", "metadata"),
    ],
    ids=["no-from", "bad-to", "bad-from", "bad-channel", "unknown", "metadata"],
)
def test_invalid_request_400(
    sandbox: Sandbox, body: dict[str, object], code: str, param: str
) -> None:
    response = _client(sandbox).post("/v1/calls", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code
    assert error["param"] == param
    assert sandbox.created_calls() == []


def test_unassigned_from_rejected() -> None:
    sandbox = Sandbox(SandboxConfig(assigned_numbers=frozenset(["+15550100999"])))
    response = _client(sandbox).post("/v1/calls", json=BODY)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "phone_number_not_assigned"


def test_rate_limit_headers_count_down(sandbox: Sandbox) -> None:
    client = _client(sandbox)
    first = client.post("/v1/calls", json=BODY).headers
    second = client.get("/v1/calls/call_missing").headers
    assert first["X-RateLimit-Limit"] == "120"
    assert (
        int(first["X-RateLimit-Remaining"]) == int(second["X-RateLimit-Remaining"]) + 1
    )
    assert int(first["X-RateLimit-Reset"]) > time.time()


def test_enforced_rate_limit_answers_429() -> None:
    sandbox = Sandbox(SandboxConfig(rate_limit=2, enforce_rate_limit=True))
    client = _client(sandbox)
    statuses = [
        client.post("/v1/calls", json={**BODY, "to": f"+1555010012{i}"}).status_code
        for i in range(3)
    ]
    assert statuses == [201, 201, 429]
    limited = client.post("/v1/calls", json=BODY)
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert len(sandbox.created_calls()) == 2


def test_get_call_advances_lifecycle() -> None:
    sandbox = Sandbox(SandboxConfig(lifecycle_seconds=0.05))
    client = _client(sandbox)
    call_id = client.post("/v1/calls", json=BODY).json()["id"]
    time.sleep(0.06)
    call = client.get(f"/v1/calls/{call_id}").json()
    assert call["status"] == "completed"
    assert call["endedAt"] is not None
    assert call["endReason"] == "hangup"


def test_get_unknown_call_404(sandbox: Sandbox) -> None:
    response = _client(sandbox).get("/v1/calls/call_nope")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_served_over_http(sandbox: Sandbox, served_sandbox: SandboxServer) -> None:
    headers = {"Authorization": f"Bearer {TEST_KEY}"}
    with httpx.Client(base_url=served_sandbox.url, headers=headers) as client:
        created = client.post("/v1/calls", json=BODY)
        listed = client.get("/_sandbox/calls").json()["calls"]
    assert created.status_code == 201
    assert [call["id"] for call in listed] == [created.json()["id"]]
    assert len(sandbox.created_calls()) == 1


def _exchange(server: SandboxServer, request: bytes) -> bytes:
    """Send raw bytes to the served sandbox; return all it sends until it closes."""
    host, port = server.server_address[:2]
    with socket.create_connection((str(host), port), timeout=5) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return received


def _post(headers: str, body: bytes = b"{}") -> bytes:
    return (
        f"POST /v1/calls HTTP/1.1\r\nHost: sandbox\r\n{headers}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def test_http_connection_close_honoured(served_sandbox: SandboxServer) -> None:
    body = json.dumps(BODY).encode()
    headers = f"Authorization: Bearer {TEST_KEY}\r\nConnection: close\r\n"
    response = _exchange(served_sandbox, _post(headers, body))
    assert response.startswith(b"HTTP/1.1 201 ")
    assert response.count(b"HTTP/1.1 ") == 1
    assert b'"status":"initiated"' in response


def test_http_keep_alive_two_requests(served_sandbox: SandboxServer) -> None:
    body = json.dumps(BODY).encode()
    keep = f"authorization: Bearer {TEST_KEY}\r\n"
    close = keep + "Connection: close\r\n"
    response = _exchange(served_sandbox, _post(keep, body) + _post(close, body))
    assert response.count(b"HTTP/1.1 201 ") == 2


def test_http_1_0_closes_connection(served_sandbox: SandboxServer) -> None:
    request = b"GET /_sandbox/calls HTTP/1.0\r\n\r\n"
    response = _exchange(served_sandbox, request)
    assert response.startswith(b"HTTP/1.1 200 ")
    assert response.endswith(b'{"calls":[]}')


@pytest.mark.parametrize(
    ("request_bytes", "status_line"),
    [
        (b"GET /_sandbox/calls\r\n\r\n", b"HTTP/1.1 400 "),
        (b"GET /_sandbox/calls HTTP/2.0\r\n\r\n", b"HTTP/1.1 400 "),
        (b"GET / HTTP/1.1\r\nNo-Colon\r\n\r\n", b"HTTP/1.1 400 "),
        (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", b"HTTP/1.1 400 "),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n", b"HTTP/1.1 431 "),
        (b"GET / HTTP/1.1\r\n" + b"X: a\r\n" * 101 + b"\r\n", b"HTTP/1.1 431 "),
    ],
)
def test_http_malformed_request_rejected(
    served_sandbox: SandboxServer, request_bytes: bytes, status_line: bytes
) -> None:
    response = _exchange(served_sandbox, request_bytes)
    assert response.startswith(status_line)


def test_http_invalid_content_length_400(served_sandbox: SandboxServer) -> None:
    request = (
        "POST /v1/calls HTTP/1.1\r\n"
        f"Authorization: Bearer {TEST_KEY}\r\nContent-Length: ten\r\n\r\n"
    ).encode()
    response = _exchange(served_sandbox, request)
    assert response.startswith(b"HTTP/1.1 400 ")
    assert b"invalid Content-Length 'ten'" in response
    assert response.count(b"HTTP/1.1 ") == 1
