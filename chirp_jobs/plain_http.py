"""A lean HTTP/1.1 transport for `http://` targets, written on plain sockets.

httpx's own transport spends about 1 ms of CPU time on each request on a 2 vCPU
machine. Against the sandbox or a test endpoint on loopback, where nothing limits
the rate, that cost caps the run (see `benchmarks/RESULTS.md`). This transport
sends the request that httpx built in one `send` and parses the response with a
few byte operations. `https://` targets, the real API among them, keep httpx's own
transport: at the API's two calls a second the cost does not matter, and httpx's
TLS settings stay the ones users know.

The runner decides whether a call may be sent again from the class of the error,
so each failure is raised as the httpx error that shows how far the request got:

- `httpx.ConnectError`, `httpx.ConnectTimeout` and `httpx.PoolTimeout` when no
  byte of the request was sent. Only these mean "not placed".
- `httpx.WriteError`, `httpx.WriteTimeout`, `httpx.ReadError`,
  `httpx.ReadTimeout` and `httpx.RemoteProtocolError` once sending has begun,
  because the server may have read the request and placed the call.

A kept-alive connection that the server closed while it sat idle is found before
it is reused, as httpcore does, so such a close does not turn a call into an
unknown one. A close that races with the request still does, which is the safe
outcome. Anything in a response that this parser does not expect ends the
exchange with `RemoteProtocolError` rather than a guess.
"""

from __future__ import annotations

import re
import select
import socket
import threading
import time
import urllib.request
from typing import Any

import httpx

# Limits on the size of a response; past them it is rejected as malformed. A
# line's length counts its line break.
MAX_LINE_BYTES = 64 * 1024
MAX_HEAD_BYTES = 2 * MAX_LINE_BYTES
MAX_HEADERS = 100
# A call object is about a kilobyte, so a larger body is not the Chirp API's.
# Reading it whole could exhaust memory.
MAX_BODY_BYTES = 16 * 1024 * 1024
# How long reading a response sent before a write failed may take.
EARLY_RESPONSE_SECONDS = 1.0
_RECEIVE_BYTES = 64 * 1024
# A large Content-Length is read in pieces, so a false one cannot make one huge
# allocation.
_MAX_RECEIVE_BYTES = 1024 * 1024
_FORBIDDEN_IN_HEADERS = (b"\r", b"\n", b"\0")
# Hex digits only, because int(text, 16) also takes "0x", a sign and underscores.
# Sixteen hex digits reach 2**64 bytes, more than any chunk a server can send.
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


class PlainHTTPTransport(httpx.BaseTransport):
    """Send requests over a pool of at most `max_connections` kept-alive sockets.

    Each response is read in full before its connection returns to the pool, so
    no response keeps a connection after `handle_request` returns.
    """

    def __init__(self, max_connections: int) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        # Idle connections per (host, port), the most recently used last.
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol(
                f"this transport sends only http:// requests, not {url.scheme}://",
                request=request,
            )
        timeouts = request.extensions.get("timeout", {})
        origin = (url.host, url.port or 80)
        message = _request_bytes(request)
        if not self._slots.acquire(timeout=_wait_seconds(timeouts.get("pool"))):
            raise httpx.PoolTimeout("no connection free in time", request=request)
        try:
            connection = self._checkout(origin, timeouts.get("connect"), request)
            try:
                response, reusable = connection.exchange(request, message, timeouts)
            except BaseException:
                connection.close()
                raise
            if reusable:
                self._checkin(origin, connection)
            else:
                connection.close()
            return response
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [item for items in self._idle.values() for item in items]
            self._idle.clear()
        for connection in idle:
            connection.close()

    def _checkout(
        self, origin: tuple[str, int], connect_timeout: Any, request: httpx.Request
    ) -> _Connection:
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                connection = idle.pop() if idle else None
            if connection is None:
                return _Connection.open(origin, connect_timeout, request)
            if connection.still_open():
                return connection
            connection.close()

    def _checkin(self, origin: tuple[str, int], connection: _Connection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.setdefault(origin, []).append(connection)
                return
        connection.close()


def plain_http_applies(base_url: str) -> bool:
    """Tell whether runs to `base_url` can use `PlainHTTPTransport`.

    They cannot when a proxy is configured for plain HTTP, because httpx honours
    the proxy environment variables and this transport does not.
    """
    if httpx.URL(base_url).scheme != "http":
        return False
    proxies = urllib.request.getproxies()
    return "http" not in proxies and "all" not in proxies


def _wait_seconds(timeout: Any) -> float:
    """Return a timeout as `Semaphore.acquire` takes it: -1 waits for ever."""
    return -1 if timeout is None else float(timeout)


def _request_bytes(request: httpx.Request) -> bytes:
    """Return the whole request, head and body, as it goes on the wire."""
    fields = request.headers.raw
    head = b"\r\n".join(
        [
            b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path),
            *(b"%s: %s" % field for field in fields),
        ]
    )
    # Each line break in the head must be one of the separators joined above.
    line_breaks = len(fields)
    if (
        head.count(b"\n") != line_breaks
        or head.count(b"\r") != line_breaks
        or b"\0" in head
    ):
        _raise_header_error(fields, request)
    return head + b"\r\n\r\n" + request.read()


def _raise_header_error(
    fields: list[tuple[bytes, bytes]], request: httpx.Request
) -> None:
    """Raise `LocalProtocolError` naming the header with a line break or NUL.

    It is raised before any byte is sent, and no header chirp-jobs builds has one.
    """
    for name, value in fields:
        if any(mark in name + value for mark in _FORBIDDEN_IN_HEADERS):
            raise httpx.LocalProtocolError(
                f"invalid header {name!r}: it contains a line break or NUL",
                request=request,
            )
    raise httpx.LocalProtocolError(
        "invalid request target: it contains a line break or NUL", request=request
    )


class _Closed(Exception):
    """The server closed the connection."""


class _Malformed(Exception):
    """An error in a response: bad framing, or a size past its limit."""


class _Connection:
    """One socket and the bytes received on it but not yet parsed."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        # When the response being read must be complete (monotonic clock).
        self._deadline: float | None = None

    @classmethod
    def open(
        cls, origin: tuple[str, int], timeout: Any, request: httpx.Request
    ) -> _Connection:
        try:
            sock = socket.create_connection(origin, timeout=timeout)
        except TimeoutError as error:
            message = str(error) or "timed out"
            raise httpx.ConnectTimeout(message, request=request) from error
        except OSError as error:
            raise httpx.ConnectError(str(error), request=request) from error
        # The request goes out in one send, so Nagle's algorithm only delays it.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock)

    def close(self) -> None:
        self.sock.close()

    def still_open(self) -> bool:
        """Tell whether this idle connection can carry another request.

        An idle socket that is readable contains either the server's close or
        bytes the server should not have sent, and neither can be reused.
        """
        if self.buffer:
            return False
        # poll, unlike select, takes descriptors above 1023.
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        try:
            return not poller.poll(0)
        except OSError:
            return False

    def exchange(
        self, request: httpx.Request, message: bytes, timeouts: dict[str, Any]
    ) -> tuple[httpx.Response, bool]:
        """Send `message`, read the response; return it and whether to keep alive."""
        try:
            self.sock.settimeout(timeouts.get("write"))
            self.sock.sendall(message)
        except OSError as error:
            early = self._early_response(request)
            if early is not None:
                return early, False
            if isinstance(error, TimeoutError):
                text = str(error) or "timed out"
                raise httpx.WriteTimeout(text, request=request) from error
            raise httpx.WriteError(_describe(error), request=request) from error
        try:
            # The read timeout bounds the whole response, not each read, so a
            # server that sends a byte at a time cannot hold a run for ever.
            read_timeout = timeouts.get("read")
            self._deadline = (
                None if read_timeout is None else time.monotonic() + read_timeout
            )
            return self._read_response(request)
        except TimeoutError as error:
            text = str(error) or "timed out"
            raise httpx.ReadTimeout(text, request=request) from error
        except (_Closed, _Malformed) as error:
            raise httpx.RemoteProtocolError(str(error), request=request) from error
        except OSError as error:
            raise httpx.ReadError(_describe(error), request=request) from error

    def _early_response(self, request: httpx.Request) -> httpx.Response | None:
        """Return a response the server sent before it stopped reading, if any.

        A server may reject a request (413, 429) and close before reading all of
        it. Its response then shows what became of the request, and httpx reads
        it too. Anything short of a whole response leaves the write error as is.
        """
        self._deadline = time.monotonic() + EARLY_RESPONSE_SECONDS
        try:
            return self._read_response(request)[0]
        except (OSError, _Closed, _Malformed):
            return None

    def _read_response(self, request: httpx.Request) -> tuple[httpx.Response, bool]:
        while True:
            if not self.buffer:
                try:
                    self._receive()
                except _Closed:
                    raise _Closed(
                        "Server disconnected without sending a response."
                    ) from None
            status_line, *lines = self._head()
            version, status, reason = _parse_status(status_line)
            headers = _parse_headers(lines)
            if status == 101:
                raise _Malformed("unexpected 101 Switching Protocols")
            # 1xx responses come before the real one and carry no body.
            if not 100 <= status < 200:
                break
        options = _tokens(headers, b"connection")
        keep_alive = (
            b"close" not in options
            if version == b"HTTP/1.1"
            else b"keep-alive" in options
        )
        if request.method == "HEAD" or status in (204, 304):
            body = b""
        else:
            body, keep_alive = self._body(headers, keep_alive)
        response = httpx.Response(
            status,
            headers=headers,
            stream=httpx.ByteStream(body),
            extensions={"http_version": version, "reason_phrase": reason},
        )
        return response, keep_alive

    def _head(self) -> list[bytes]:
        """Take the status line and header lines, up to the empty line, at once."""
        start = 0
        while True:
            crlf = self.buffer.find(b"\r\n\r\n", start)
            # Bare LF line ends are read too, as most clients do.
            lf = self.buffer.find(b"\n\n", start, None if crlf < 0 else crlf)
            if lf >= 0 or crlf >= 0:
                break
            # Until the head's end arrives, its last line is the partial one.
            partial_line = len(self.buffer) - (self.buffer.rfind(b"\n") + 1)
            _check_head_size(len(self.buffer), partial_line)
            start = max(0, len(self.buffer) - 3)
            self._receive()
        end, skip = (lf, lf + 2) if lf >= 0 else (crlf, crlf + 4)
        lines = [line.rstrip(b"\r") for line in bytes(self.buffer[:end]).split(b"\n")]
        # A line's limit counts its CRLF, as when lines are read one at a time.
        _check_head_size(skip, max(map(len, lines)) + 2)
        del self.buffer[:skip]
        return lines

    def _body(
        self, headers: list[tuple[bytes, bytes]], keep_alive: bool
    ) -> tuple[bytes, bool]:
        codings = _tokens(headers, b"transfer-encoding")
        lengths = {
            value for name, value in headers if name.lower() == b"content-length"
        }
        if codings:
            if codings[-1] != b"chunked":
                # Without chunked last, the body runs to the close.
                return self._to_close(), False
            # Both headers can be a sign of response splitting: the chunked
            # framing is read, and the connection is not trusted again.
            return self._chunked(), keep_alive and not lengths
        if not lengths:
            return self._to_close(), False
        if len(lengths) > 1 or not next(iter(lengths)).isdigit():
            raise _Malformed(f"invalid Content-Length {sorted(lengths)!r}")
        length = int(next(iter(lengths)))
        _check_body_size(length)
        return self._exactly(length), keep_alive

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(size_text):
                raise _Malformed(f"invalid chunk size {size_text[:40]!r}")
            size = int(size_text, 16)
            if size == 0:
                # Trailer fields, if any, end with an empty line.
                while self._line().rstrip(b"\r\n"):
                    pass
                return b"".join(parts)
            total += size
            _check_body_size(total)
            parts.append(self._exactly(size))
            if self._line().rstrip(b"\r\n"):
                raise _Malformed("chunk longer than its size")

    def _line(self) -> bytes:
        start = 0
        while True:
            end = self.buffer.find(b"\n", start)
            # The whole line can arrive in one receive, so its length is checked
            # whether or not its end has been found.
            _check_head_size(0, end + 1 if end >= 0 else len(self.buffer))
            if end >= 0:
                line = bytes(self.buffer[: end + 1])
                del self.buffer[: end + 1]
                return line
            start = len(self.buffer)
            self._receive()

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._receive(size - len(self.buffer))
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def _to_close(self) -> bytes:
        while True:
            try:
                self._receive()
            except _Closed:
                data = bytes(self.buffer)
                self.buffer.clear()
                return data

    def _receive(self, at_least: int = _RECEIVE_BYTES) -> None:
        _check_body_size(len(self.buffer))
        if self._deadline is not None:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out")
            self.sock.settimeout(remaining)
        chunk = self.sock.recv(min(max(at_least, _RECEIVE_BYTES), _MAX_RECEIVE_BYTES))
        if not chunk:
            raise _Closed("Server disconnected before the response was complete.")
        self.buffer += chunk


def _parse_status(line: bytes) -> tuple[bytes, int, bytes]:
    version, _, rest = line.rstrip(b"\r\n").partition(b" ")
    code, _, reason = rest.partition(b" ")
    # Status codes run from 100 to 999, as h11 (behind httpx's transport) reads them.
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or not (
        len(code) == 3 and code.isdigit() and not code.startswith(b"0")
    ):
        raise _Malformed(f"malformed status line {line[:80]!r}")
    return version, int(code), reason


def _check_head_size(head_bytes: int, line_bytes: int) -> None:
    """Raise `_Malformed` if a response head, or its longest line, is too long."""
    if head_bytes > MAX_HEAD_BYTES:
        raise _Malformed(f"a response head is over {MAX_HEAD_BYTES} bytes")
    if line_bytes > MAX_LINE_BYTES:
        raise _Malformed(f"a response line is over {MAX_LINE_BYTES} bytes")


def _check_body_size(body_bytes: int) -> None:
    if body_bytes > MAX_BODY_BYTES:
        raise _Malformed(f"a response is over {MAX_BODY_BYTES} bytes")


def _parse_headers(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    if len(lines) > MAX_HEADERS:
        raise _Malformed(f"more than {MAX_HEADERS} response headers")
    headers = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not name or b" " in name or b"\t" in name:
            raise _Malformed(f"malformed header line {line[:80]!r}")
        headers.append((name, value.strip(b" \t")))
    return headers


def _tokens(headers: list[tuple[bytes, bytes]], field: bytes) -> list[bytes]:
    """Return the comma-separated tokens of every `field` header, lowercased."""
    return [
        token.strip().lower()
        for name, value in headers
        if name.lower() == field
        for token in value.split(b",")
        if token.strip()
    ]


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
