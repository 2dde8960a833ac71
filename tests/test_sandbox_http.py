"""Hostile HTTP input to the served sandbox: bodies, framing and idle connections."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from chirp_jobs.cli import main
from chirp_jobs.errors import ChirpJobsError
from chirp_jobs.sandbox import (
    READ_TIMEOUT_SECONDS,
    Sandbox,
    SandboxConfig,
    SandboxServer,
)

from .conftest import TEST_KEY
from .test_sandbox import _exchange

INVALID_JSON = {
    "error": {
        "type": "invalid_request_error",
        "message": "request body is not valid JSON",
        "code": "invalid_json",
    }
}


@pytest.fixture
def quick_timeout_server() -> Iterator[SandboxServer]:
    """Serve a sandbox whose connections time out after 0.3 s without data."""
    server = SandboxServer(Sandbox(SandboxConfig(seed=7)), "127.0.0.1", 0, 0.3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _post(body: bytes, extra_headers: str = "") -> bytes:
    return (
        f"POST /v1/calls HTTP/1.1\r\nHost: sandbox\r\n"
        f"Authorization: Bearer {TEST_KEY}\r\nConnection: close\r\n{extra_headers}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _split(response: bytes) -> tuple[bytes, bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    return head, body


def test_read_timeout_default_is_30_seconds() -> None:
    assert READ_TIMEOUT_SECONDS == 30.0


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 200_000,
        b'{"from": "+15550100100", "to": "+15550100101", "metadata": {"a": NaN}}',
        b'{"from": "+15550100100", "to": "+15550100101", "metadata": {"a": Infinity}}',
        b'{"from": "+15550100100", "to": "+15550100101", "metadata": {"a": -Infinity}}',
        b'{"from": "+15550100100", "to": "+15550100101", "metadata": {"a": 1e999}}',
    ],
    ids=["nested", "nan", "infinity", "minus-infinity", "float-overflow"],
)
def test_http_non_json_body_400(served_sandbox: SandboxServer, body: bytes) -> None:
    response = _exchange(served_sandbox, _post(body))
    head, response_body = _split(response)
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(response_body) == INVALID_JSON


def test_http_finite_float_accepted(served_sandbox: SandboxServer) -> None:
    body = b'{"from": "+15550100100", "to": "+15550100101", "metadata": {"a": 1.5}}'
    head, response_body = _split(_exchange(served_sandbox, _post(body)))
    assert head.startswith(b"HTTP/1.1 201 ")
    assert json.loads(response_body)["metadata"] == {"a": 1.5}


def test_http_chunked_body_501_closes(served_sandbox: SandboxServer) -> None:
    body = json.dumps({"from": "+15550100100", "to": "+15550100101"}).encode()
    chunk = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    request = (
        "POST /v1/calls HTTP/1.1\r\nHost: sandbox\r\n"
        f"Authorization: Bearer {TEST_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode() + chunk
    response = _exchange(served_sandbox, request)
    head, response_body = _split(response)
    assert head.startswith(b"HTTP/1.1 501 ")
    assert json.loads(response_body) == {
        "error": {
            "type": "invalid_request_error",
            "message": "Transfer-Encoding is not supported; send the body with "
            "Content-Length",
            "code": "transfer_encoding_not_supported",
        }
    }
    # The chunk was not read as a second request, and no call was created.
    assert response.count(b"HTTP/1.1 ") == 1
    assert served_sandbox.sandbox.created_calls() == []


@pytest.mark.parametrize(
    "partial",
    [
        b"",
        b"POST /v1/calls HTTP/1.1\r\nHost: sandbox\r\n",
        _post(b'{"from": "+15550100100"}')[:-5],
    ],
    ids=["idle", "half-sent-headers", "half-sent-body"],
)
def test_http_idle_connection_closed(
    quick_timeout_server: SandboxServer, partial: bytes
) -> None:
    host, port = quick_timeout_server.server_address[:2]
    with socket.create_connection((str(host), port), timeout=10) as connection:
        connection.sendall(partial)
        # recv returns b"" once the server closes; the 10 s client timeout
        # raises instead if the server keeps the connection open.
        assert connection.recv(65536) == b""


def test_server_empty_host_rejected() -> None:
    with pytest.raises(ChirpJobsError, match="invalid host ''") as raised:
        SandboxServer(Sandbox(), "", 0)
    assert raised.value.exit_code == 2


def test_sandbox_command_empty_host_exit_2() -> None:
    result = CliRunner().invoke(main, ["sandbox", "--host", "", "--port", "0"])
    assert result.exit_code == 2
    assert result.stderr == (
        "error: invalid host '': give an address to listen on, such as 127.0.0.1 "
        "(or 0.0.0.0 for every interface)\n"
    )
