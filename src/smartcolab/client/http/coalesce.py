"""A request's head and body in one ``send``: a network backend for httpcore2.

httpcore2 writes an HTTP/1.1 request as its head, then its body: two segments, and
the server may wake for the head, parse it, start the request and then wait again
for the body.  This backend's streams hold a request's head (a small first write
after a read or a new connection) and send it with the next write, or before the
next read, whichever comes first, so a small request leaves as one segment.
Larger writes (uploads) are not held; reads, TLS and everything else are the
wrapped backend's.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore2

__all__ = ["HOLD_BYTES", "CoalescingBackend", "coalescing_transport"]

# A request head is a few hundred bytes; anything this large is sent at once.
HOLD_BYTES = 16 * 1024


class _Stream(httpcore2.AsyncNetworkStream):
    def __init__(self, stream: httpcore2.AsyncNetworkStream) -> None:
        self._stream = stream
        self._held = b""
        self._fresh = True  # the next write starts a request

    async def _flush(self, timeout: float | None) -> None:
        if self._held:
            held, self._held = self._held, b""
            await self._stream.write(held, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self._fresh and not self._held and 0 < len(buffer) < HOLD_BYTES:
            self._fresh = False
            self._held = buffer
            return
        self._fresh = False
        if self._held:
            buffer, self._held = self._held + buffer, b""
        if buffer:
            await self._stream.write(buffer, timeout)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        await self._flush(timeout)
        self._fresh = True
        return await self._stream.read(max_bytes, timeout)

    async def aclose(self) -> None:
        self._held = b""
        await self._stream.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore2.AsyncNetworkStream:
        await self._flush(timeout)
        return _Stream(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class CoalescingBackend(httpcore2.AsyncNetworkBackend):
    """Wraps another backend (httpcore2's default): its streams hold request heads."""

    def __init__(self, backend: httpcore2.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore2.AsyncNetworkStream:
        return _Stream(await self._backend.connect_tcp(host, port, timeout, local_address,
                                                       socket_options))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore2.AsyncNetworkStream:
        return _Stream(await self._backend.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def coalescing_transport(**kwargs: Any) -> Any:
    """``httpx2.AsyncHTTPTransport(**kwargs)`` whose connections send a small request as
    one segment; a plain transport if this httpx2 keeps its pool elsewhere."""
    import httpx2

    transport = httpx2.AsyncHTTPTransport(**kwargs)
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(pool, httpcore2.AsyncConnectionPool) and backend is not None:
        pool._network_backend = CoalescingBackend(backend)
    return transport
