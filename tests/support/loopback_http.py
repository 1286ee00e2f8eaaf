"""A scripted HTTP/1.1 server on 127.0.0.1, run in the test's own event loop.

The loopback lane (``client/http/lane.py``) is only taken for a real socket, so the
tests that state what the client makes of an answer (``httpx2.MockTransport`` handlers)
can be replayed through this server, and the lane's own tests can answer with bytes
no well-behaved server would send (garbage, a cut body, nothing at all).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import h11
import httpx2


@dataclass
class Seen:
    """One request as the server read it; ``conn`` numbers the connections from 1."""

    conn: int
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


class Cut(bytes):
    """Bytes the server writes before it closes the connection (a cut answer)."""


# What a script answers: raw bytes to write (``Cut``: then close), or None to close
# without an answer.
Respond = Callable[[Seen], Awaitable[bytes | None]]


@dataclass
class Server:
    url: str
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    open: set[asyncio.StreamWriter] = field(default_factory=set)

    def drop(self) -> None:
        """Close every open connection, as a server's keep-alive timeout does."""
        for writer in list(self.open):
            writer.close()


@asynccontextmanager
async def scripted_server(respond: Respond) -> AsyncIterator[Server]:
    server = Server(url="")

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        number = server.connections
        server.open.add(writer)
        leftover = b""
        try:
            while True:
                parser = h11.Connection(h11.SERVER)
                if leftover:  # b"" would tell h11 the peer is gone
                    parser.receive_data(leftover)
                request, body = None, b""
                while True:
                    event = parser.next_event()
                    if event is h11.NEED_DATA:
                        data = await reader.read(65536)
                        if not data:
                            return
                        parser.receive_data(data)
                    elif isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += bytes(event.data)
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:
                        return
                leftover = parser.trailing_data[0]
                assert request is not None
                seen = Seen(number, request.method.decode(), request.target.decode(),
                            {k.decode().lower(): v.decode() for k, v in request.headers}, body)
                server.seen.append(seen)
                raw = await respond(seen)
                if raw is None:
                    return
                writer.write(raw)
                await writer.drain()
                if isinstance(raw, Cut):
                    return
        except (ConnectionError, h11.ProtocolError):
            return
        finally:
            server.open.discard(writer)
            writer.close()

    listener = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        listener.close()


def raw_response(status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None,
                 *, length: bool = True) -> bytes:
    """An answer's bytes; ``length=False`` leaves Content-Length for the caller to state."""
    head = [f"HTTP/1.1 {status} X"]
    if length:
        head.append(f"Content-Length: {len(body)}")
    head += [f"{k}: {v}" for k, v in headers or []]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def replaying(handler: Callable[[httpx2.Request], httpx2.Response]) -> Respond:
    """A ``MockTransport`` handler as a script: its answer sent as bytes, and an exception
    it raises (``httpx2.ConnectError``...) as a connection closed without an answer."""

    async def respond(seen: Seen) -> bytes | None:
        request = httpx2.Request(seen.method, "http://127.0.0.1" + seen.target,
                                 headers=seen.headers, content=seen.body)
        try:
            response = handler(request)
            if inspect.isawaitable(response):
                response = await response
        except Exception:
            return None
        body = response.read()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.raw
                   if k.lower() != b"content-length"]
        return raw_response(response.status_code, body, headers)

    return respond
