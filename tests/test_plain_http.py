"""PlainHTTPTransport against loopback servers that send scripted bytes.

Each server here is a `socketserver` on a free loopback port, so a test sets every
byte of the response and counts the connections and requests that reach it. The
runner decides whether a call may be sent again from the class of the transport
error, so each fault checks the exact class, and the CLI checks what it records.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from chirp_jobs.cli import main
from chirp_jobs.client import DEFAULT_BASE_URL, build_client
from chirp_jobs.plain_http import (
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    MAX_LINE_BYTES,
    PlainHTTPTransport,
    plain_http_applies,
)
from chirp_jobs.results import read_records, read_results

from .conftest import WriteJob, run_args

FAKE_KEY = "sk_test_app_fake123"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CREATED_BODY = json.dumps({"id": "call_loopback", "status": "queued"}).encode()
CREATED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(CREATED_BODY), CREATED_BODY)
)
RECIPIENTS = ["+15550100121", "+15550100122", "+15550100123"]


def _job_text(recipients: list[str]) -> str:
    numbers = ", ".join(f'"{number}"' for number in recipients)
    return f"""
        version: 1
        name: plain
        calls:
          - from: "+15550100100"
            to: [{numbers}]
        """


# Loopback servers -----------------------------------------------------------------


class Handler(socketserver.StreamRequestHandler):
    """One accepted connection, handed to the server's `respond` function."""

    server: LoopbackServer

    def setup(self) -> None:
        super().setup()
        # Without TCP_NODELAY, Nagle's algorithm delays small responses by ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.lock:
            self.server.connections += 1

    def handle(self) -> None:
        self.server.respond(self)

    def read_request(self) -> bytes | None:
        """Read one request, head and body; return its head, or None at EOF."""
        head = b""
        while True:
            line = self.rfile.readline()
            if not line:
                return None
            head += line
            if line in (b"\r\n", b"\n"):
                break
        self.rfile.read(_content_length(head))
        with self.server.lock:
            self.server.requests.append(head)
            self.server.received.notify_all()
        return head

    def send(self, data: bytes) -> None:
        self.connection.sendall(data)

    def send_and_close(self, data: bytes) -> None:
        """Send `data`, then the FIN, so the client sees the close at once."""
        self.connection.sendall(data)
        self.connection.shutdown(socket.SHUT_WR)


Respond = Callable[[Handler], None]


class LoopbackServer(socketserver.ThreadingTCPServer):
    """A TCP server on a free loopback port that runs `respond` per connection.

    It counts accepted and closed connections, and keeps the head of each
    request that `Handler.read_request` read. `stopping` is set when the test ends, so a
    handler that delays its response can wait on it.
    """

    daemon_threads = True

    def __init__(self, respond: Respond, receive_buffer: int | None = None) -> None:
        self.respond = respond
        self.receive_buffer = receive_buffer
        self.connections = 0
        self.closed = 0
        self.requests: list[bytes] = []
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.received = threading.Condition(self.lock)
        self.stopping = threading.Event()
        super().__init__(("127.0.0.1", 0), Handler)

    def server_bind(self) -> None:
        # Set before listen(), so accepted sockets inherit it and Linux does not
        # grow their receive buffer past it.
        if self.receive_buffer is not None:
            self.socket.setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer
            )
        super().server_bind()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def wait_for_requests(self, count: int) -> None:
        with self.received:
            assert self.received.wait_for(lambda: len(self.requests) >= count, 5)

    def wait_for_closes(self, count: int) -> None:
        with self.received:
            assert self.received.wait_for(lambda: self.closed >= count, 5)

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        with self.received:
            self.closed += 1
            self.received.notify_all()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up closes its end, which several tests cause.
        error = sys.exc_info()[1]
        if error is not None and not isinstance(error, ConnectionError):
            self.errors.append(error)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


@contextmanager
def serving(
    respond: Respond, receive_buffer: int | None = None
) -> Iterator[LoopbackServer]:
    server = LoopbackServer(respond, receive_buffer)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join()
    assert server.errors == []


@contextmanager
def plain_client(
    server: LoopbackServer, max_connections: int = 2, timeout: float = 2.0
) -> Iterator[httpx.Client]:
    transport = PlainHTTPTransport(max_connections)
    with httpx.Client(
        base_url=server.url, transport=transport, timeout=timeout
    ) as client:
        yield client


def post_error(
    server: LoopbackServer,
    expected: type[Exception],
    timeout: float | httpx.Timeout = 2.0,
    content: bytes = b"{}",
) -> str:
    """POST once through a new plain client; return the `expected` error's message."""
    with plain_client(server) as client, pytest.raises(expected) as raised:
        client.post("/v1/calls", content=content, timeout=timeout)
    return str(raised.value)


def answer_each(response: bytes) -> Respond:
    """Send `response` to each request on the connection until the client closes."""

    def respond(handler: Handler) -> None:
        while handler.read_request() is not None:
            handler.send(response)

    return respond


def answer_once(response: bytes) -> Respond:
    """Send `response` to the first request, then close the connection."""

    def respond(handler: Handler) -> None:
        if handler.read_request() is not None:
            handler.send_and_close(response)

    return respond


def close_unanswered(handler: Handler) -> None:
    handler.read_request()


def never_answer(handler: Handler) -> None:
    if handler.read_request() is not None:
        handler.server.stopping.wait()


@contextmanager
def refused_port() -> Iterator[int]:
    """Hold a loopback port that is bound but not listening, so connects are
    refused (ECONNREFUSED) and no other process can take the port meanwhile."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
    finally:
        sock.close()


def _run(
    cli: CliRunner, job: Path, results: Path, url: str, *extra: str
) -> tuple[int, str]:
    args = run_args(job, results, url, "--concurrency", "1", *extra, rate="10")
    result = cli.invoke(main, args, env={"CHIRP_API_KEY": FAKE_KEY})
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


# Keep-alive ---------------------------------------------------------------------


def test_keep_alive_reuses_one_connection() -> None:
    with serving(answer_each(OK)) as server, plain_client(server) as client:
        statuses = [
            client.post("/v1/calls", json={"n": n}).status_code for n in range(20)
        ]

    assert statuses == [200] * 20
    assert server.connections == 1
    assert len(server.requests) == 20


def test_idle_close_opens_new_connection() -> None:
    with serving(answer_once(OK)) as server, plain_client(server) as client:
        first = client.post("/v1/calls", json={})
        # The client waits until the server has closed the idle connection.
        server.wait_for_closes(1)
        second = client.post("/v1/calls", json={})

    assert first.status_code == 200
    assert second.status_code == 200
    assert second.text == "ok"
    assert server.connections == 2
    assert len(server.requests) == 2


def test_idle_close_records_no_unknown(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob
) -> None:
    job = write_job(_job_text(RECIPIENTS))
    results = tmp_path / "results.jsonl"
    # At --rate 10 each request starts 0.1 s after the last, long after the
    # server's FIN, so each finds its kept-alive connection closed.
    with serving(answer_once(CREATED)) as server:
        exit_code, output = _run(cli, job, results, server.url)

    assert exit_code == 0, output
    outcomes = [record["outcome"] for record in read_results(results)]
    assert outcomes == ["created"] * 3
    assert server.connections == 3
    assert len(server.requests) == 3


# Faults before and after the request is sent ---------------------------------------


def test_refused_raises_connect_error() -> None:
    with refused_port() as port:
        client = httpx.Client(transport=PlainHTTPTransport(1), timeout=2.0)
        with client, pytest.raises(httpx.ConnectError, match="Connection refused"):
            client.post(f"http://127.0.0.1:{port}/v1/calls", json={})


def test_refused_recorded_not_sent(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob
) -> None:
    job = write_job(_job_text(RECIPIENTS[:1]))
    results = tmp_path / "results.jsonl"
    with refused_port() as port:
        url = f"http://127.0.0.1:{port}"
        exit_code, output = _run(cli, job, results, url, "--max-attempts", "3")

    assert exit_code == 1, output
    progress = [(r["outcome"], r["attempts"]) for r in read_records(results)]
    assert progress == [
        ("intent", 1),
        ("not_placed", 1),
        ("intent", 2),
        ("not_placed", 2),
        ("intent", 3),
        ("failed", 3),
    ]
    [final] = read_results(results)
    assert final["outcome"] == "failed"
    assert final["httpStatus"] is None
    assert final["error"]["type"] == "transport_error"
    assert final["error"]["code"] == "not_sent"
    assert final["error"]["message"].startswith("ConnectError: ")


def test_close_unanswered_raises_protocol_error() -> None:
    with serving(close_unanswered) as server:
        message = post_error(server, httpx.RemoteProtocolError)

    assert message == "Server disconnected without sending a response."
    assert len(server.requests) == 1


def test_close_unanswered_recorded_unknown_once(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob
) -> None:
    job = write_job(_job_text(RECIPIENTS))
    results = tmp_path / "results.jsonl"
    with serving(close_unanswered) as server:
        exit_code, output = _run(cli, job, results, server.url)

    assert exit_code == 1, output
    records = read_results(results)
    assert [record["outcome"] for record in records] == ["unknown"] * 3
    assert {record["error"]["code"] for record in records} == {"no_response"}
    assert {record["attempts"] for record in records} == {1}
    # Each planned call reached the server once and was never sent again.
    assert len(server.requests) == 3
    assert sorted(record["request"]["to"] for record in records) == RECIPIENTS


def test_no_answer_raises_read_timeout() -> None:
    with serving(never_answer) as server:
        message = post_error(server, httpx.ReadTimeout, timeout=0.2)

    assert message == "timed out"
    assert len(server.requests) == 1


def test_no_answer_recorded_unknown(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob
) -> None:
    job = write_job(_job_text(RECIPIENTS[:1]))
    results = tmp_path / "results.jsonl"
    with serving(never_answer) as server:
        exit_code, output = _run(cli, job, results, server.url, "--timeout", "0.2")

    assert exit_code == 1, output
    [record] = read_results(results)
    assert record["outcome"] == "unknown"
    assert record["error"]["code"] == "no_response"
    assert record["error"]["message"] == "ReadTimeout: timed out"
    assert record["attempts"] == 1
    assert len(server.requests) == 1


def test_full_backlog_raises_connect_timeout() -> None:
    # Linux drops a SYN while the accept queue is full, so the connect waits
    # until its timeout. listen(0) leaves room for one connection only.
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = listener.getsockname()[1]
    waiting = [socket.socket() for _ in range(3)]
    try:
        for sock in waiting:
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
        client = httpx.Client(transport=PlainHTTPTransport(1), timeout=0.2)
        with client, pytest.raises(httpx.ConnectTimeout, match=r"^timed out$"):
            client.post(f"http://127.0.0.1:{port}/v1/calls", json={})
    finally:
        for sock in waiting:
            sock.close()
        listener.close()


def never_read(handler: Handler) -> None:
    handler.server.stopping.wait()


def reset_after_head(handler: Handler) -> None:
    handler.connection.recv(1024)
    # SO_LINGER with a zero timeout makes close() send RST in place of FIN.
    linger = struct.pack("ii", 1, 0)
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    handler.connection.close()


# Four times Linux's default maximum send buffer (tcp_wmem, 4 MiB), against a
# server whose receive buffer is 64 KiB, so sending blocks until the server reads.
_LARGE_BODY = b"x" * (16 * 1024 * 1024)
_SMALL_BUFFER = 64 * 1024


def test_unread_request_raises_write_timeout() -> None:
    timeout = httpx.Timeout(2.0, write=0.2)
    with serving(never_read, _SMALL_BUFFER) as server:
        message = post_error(server, httpx.WriteTimeout, timeout, _LARGE_BODY)

    assert message == "timed out"
    assert server.connections == 1


def test_reset_while_writing_raises_write_error() -> None:
    with serving(reset_after_head, _SMALL_BUFFER) as server:
        message = post_error(server, httpx.WriteError, content=_LARGE_BODY)

    # The first send after the RST fails with ECONNRESET, a later one with EPIPE.
    assert message.startswith(("ConnectionResetError: ", "BrokenPipeError: "))
    assert server.connections == 1


def reject_early(status: bytes) -> Respond:
    """Respond after reading the head alone, with `Connection: close`, then close."""

    def respond(handler: Handler) -> None:
        handler.connection.recv(1024)
        handler.send(
            b"HTTP/1.1 %s\r\nConnection: close\r\nContent-Length: 0\r\n\r\n" % status
        )
        handler.connection.close()

    return respond


@pytest.mark.parametrize("status", [b"413 Content Too Large", b"429 Too Many Requests"])
def test_early_response_after_write_error(status: bytes) -> None:
    with (
        serving(reject_early(status), _SMALL_BUFFER) as server,
        plain_client(server) as client,
    ):
        reply = client.post("/v1/calls", content=_LARGE_BODY)

    # The response tells that the request was rejected. The write error alone
    # would have left the call unknown.
    assert reply.status_code == int(status[:3])
    assert server.connections == 1


def dribble(handler: Handler) -> None:
    """Send the response a byte at a time, 0.1 s apart, until the test ends."""
    if handler.read_request() is None:
        return
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100:
        if handler.server.stopping.wait(0.1):
            return
        handler.send(bytes([byte]))


def continue_forever(handler: Handler) -> None:
    if handler.read_request() is None:
        return
    while not handler.server.stopping.wait(0.05):
        handler.send(b"HTTP/1.1 100 Continue\r\n\r\n")


@pytest.mark.parametrize("respond", [dribble, continue_forever])
def test_read_timeout_bounds_whole_response(respond: Respond) -> None:
    with serving(respond) as server:
        started = time.monotonic()
        message = post_error(server, httpx.ReadTimeout, timeout=0.5)
        waited = time.monotonic() - started

    assert message == "timed out"
    # Each read comes well within 0.5 s, so only a deadline for the whole
    # response ends the wait. Without one, it lasts until the test ends.
    assert waited < 3


def test_huge_body_refused() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1)
    with serving(answer_once(head + b"x" * 1024)) as server:
        message = post_error(server, httpx.RemoteProtocolError)

    assert message == f"a response is over {MAX_BODY_BYTES} bytes"


def test_huge_body_to_close_refused() -> None:
    def flood(handler: Handler) -> None:
        if handler.read_request() is None:
            return
        handler.send(b"HTTP/1.1 200 OK\r\n\r\n")
        chunk = b"x" * (1024 * 1024)
        with contextlib.suppress(OSError):
            while not handler.server.stopping.is_set():
                handler.send(chunk)

    with serving(flood) as server:
        message = post_error(server, httpx.RemoteProtocolError, timeout=10.0)

    assert message == f"a response is over {MAX_BODY_BYTES} bytes"


# Response framing ---------------------------------------------------------------

# Each case: the response sent to every request on a connection that the server
# keeps open, the body expected, the HTTP version, and how many connections two
# sequential requests use (1 when the client may keep the connection alive).
FRAMING = {
    "content-length": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"hello",
        "HTTP/1.1",
        1,
    ),
    "chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;name=value\r\nWiki\r\n5\r\npedia\r\n0\r\n"
        b"Expires: never\r\nX-Trailer: 1\r\n\r\n",
        b"Wikipedia",
        "HTTP/1.1",
        1,
    ),
    "connection-close": (
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
        b"hello",
        "HTTP/1.1",
        2,
    ),
    "http-1.0": (
        b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"hello",
        "HTTP/1.0",
        2,
    ),
    "http-1.0-keep-alive": (
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello",
        b"hello",
        "HTTP/1.0",
        1,
    ),
    "100-continue": (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"hello",
        "HTTP/1.1",
        1,
    ),
    "103-early-hints": (
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"hello",
        "HTTP/1.1",
        1,
    ),
    "204-no-body": (b"HTTP/1.1 204 No Content\r\n\r\n", b"", "HTTP/1.1", 1),
    # "close" is a token of the header, not a part of any word in it.
    "connection-token-not-substring": (
        b"HTTP/1.1 200 OK\r\nConnection: x-closed-caption\r\n"
        b"Content-Length: 5\r\n\r\nhello",
        b"hello",
        "HTTP/1.1",
        1,
    ),
    "connection-close-among-tokens": (
        b"HTTP/1.1 200 OK\r\nConnection: Upgrade, Close\r\n"
        b"Content-Length: 5\r\n\r\nhello",
        b"hello",
        "HTTP/1.1",
        2,
    ),
    # Chunked framing wins over Content-Length, and the connection is dropped.
    "chunked-and-content-length": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n"
        b"\r\n5\r\nhello\r\n0\r\n\r\n",
        b"hello",
        "HTTP/1.1",
        2,
    ),
}


@pytest.mark.parametrize("case", sorted(FRAMING))
def test_framing_body_and_reuse(case: str) -> None:
    response, body, version, connections = FRAMING[case]
    with serving(answer_each(response)) as server, plain_client(server) as client:
        first = client.post("/v1/calls", json={})
        second = client.post("/v1/calls", json={})

    expected_status = 204 if case == "204-no-body" else 200
    assert first.status_code == expected_status
    assert second.status_code == expected_status
    assert first.content == body
    assert second.content == body
    assert first.http_version == version
    assert server.connections == connections
    assert len(server.requests) == 2


def test_body_to_close_not_reused() -> None:
    response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close"
    with serving(answer_once(response)) as server, plain_client(server) as client:
        first = client.post("/v1/calls", json={})
        second = client.post("/v1/calls", json={})

    assert first.content == b"until the close"
    assert second.content == b"until the close"
    assert server.connections == 2
    assert len(server.requests) == 2


def test_bytes_after_body_not_reused() -> None:
    # A connection with bytes left over after a response is out of step with
    # the server, so the next request opens a new one.
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"
    with serving(answer_each(response)) as server, plain_client(server) as client:
        first = client.post("/v1/calls", json={})
        second = client.post("/v1/calls", json={})

    assert first.text == "ok"
    assert second.text == "ok"
    assert server.connections == 2
    assert len(server.requests) == 2


def test_gzip_body_decoded() -> None:
    body = gzip.compress(b'{"id": "call_gzip", "status": "queued"}')
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with serving(answer_each(response)) as server, plain_client(server) as client:
        reply = client.post("/v1/calls", json={})

    assert reply.json() == {"id": "call_gzip", "status": "queued"}
    assert server.connections == 1


def test_limits_reached_accepted() -> None:
    fields = b"".join(b"X-Field-%d: %d\r\n" % (n, n) for n in range(MAX_HEADERS - 2))
    # A line of exactly MAX_LINE_BYTES, its line break included.
    long_line = b"X-Long: " + b"a" * (MAX_LINE_BYTES - 10) + b"\r\n"
    response = (
        b"HTTP/1.1 200 OK\r\n" + fields + long_line + b"Content-Length: 2\r\n\r\nok"
    )
    with serving(answer_each(response)) as server, plain_client(server) as client:
        reply = client.post("/v1/calls", json={})

    assert len(long_line) == MAX_LINE_BYTES
    assert len(reply.headers) == MAX_HEADERS
    assert len(reply.headers["X-Long"]) == MAX_LINE_BYTES - 10
    assert reply.text == "ok"


# Malformed responses --------------------------------------------------------------

_TOO_MANY_HEADERS = b"".join(b"X-Field-%d: %d\r\n" % (n, n) for n in range(MAX_HEADERS))
_LONG_VALUE = b"a" * MAX_LINE_BYTES
# Each case: the bytes sent before the close, and a part of the error message.
MALFORMED = {
    "status-code-four-digits": (b"HTTP/1.1 2000 OK\r\n\r\n", "malformed status line"),
    "status-code-below-100": (
        b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
        "malformed status line",
    ),
    "status-line-not-http": (b"ICY 200 OK\r\n\r\n", "malformed status line"),
    "header-without-colon": (
        b"HTTP/1.1 200 OK\r\nNoColonHere\r\nContent-Length: 0\r\n\r\n",
        "malformed header line",
    ),
    "header-name-with-space": (
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n",
        "malformed header line",
    ),
    "two-content-lengths": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        "invalid Content-Length",
    ),
    "content-length-not-a-number": (
        b"HTTP/1.1 200 OK\r\nContent-Length: two\r\n\r\nok",
        "invalid Content-Length",
    ),
    "chunk-size-not-hex": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
        "invalid chunk size",
    ),
    "chunk-size-with-0x": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nok\r\n0\r\n\r\n",
        "invalid chunk size",
    ),
    "chunk-size-with-underscore": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0_2\r\nok\r\n0\r\n\r\n",
        "invalid chunk size",
    ),
    "chunk-size-with-sign": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+2\r\nok\r\n0\r\n\r\n",
        "invalid chunk size",
    ),
    "header-line-too-long": (
        b"HTTP/1.1 200 OK\r\nX-Long: " + _LONG_VALUE + b"\r\nContent-Length: 0\r\n\r\n",
        f"over {MAX_LINE_BYTES} bytes",
    ),
    "status-line-too-long": (
        b"HTTP/1.1 200 " + _LONG_VALUE + b"\r\nContent-Length: 0\r\n\r\n",
        f"over {MAX_LINE_BYTES} bytes",
    ),
    "status-line-too-long-with-line-feeds": (
        b"HTTP/1.1 200 " + _LONG_VALUE + b"\nContent-Length: 0\n\n",
        f"a response line is over {MAX_LINE_BYTES} bytes",
    ),
    # Three lines, each under the line limit, over the head limit together.
    "head-too-long": (
        b"HTTP/1.1 200 OK\r\n"
        + b"".join(
            b"X-Part-%d: " % n + _LONG_VALUE[:50_000] + b"\r\n" for n in range(3)
        )
        + b"Content-Length: 0\r\n\r\n",
        f"a response head is over {MAX_HEAD_BYTES} bytes",
    ),
    "too-many-headers": (
        b"HTTP/1.1 200 OK\r\n" + _TOO_MANY_HEADERS + b"Content-Length: 0\r\n\r\n",
        f"more than {MAX_HEADERS} response headers",
    ),
    "101-switching-protocols": (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\n\r\n",
        "unexpected 101 Switching Protocols",
    ),
    "body-shorter-than-length": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        "Server disconnected before the response was complete",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_raises_protocol_error(case: str) -> None:
    response, message = MALFORMED[case]
    with serving(answer_once(response)) as server:
        raised = post_error(server, httpx.RemoteProtocolError)

    assert message in raised
    assert len(server.requests) == 1


def test_malformed_recorded_unknown_once(
    cli: CliRunner, tmp_path: Path, write_job: WriteJob
) -> None:
    job = write_job(_job_text(RECIPIENTS[:1]))
    results = tmp_path / "results.jsonl"
    response, _ = MALFORMED["two-content-lengths"]
    with serving(answer_once(response)) as server:
        exit_code, output = _run(cli, job, results, server.url)

    assert exit_code == 1, output
    [record] = read_results(results)
    assert record["outcome"] == "unknown"
    assert record["error"]["code"] == "no_response"
    assert record["error"]["message"].startswith("RemoteProtocolError: invalid Content")
    assert record["attempts"] == 1
    assert len(server.requests) == 1


# Request headers ----------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["a\r\nInjected: 1", "a\nInjected: 1", "a\rInjected: 1", "a\0b"]
)
def test_line_break_in_header_not_sent(value: str) -> None:
    with serving(answer_each(OK)) as server, plain_client(server) as client:
        with pytest.raises(httpx.LocalProtocolError, match="line break or NUL"):
            client.post("/v1/calls", json={}, headers={"X-Note": value})
        after = client.post("/v1/calls", json={})

    assert after.status_code == 200
    # The rejected request opened no connection, so the request after it made
    # the only one, and its head is the only one the server read.
    assert server.connections == 1
    assert len(server.requests) == 1
    assert b"Injected" not in server.requests[0]
    assert b"X-Note" not in server.requests[0]


# Choosing the transport ---------------------------------------------------------


def test_plain_http_applies_to_http_only() -> None:
    assert plain_http_applies("http://127.0.0.1:8080")
    assert not plain_http_applies(DEFAULT_BASE_URL)
    assert not plain_http_applies("https://127.0.0.1:8443")


@pytest.mark.parametrize(
    "variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
)
def test_proxy_variable_disables_plain_http(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "http://127.0.0.1:9")
    assert not plain_http_applies("http://127.0.0.1:8080")


def test_https_proxy_keeps_plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx uses HTTPS_PROXY for https:// URLs only.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    assert plain_http_applies("http://127.0.0.1:8080")


def test_build_client_https_uses_httpx_transport() -> None:
    with build_client(DEFAULT_BASE_URL, FAKE_KEY, 1.0) as client:
        assert type(client._transport) is httpx.HTTPTransport


@pytest.mark.parametrize("variable", ["", "HTTP_PROXY", "ALL_PROXY"])
def test_build_client_honours_proxy(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(answer_each(OK)) as target, serving(answer_each(OK)) as proxy:
        if variable:
            monkeypatch.setenv(variable, proxy.url)
        with build_client(target.url, FAKE_KEY, 2.0) as client:
            transport = type(client._transport)
            reply = client.post("/v1/calls", json={})

    assert reply.status_code == 200
    if variable:
        assert transport is httpx.HTTPTransport
        # httpx sent the request to the proxy, with the absolute URL in its
        # request line, which PlainHTTPTransport cannot do.
        assert target.requests == []
        assert len(proxy.requests) == 1
        request_line = proxy.requests[0].split(b"\r\n")[0]
        assert request_line == b"POST %s/v1/calls HTTP/1.1" % target.url.encode()
    else:
        assert transport is PlainHTTPTransport
        assert proxy.requests == []
        assert len(target.requests) == 1
        assert target.requests[0].split(b"\r\n")[0] == b"POST /v1/calls HTTP/1.1"


# The connection pool ------------------------------------------------------------


def test_pool_of_one_serves_in_turn() -> None:
    active = 0
    max_active = 0
    count_lock = threading.Lock()

    def respond(handler: Handler) -> None:
        nonlocal active, max_active
        while handler.read_request() is not None:
            with count_lock:
                active += 1
                max_active = max(max_active, active)
            handler.server.stopping.wait(0.1)
            with count_lock:
                active -= 1
            handler.send(OK)

    statuses: list[int] = []
    with serving(respond) as server, plain_client(server, max_connections=1) as client:

        def post() -> None:
            statuses.append(client.post("/v1/calls", json={}).status_code)

        threads = [threading.Thread(target=post) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert statuses == [200, 200]
    assert max_active == 1
    assert server.connections == 1
    assert len(server.requests) == 2


def test_pool_timeout_while_busy() -> None:
    release = threading.Event()

    def respond(handler: Handler) -> None:
        while handler.read_request() is not None:
            release.wait(5)
            handler.send(OK)

    with serving(respond) as server, plain_client(server, max_connections=1) as client:
        busy: list[int] = []
        thread = threading.Thread(
            target=lambda: busy.append(client.post("/v1/calls").status_code)
        )
        thread.start()
        server.wait_for_requests(1)
        timeout = httpx.Timeout(2.0, pool=0.05)
        with pytest.raises(httpx.PoolTimeout):
            client.post("/v1/calls", json={}, timeout=timeout)
        release.set()
        thread.join()
        after = client.post("/v1/calls", json={})

    assert busy == [200]
    assert after.status_code == 200
    # The request that timed out in the pool never reached the server.
    assert len(server.requests) == 2
    assert server.connections == 1
