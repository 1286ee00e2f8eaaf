"""The colab-tab relay's lock-down, over real sockets: only the Colab origin with this
tab's token gets a WebSocket; a plain HTTP request, another origin, a wrong or missing
token and a foreign Host header are refused; a second page meanwhile gets 1013."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx2
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin, Subprotocol

from smartcolab.client.colabtab.relay import BUSY, COLAB_ORIGIN, Relay
from support.fake_colab_page import FakeColabPage

pytestmark = pytest.mark.anyio


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    r = Relay(call_timeout_s=30)
    await r.start()
    try:
        yield r
    finally:
        await r.aclose()


async def refused_status(relay: Relay, token: str | None = None, **kwargs: str) -> int:
    page = FakeColabPage(relay.port, relay.token if token is None else token, **kwargs)
    with pytest.raises(InvalidStatus) as caught:
        async with page:
            pass
    return caught.value.response.status_code


async def test_the_relay_listens_on_loopback_only(relay: Relay) -> None:
    assert relay.host == "127.0.0.1"
    assert relay.link.endswith(f"#mcpProxyToken={relay.token}&mcpProxyPort={relay.port}")
    assert len(relay.token) >= 32


async def test_a_wrong_origin_is_refused(relay: Relay) -> None:
    assert await refused_status(relay, origin="https://evil.example") == 403
    assert await refused_status(relay, origin="http://colab.google.com") == 403
    assert relay.page is None and relay.connections == 0
    assert "origin" in relay.refused[-1]


async def test_a_wrong_or_missing_token_is_refused(relay: Relay) -> None:
    right = relay.token
    assert await refused_status(relay, right[:-1] + ("A" if right[-1] != "A" else "B")) == 403
    assert await refused_status(relay, "wrong", token_in="header") == 403
    assert await refused_status(relay, "é" * 32) == 403  # not even ASCII
    with pytest.raises(InvalidStatus):
        async with connect(f"ws://127.0.0.1:{relay.port}/", origin=Origin(COLAB_ORIGIN),
                           subprotocols=[Subprotocol("mcp")]):
            pass
    assert relay.connections == 0 and "token" in relay.refused[-1]


async def test_the_token_as_a_bearer_header_is_accepted(relay: Relay) -> None:
    async with FakeColabPage(relay.port, relay.token, token_in="header"):
        assert await relay.wait_page(60) is not None


async def test_plain_http_is_refused_and_serves_nothing(relay: Relay) -> None:
    async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{relay.port}") as http:
        bare = await http.get("/")
        with_everything = await http.get(f"/?access_token={relay.token}",
                                         headers={"Origin": COLAB_ORIGIN})
        rebound = await http.get(f"/?access_token={relay.token}", headers={
            "Origin": COLAB_ORIGIN, "Host": f"attacker.example:{relay.port}"})
    assert bare.status_code == 403
    assert with_everything.status_code == 426  # not a WebSocket upgrade: nothing to serve
    assert rebound.status_code == 403
    for response in (bare, with_everything, rebound):
        assert relay.token not in response.text
        assert "access-control-allow-origin" not in response.headers


async def test_a_second_page_meanwhile_gets_busy(relay: Relay) -> None:
    async with FakeColabPage(relay.port, relay.token):
        assert await relay.wait_page(60) is not None
        async with connect(f"ws://127.0.0.1:{relay.port}/?access_token={relay.token}",
                           origin=Origin(COLAB_ORIGIN),
                           subprotocols=[Subprotocol("mcp")]) as second:
            with anyio.fail_after(30), pytest.raises(ConnectionClosed) as closed:
                await second.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == BUSY
        assert relay.page is not None  # the first page is still the one connected
