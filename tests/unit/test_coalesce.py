"""client/http/coalesce.py: a small request leaves as one write, large ones are not held."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import anyio
import httpcore2
import httpx2

from smartcolab.client.http.client import RuntimeClient
from smartcolab.client.http.coalesce import HOLD_BYTES, CoalescingBackend, coalescing_transport

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class _Recorder(httpcore2.AsyncNetworkStream):
    def __init__(self, writes: list[bytes]) -> None:
        self.writes = writes
        self._answers = 0

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        self.writes.append(buffer)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        self._answers += 1
        return ANSWER

    async def aclose(self) -> None:
        pass

    def get_extra_info(self, info: str) -> Any:
        return None


class _Backend(httpcore2.AsyncNetworkBackend):
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore2.AsyncNetworkStream:
        return _Recorder(self.writes)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


def _client(backend: _Backend) -> httpx2.AsyncClient:
    pool = httpcore2.AsyncConnectionPool(network_backend=CoalescingBackend(backend))
    transport = httpx2.AsyncHTTPTransport()
    transport._pool = pool
    return httpx2.AsyncClient(transport=transport, base_url="http://runtime")


def test_a_small_request_is_one_write() -> None:
    async def go() -> list[bytes]:
        backend = _Backend()
        async with _client(backend) as client:
            for _ in range(2):  # a kept-alive connection: each request starts fresh
                r = await client.post("/jobs", json={"job_id": "j1", "code": "1+1"})
                assert r.json() == {}
            r = await client.get("/health")
        return backend.writes

    writes = anyio.run(go)
    posts = [w for w in writes if w.startswith(b"POST")]
    assert len(posts) == 2 and all(w.endswith(b'"code":"1+1"}') for w in posts)
    assert len(writes) == 3 and writes[2].startswith(b"GET /health")


def test_a_large_body_is_not_held() -> None:
    async def go() -> list[bytes]:
        backend = _Backend()
        async with _client(backend) as client:
            await client.post("/files", content=b"x" * (4 * HOLD_BYTES))
        return backend.writes

    writes = anyio.run(go)
    # The head waits for the first body write and goes with it; nothing is lost.
    assert b"".join(writes).endswith(b"x" * (4 * HOLD_BYTES))
    assert writes[0].startswith(b"POST /files")


def test_the_runtime_client_uses_it() -> None:
    transport = coalescing_transport()
    assert isinstance(transport._pool._network_backend, CoalescingBackend)
    client = RuntimeClient("http://127.0.0.1:9", "secret-" * 4)
    assert isinstance(client._http._transport._pool._network_backend,  # type: ignore[attr-defined]
                      CoalescingBackend)
