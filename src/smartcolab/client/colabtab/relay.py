"""Our end of one Colab tab: a WebSocket server on 127.0.0.1 that the page connects to.

Facts of the public protocol (googlecolab/colab-mcp): the page opens a WebSocket to
``127.0.0.1:PORT`` with the subprotocol ``mcp``, from the Origin
``https://colab.google.com``, giving a token as the ``access_token`` query parameter or
a bearer header; it is then the MCP *server* and we the client (``wsframe``, ``page``).

What this adds around them:

* loopback only, a random port, a random token per tab (``secrets``), compared with
  ``secrets.compare_digest``; the Origin and the Host are checked before the handshake,
  so a page of any other origin, or a DNS-rebound name, gets 403; a request that is not a
  WebSocket upgrade (a plain HTTP GET) is refused: nothing is served over HTTP;
* one live connection at a time (a second gets close code 1013); when it ends (a page
  reload, a closed tab), the same token connects again and a new MCP session starts;
* each connection's ``PageTools`` is checked (``tools/list``) before anyone uses it.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from urllib.parse import parse_qs, urlsplit

import anyio
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.typing import Origin, Subprotocol

from mcp import ClientSession
from smartcolab.client.colabtab.page import CALL_TIMEOUT_S, PageTools
from smartcolab.client.colabtab.wsframe import MAX_FRAME, SUBPROTOCOL, mcp_streams
from smartcolab.shared.errors import SmartColabError

__all__ = ["COLAB_ORIGIN", "Relay", "link_for"]

log = logging.getLogger(__name__)

COLAB_ORIGIN = "https://colab.google.com"
NOTEBOOK_URL = f"{COLAB_ORIGIN}/notebooks/empty.ipynb"
BUSY = 1013  # "try again later": a page is already connected


def link_for(port: int, token: str) -> str:
    """The address that opens a Colab notebook which connects to this relay."""
    return f"{NOTEBOOK_URL}#mcpProxyToken={token}&mcpProxyPort={port}"


def _token_of(request: Request) -> str:
    query = parse_qs(urlsplit(request.path).query).get("access_token")
    if query:
        return query[0]
    scheme, _, value = (request.headers.get("Authorization") or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


class Relay:
    """The WebSocket end of one tab; ``page`` is the connected page's tools (or None)."""

    def __init__(self, *, host: str = "127.0.0.1", token: str | None = None,
                 call_timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.host = host
        self.token = token or secrets.token_urlsafe(24)
        self.call_timeout_s = call_timeout_s
        self.port = 0
        self.page: PageTools | None = None
        self.connections = 0  # pages that connected and passed the check
        self.refused: list[str] = []  # why requests were refused (newest last, bounded)
        self.last_error: SmartColabError | None = None  # a page that failed the check
        self.closed_at: float | None = None  # when the last page went away
        self._changed = anyio.Event()
        self._live = False
        self._server: Server | None = None

    @property
    def link(self) -> str:
        return link_for(self.port, self.token)

    @property
    def connecting(self) -> bool:
        """A page is connected and its MCP session being set up."""
        return self._live and self.page is None

    @property
    def started(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await serve(
            self._handle, self.host, 0, subprotocols=[Subprotocol(SUBPROTOCOL)],
            origins=[Origin(COLAB_ORIGIN)], process_request=self._gate, max_size=MAX_FRAME,
            server_header=None)
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self.page = None

    async def wait_page(self, wait_s: float) -> PageTools | None:
        """The connected page's tools, waiting up to ``wait_s`` for one to connect."""
        end = time.monotonic() + max(0.0, wait_s)
        while self.page is None:
            left = end - time.monotonic()
            if left <= 0:
                return None
            changed = self._changed
            with anyio.move_on_after(left):
                await changed.wait()
        return self.page

    async def wait_gone(self, wait_s: float) -> bool:
        """True when no page is connected, waiting up to ``wait_s`` for one to go."""
        with anyio.move_on_after(wait_s):
            while self.page is not None:
                await self._changed.wait()
        return self.page is None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _refuse(self, conn: ServerConnection, status: int, why: str) -> Response:
        self.refused = [*self.refused[-19:], why]
        log.warning("colab-tab relay on port %s refused a request: %s", self.port, why)
        return conn.respond(status, why + "\n")

    def _gate(self, conn: ServerConnection, request: Request) -> Response | None:
        """Before the handshake: Host, Origin, token, and that it is a WebSocket upgrade."""
        host = (request.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        if host not in ("127.0.0.1", "localhost", "::1"):
            return self._refuse(conn, 403, f"host {host[:60]!r} is not this machine's loopback")
        origin = request.headers.get("Origin")
        if origin != COLAB_ORIGIN:
            return self._refuse(conn, 403, f"origin {str(origin)[:60]!r} is not {COLAB_ORIGIN}")
        given = _token_of(request).encode("utf-8", "replace")
        if not secrets.compare_digest(given, self.token.encode("ascii")):
            return self._refuse(conn, 403, "missing or wrong token")
        if "websocket" not in (request.headers.get("Upgrade") or "").lower():
            return self._refuse(conn, 426, "only the Colab page's WebSocket is served here")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        if self._live:
            await ws.close(BUSY, "a Colab page is already connected to this runtime")
            return
        self._live = True
        try:
            async with mcp_streams(ws) as (read, write), ClientSession(read, write) as session:
                page = PageTools(session, timeout=self.call_timeout_s)
                try:
                    with anyio.fail_after(self.call_timeout_s):
                        await session.initialize()
                    await page.check()
                except SmartColabError as exc:
                    self.last_error = exc
                    self._notify()
                    await ws.close(1008, exc.message[:120])
                    return
                except TimeoutError:
                    await ws.close(1008, "the page did not complete the MCP handshake")
                    return
                self.last_error = None
                self.page = page
                self.connections += 1
                self.closed_at = None
                self._notify()
                await ws.wait_closed()
        finally:
            self._live = False
            self.page = None
            self.closed_at = time.time()
            self._notify()
