"""The httpx client that runs use: headers, redirects and cookies."""

from __future__ import annotations

import httpx

from chirp_jobs.client import build_client

from .conftest import TEST_KEY


def test_response_cookies_never_sent() -> None:
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Cookie"))
        return httpx.Response(
            201, json={"id": "call_1"}, headers={"Set-Cookie": "lb=node-7; Path=/"}
        )

    transport = httpx.MockTransport(answer)
    with build_client("http://127.0.0.1:9", TEST_KEY, 5.0, transport) as client:
        for _ in range(2):
            assert client.post("/v1/calls", json={}).status_code == 201
        assert list(client.cookies.jar) == []
        client.cookies = {"session": "x"}
        client.post("/v1/calls", json={})
    # A proxy's cookie must not ride along on later calls, nor one set by hand.
    assert seen == [None, None, None]
