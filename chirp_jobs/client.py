"""Build the httpx client that talks to the Chirp API or to an in-process sandbox."""

from __future__ import annotations

import time
from http.cookiejar import Cookie, CookieJar
from typing import Any

import httpx

from . import __version__
from .plain_http import PlainHTTPTransport, plain_http_applies
from .sandbox import Sandbox, SandboxResponse

DEFAULT_BASE_URL = "https://api.buildwithchirp.com"
SANDBOX_BASE_URL = "http://sandbox.invalid"


class SandboxTransport(httpx.BaseTransport):
    """Send requests to a `Sandbox` in this process, with no socket at all."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.sandbox.refusing_for() > 0:
            raise httpx.ConnectError("connection refused (sandbox)", request=request)
        headers = {name.lower(): value for name, value in request.headers.items()}
        answer = self.sandbox.handle(
            request.method,
            request.url.raw_path.decode("ascii"),
            headers,
            request.read(),
        )
        self._wait_for(answer, request)
        if answer.drop:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        return httpx.Response(
            answer.status, headers=answer.headers, content=answer.body
        )

    def _wait_for(self, answer: SandboxResponse, request: httpx.Request) -> None:
        """Sleep for the answer's delay, or raise ReadTimeout as a socket would."""
        read_timeout = request.extensions.get("timeout", {}).get("read")
        if read_timeout is not None and answer.delay_seconds > read_timeout:
            time.sleep(read_timeout)
            raise httpx.ReadTimeout("timed out (sandbox)", request=request)
        if answer.delay_seconds:
            time.sleep(answer.delay_seconds)


class _NoCookieJar(CookieJar):
    """A cookie jar that stores nothing, so `client.cookies.set` has no effect."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def set_cookie(self, cookie: Cookie) -> None:
        return None


class _NoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        return None


# Contains nothing, so every client can share it.
_NO_COOKIES = _NoCookies(_NoCookieJar())


class _Client(httpx.Client):
    """An httpx client that neither stores nor sends cookies.

    The Chirp API authenticates each request by its key, so a cookie set by a
    proxy or load balancer in between must not ride along on later calls. httpx
    also copies each request into a urllib request to look for cookies, even when
    the response sets none: about a tenth of a fast run's CPU time.
    """

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        return None


def build_client(
    base_url: str,
    api_key: str,
    timeout: float,
    transport: httpx.BaseTransport | None = None,
    max_connections: int = 8,
) -> httpx.Client:
    """Return a client with the key, timeouts and pool size a run needs.

    `transport` replaces the network: tests and `run --sandbox` pass a
    `SandboxTransport` or an `httpx.MockTransport`. Without one, `http://`
    targets go through `PlainHTTPTransport` and `https://` ones through httpx's
    own transport.
    """
    if transport is None and plain_http_applies(base_url):
        transport = PlainHTTPTransport(max_connections)
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return _Client(
        base_url=base_url,
        headers={
            "Authorization": f"Bearer {api_key}",
            "User-Agent": f"chirp-jobs/{__version__}",
        },
        timeout=httpx.Timeout(timeout),
        limits=limits,
        transport=transport,
        # Redirects are not followed: a redirected POST could be replayed elsewhere.
        follow_redirects=False,
    )
