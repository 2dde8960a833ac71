"""Build the httpx client that talks to the Chirp API or to an in-process sandbox."""

from __future__ import annotations

import httpx

from . import __version__
from .sandbox import Sandbox

DEFAULT_BASE_URL = "https://api.buildwithchirp.com"
SANDBOX_BASE_URL = "http://sandbox.invalid"


class SandboxTransport(httpx.BaseTransport):
    """Send requests to a `Sandbox` in this process, with no socket at all."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        headers = {name.lower(): value for name, value in request.headers.items()}
        answer = self.sandbox.handle(
            request.method,
            request.url.raw_path.decode("ascii"),
            headers,
            request.read(),
        )
        return httpx.Response(
            answer.status, headers=answer.headers, content=answer.body
        )


def build_client(
    base_url: str,
    api_key: str,
    timeout: float,
    transport: httpx.BaseTransport | None = None,
    max_connections: int = 8,
) -> httpx.Client:
    """Return a client with the key, timeouts and pool size a run needs.

    `transport` replaces the network: tests and `run --sandbox` pass a
    `SandboxTransport` or an `httpx.MockTransport`.
    """
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.Client(
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
