"""Small requests to a runtime on this machine without httpx2: h11 over asyncio.

A short job's round trip is a handful of milliseconds on a loopback runtime, and
httpx2 took about 2.3 ms of CPU per request of it on the 2-core test machine
(request and URL models, auth flow, pool, anyio streams, the response's layered
iterators), against about 0.3 ms for the same signed request written with h11 on a
kept-alive asyncio connection (bench/bench_latency.py; docs/performance.md).  So a
runtime reached by plain ``http`` at a loopback address (the local daemon, a runtime
started on this machine or forwarded to it), or through the local daemon's Unix
socket (no TCP stack per message: 1.4-2.2 ms less per short job at load 2-3 than the
same server's TCP port), gets this lane for its small requests:
the whole request in one write, the answer read under the same cap and encoding
rules as ``RuntimeConnection._read_capped``.  Everything else stays on httpx2: TLS,
tunnels and proxies (a remote runtime's round trip dwarfs the difference), streamed
transfers, and any transport a caller injects.

A connection goes back to the pool only after a complete answer that keeps it alive;
an error, a timeout or a cancellation closes it, so no later request reads the rest
of an earlier answer.  An idle connection the server has closed (its keep-alive
expired) is noticed by its protocol and never reused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

# h11's own bound on a response head; the body has the caller's cap.
MAX_HEAD_BYTES = 64 * 1024
LOOPBACK_NAMES = frozenset({"localhost"})


class LaneError(Exception):
    """The request did not get a whole answer: connect, send, timeout or protocol."""


class TooBig(LaneError):
    """The answer is over the caller's cap (stated or counted)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"answer of {size} bytes or more")
        self.size = size


class Encoded(LaneError):
    """The answer came compressed although ``identity`` was asked for."""

    def __init__(self, encoding: str) -> None:
        super().__init__(f"Content-Encoding {encoding}")
        self.encoding = encoding


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def loopback_address(url: str) -> tuple[str, int] | None:
    """(host, port) when ``url`` is plain http to a loopback address."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme != "http" or not host or parts.query or parts.fragment or parts.username:
        return None
    if host not in LOOPBACK_NAMES:
        try:
            if not ipaddress.ip_address(host).is_loopback:
                return None
        except ValueError:
            return None
    return host, port or 80


class _Connection(asyncio.Protocol):
    """One kept-alive connection: bytes in go to h11, a waiter is woken for them."""

    def __init__(self) -> None:
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = time.monotonic()
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.h11.receive_data(data)
        self._wake()

    def eof_received(self) -> bool | None:
        self.h11.receive_data(b"")
        self.closed = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            # A client used from a new event loop drops the old loop's connections: with
            # that loop closed, the socket is freed when the transport is collected.
            with suppress(RuntimeError):
                self.transport.close()

    def reusable(self, expiry_s: float) -> bool:
        return (not self.closed and self.h11.our_state is h11.IDLE
                and self.h11.their_state is h11.IDLE
                and time.monotonic() - self.idle_since < expiry_s)

    async def next_event(self, loop: asyncio.AbstractEventLoop, timeout: float | None) -> h11.Event:
        """The next response event, waiting at most ``timeout`` seconds for more bytes."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            if self.closed:
                raise LaneError("the runtime closed the connection before a whole answer")
            self._waiter = loop.create_future()
            timer = loop.call_later(timeout, self._time_out) if timeout is not None else None
            try:
                await self._waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()

    def _time_out(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(LaneError("timed out waiting for the runtime's answer"))


class LoopbackLane:
    """A pool of kept-alive connections to one loopback runtime, for small requests."""

    def __init__(self, host: str, port: int, *, max_connections: int,
                 keepalive_s: float, unix_path: str | None = None) -> None:
        self.host, self.port, self.unix_path = host, port, unix_path
        self.host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.keepalive_s = keepalive_s
        self.max_connections = max_connections
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._loop: asyncio.AbstractEventLoop | None = None

    async def request(self, method: str, target: str, headers: Sequence[tuple[str, str]],
                      body: bytes, *, max_bytes: int, connect_timeout: float,
                      read_timeout: float | None) -> Answer:
        """Send one request (``target``: the path and query); its whole answer."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Connections and the semaphore belong to the loop that made them: a client
            # used from a new loop (a new anyio.run) starts afresh.
            self.close()
            self._loop = loop
            self._slots = asyncio.Semaphore(self.max_connections)
        async with self._slots:
            conn = await self._connection(loop, connect_timeout)
            try:
                answer = await self._exchange(conn, loop, method, target, headers, body,
                                              max_bytes, read_timeout)
            except BaseException:
                conn.close()
                raise
            if conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
                conn.h11.start_next_cycle()
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
            else:  # Connection: close, or an answer h11 will not reuse
                conn.close()
            return answer

    async def _connection(self, loop: asyncio.AbstractEventLoop,
                          connect_timeout: float) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if conn.reusable(self.keepalive_s):
                return conn
            conn.close()
        connecting = (loop.create_unix_connection(_Connection, self.unix_path)
                      if self.unix_path else loop.create_connection(_Connection, self.host,
                                                                    self.port))
        try:
            _, conn = await asyncio.wait_for(connecting, connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise LaneError(f"cannot connect to {self.unix_path or self.host_header}: "
                            f"{exc or type(exc).__name__}") from exc
        return conn

    async def _exchange(self, conn: _Connection, loop: asyncio.AbstractEventLoop, method: str,
                        target: str, headers: Sequence[tuple[str, str]], body: bytes,
                        max_bytes: int, read_timeout: float | None) -> Answer:
        try:
            data = conn.h11.send(h11.Request(
                method=method, target=target,
                headers=[("Host", self.host_header), ("Content-Length", str(len(body))),
                         *headers]))
            if body:
                data += conn.h11.send(h11.Data(data=body))
            data += conn.h11.send(h11.EndOfMessage())
            assert conn.transport is not None
            conn.transport.write(data)
            event = await conn.next_event(loop, read_timeout)
            while isinstance(event, h11.InformationalResponse):
                event = await conn.next_event(loop, read_timeout)
            if not isinstance(event, h11.Response):
                raise LaneError(f"the runtime answered with {type(event).__name__}")
            status, head = event.status_code, list(event.headers)
            _check_head(head, max_bytes)
            chunks, size = [], 0
            while True:
                event = await conn.next_event(loop, read_timeout)
                if isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > max_bytes:
                        raise TooBig(size)
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    return Answer(status, head, b"".join(chunks))
                else:
                    raise LaneError(f"the answer broke off ({type(event).__name__})")
        except h11.ProtocolError as exc:
            raise LaneError(f"not an HTTP/1.1 answer: {exc}") from exc

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _check_head(head: list[tuple[bytes, bytes]], max_bytes: int) -> None:
    for name, value in head:
        if name == b"content-encoding":
            encoding = value.decode("latin-1").strip().lower()
            if encoding not in ("", "identity"):
                raise Encoded(encoding[:40])
        elif name == b"content-length" and value.isdigit() and int(value) > max_bytes:
            raise TooBig(int(value))
