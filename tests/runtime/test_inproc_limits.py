"""Abuse limits in process, with a fake clock: exact buckets and lockouts, no sleeping.

Each test speaks from its own peer address (``rt.http()`` picks a fresh one), so no
test shares a bucket or a lockout with another; the clock only moves when a test
says so, so "after the lockout" is exact instead of a sleep on a loaded machine.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.inproc import InProcRuntime, inproc_runtime

pytestmark = pytest.mark.anyio

RATE, BURST = 2.0, 4
FAILURES, WINDOW_S, LOCKOUT_S = 3, 60.0, 30.0


@pytest.fixture(scope="module")
async def rt(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InProcRuntime]:
    async with inproc_runtime(
            Path(tmp_path_factory.mktemp("inproc-limits")),
            rate_limit_per_s=RATE, rate_burst=BURST, lockout_failures=FAILURES,
            lockout_window_s=WINDOW_S, lockout_s=LOCKOUT_S, max_body_bytes=4096,
            max_header_bytes=4096, max_query_bytes=1024,
            allow_cidrs=["198.18.0.0/15", "10.1.0.0/16", "127.0.0.0/8"],
            trusted_proxies=["127.0.0.0/8"]) as runtime:
        yield runtime


def error(r: object) -> dict[str, object]:
    body: dict[str, object] = r.json()["error"]  # type: ignore[attr-defined]
    return body


async def test_the_burst_then_one_request_per_refill(rt: InProcRuntime) -> None:
    async with rt.http() as http:
        assert [(await http.get("/health")).status_code for _ in range(BURST)] == [200] * BURST
        refused = await http.get("/health")
        assert refused.status_code == 429
        assert error(refused)["details"] == {"reason": "rate_limit", "retry_after": 1}
        assert refused.headers["Retry-After"] == "1"
        rt.clock.advance(1 / RATE)
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/health")).status_code == 429
        rt.clock.advance(BURST / RATE)  # a full bucket again, never more than the burst
        statuses = [(await http.get("/health")).status_code for _ in range(BURST + 1)]
        assert statuses == [200] * BURST + [429]
    async with rt.http() as other:
        assert (await other.get("/health")).status_code == 200


async def test_failed_auth_locks_the_address_out_until_the_lockout_ends(
        rt: InProcRuntime) -> None:
    wrong = {"Authorization": "Bearer not-the-secret"}
    async with rt.http() as me, rt.http(headers=rt.bearer) as someone_else:
        for _ in range(FAILURES):
            rt.clock.advance(1 / RATE)  # stay clear of the rate limit
            assert (await me.get("/probe", headers=wrong)).status_code == 401
        locked = await me.get("/probe", headers=wrong)
        assert locked.status_code == 429
        assert error(locked)["details"] == {"reason": "auth_lockout",
                                            "retry_after": int(LOCKOUT_S)}
        assert locked.headers["Retry-After"] == str(int(LOCKOUT_S))
        assert rt.secret not in locked.text
        # The right secret is never locked out by failures it did not make.
        rt.clock.advance(1 / RATE)
        assert (await me.get("/sessions", headers=rt.bearer)).status_code == 200
        assert (await someone_else.get("/sessions")).status_code == 200
        rt.clock.advance(LOCKOUT_S - 2)
        assert (await me.get("/probe", headers=wrong)).status_code == 429
        rt.clock.advance(2)
        assert (await me.get("/probe", headers=wrong)).status_code == 401
    lines = (rt.config.state_dir / "audit.log").read_text().splitlines()
    assert any(json.loads(line)["event"] == "lockout" for line in lines)


async def test_failures_outside_the_window_do_not_add_up(rt: InProcRuntime) -> None:
    wrong = {"Authorization": "Bearer nope"}
    async with rt.http() as me:
        for _ in range(FAILURES * 2):
            assert (await me.get("/probe", headers=wrong)).status_code == 401
            rt.clock.advance(WINDOW_S / (FAILURES - 1) + 0.1)
        assert (await me.get("/sessions", headers=rt.bearer)).status_code == 200


async def test_a_success_resets_the_failure_count(rt: InProcRuntime) -> None:
    wrong = {"Authorization": "Bearer nope"}
    async with rt.http() as me:
        for _ in range(FAILURES * 2):
            assert (await me.get("/sessions", headers=wrong)).status_code == 401
            assert (await me.get("/sessions", headers=rt.bearer)).status_code == 200
            rt.clock.advance(2 / RATE)


async def test_allowlist_uses_the_peer_or_the_trusted_proxys_header(rt: InProcRuntime) -> None:
    async with rt.http(peer="192.0.2.7") as outsider:
        r = await outsider.get("/health")
    assert r.status_code == 403 and "192.0.2.7" in str(error(r)["message"])
    # A trusted proxy's forwarded address is the client (by default no proxy is trusted,
    # only the runtime's own tunnel agent, by pid: this runtime names loopback).
    async with rt.http(peer="127.0.0.1") as agent:
        assert (await agent.get("/health", headers={"X-Forwarded-For": "10.1.9.9"})
                ).status_code == 200
        spoof = await agent.get("/health", headers={"X-Forwarded-For": "10.1.0.1, 192.0.2.8"})
        assert spoof.status_code == 403
    # Any other peer's forwarding header is ignored.
    async with rt.http(peer="198.18.200.1") as direct:
        r = await direct.get("/health", headers={"X-Forwarded-For": "192.0.2.9"})
        assert r.status_code == 200


async def chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def test_sizes_of_body_headers_and_query(rt: InProcRuntime) -> None:
    async with rt.http(headers=rt.bearer) as http:
        # Each request is a refill apart: only the size limits are under test here.
        rt.clock.advance(1 / RATE)
        declared = await http.post("/sessions", content=b"x" * 5000)
        assert declared.status_code == 413 and "4096" in str(error(declared)["message"])
        rt.clock.advance(1 / RATE)
        streamed = await http.post("/sessions", content=chunks(b"y" * 6000))
        assert "content-length" not in {k.lower() for k in streamed.request.headers}
        assert streamed.status_code == 413 and error(streamed)["code"] == "payload_too_large"
        rt.clock.advance(1 / RATE)
        upload = await http.put("/files/content", params={"path": "limits/big.bin"},
                                content=b"z" * 6000)
        assert upload.status_code == 200, upload.text  # the streamed route has its own limit
        rt.clock.advance(1 / RATE)
        big_headers = await http.get("/health", headers={"X-Big": "h" * 5000})
        assert big_headers.status_code == 431
        assert error(big_headers)["code"] == "headers_too_large"
        rt.clock.advance(1 / RATE)
        long_query = await http.get("/health", params={"q": "a" * 1100})
        assert long_query.status_code == 413
    assert [s.name for s in rt.state.manager.sessions.values()] == []
