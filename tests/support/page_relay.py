"""A tiny test-only relay: our end of the page's WebSocket, giving each connection's PageTools.

The real relay (the colab-tab kind's) adds the one-connection rule and the lock-down;
this one checks only the token and the Origin, so that the fake page's ways of sending
them are exercised, and hands each connection's initialized ``PageTools`` to the test.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.typing import Origin, Subprotocol

from mcp import ClientSession
from smartcolab.client.colabtab.page import PageTools
from smartcolab.client.colabtab.wsframe import MAX_FRAME, SUBPROTOCOL, mcp_streams
from support.fake_colab_page import COLAB_ORIGIN


@dataclass
class Relay:
    port: int
    token: str
    pages: MemoryObjectReceiveStream[PageTools]

    async def next_page(self, wait_s: float = 60) -> PageTools:
        """The PageTools of the next page that connects (after a reload: the new one)."""
        with anyio.fail_after(wait_s):
            return await self.pages.receive()


@asynccontextmanager
async def page_relay(*, max_size: int = MAX_FRAME, call_timeout_s: float = 60) -> AsyncIterator[Relay]:
    token = secrets.token_urlsafe(16)
    send, receive = anyio.create_memory_object_stream[PageTools](8)

    def gate(conn: ServerConnection, request: Request) -> Response | None:
        given = request.path.partition("access_token=")[2].split("&")[0] or \
            request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not secrets.compare_digest(given, token):
            return conn.respond(403, "bad token\n")
        return None

    async def handler(ws: ServerConnection) -> None:
        async with mcp_streams(ws) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            await send.send(PageTools(session, timeout=call_timeout_s))
            await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, subprotocols=[Subprotocol(SUBPROTOCOL)],
                     origins=[Origin(COLAB_ORIGIN)], process_request=gate, max_size=max_size) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield Relay(port, token, receive)
