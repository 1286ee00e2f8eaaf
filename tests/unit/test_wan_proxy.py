"""bench/wan_proxy.py: bytes intact both ways, order kept under delay, the token bucket's sums.

Real sockets on 127.0.0.1; the only time assertion is a lower bound (a delayed round trip
cannot be faster than twice the delay), which load can only make truer.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import time
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "wan_proxy.py"
_spec = importlib.util.spec_from_file_location("wan_proxy", _PATH)
assert _spec and _spec.loader
wan = importlib.util.module_from_spec(_spec)
sys.modules["wan_proxy"] = wan
_spec.loader.exec_module(wan)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_arithmetic() -> None:
    clock = FakeClock()
    bucket = wan.TokenBucket(rate=1000.0, burst=500.0, clock=clock)
    assert bucket.reserve(500) == 0.0           # the full burst goes at once
    assert bucket.reserve(250) == pytest.approx(0.25)  # then 250 bytes of debt at 1000 B/s
    clock.now += 0.25                            # debt paid back exactly
    assert bucket.reserve(100) == pytest.approx(0.1)
    clock.now += 10.0                            # refill stops at the burst, not 10,000
    assert bucket.reserve(500) == 0.0
    assert bucket.reserve(1) == pytest.approx(0.001)
    with pytest.raises(ValueError):
        wan.TokenBucket(rate=0, burst=1)


def test_token_bucket_paces_a_long_run_at_rate() -> None:
    clock = FakeClock()
    bucket = wan.TokenBucket(rate=20e6, burst=64 * 1024, clock=clock)
    start = clock.now
    for _ in range(1000):                        # 64 MB in 64 KiB chunks, sleeping as told
        clock.now += bucket.reserve(64_000)
    elapsed = clock.now - start
    # 64 MB at 20 MB/s is 3.2 s, less the initial burst's head start.
    assert elapsed == pytest.approx((64e6 - 64 * 1024) / 20e6)


async def _echo_server() -> tuple[asyncio.Server, int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def _through_proxy(profile: object, payload: bytes) -> tuple[bytes, object]:
    server, port = await _echo_server()
    proxy = wan.WanProxy(("127.0.0.1", port), profile)
    pport = await proxy.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", pport)

        async def send() -> None:
            for i in range(0, len(payload), 10_000):   # many writes, so many queued chunks
                writer.write(payload[i:i + 10_000])
                await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send())
        got = await asyncio.wait_for(reader.read(-1), 60)  # until the echo's EOF comes back
        await sender
        writer.close()
        return got, proxy.stats
    finally:
        await proxy.close()
        server.close()


def test_bytes_intact_both_ways_under_delay_and_cap() -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    profile = wan.Profile("t", delay_s=0.02, rate_bytes_s=200e6)
    got, stats = asyncio.run(_through_proxy(profile, payload))
    assert got == payload                          # same bytes, same order, nothing lost
    assert stats.bytes_up == len(payload) and stats.bytes_down == len(payload)
    assert stats.connections == 1


def test_order_kept_and_round_trip_costs_two_delays() -> None:
    async def go() -> tuple[list[int], float, object]:
        server, port = await _echo_server()
        proxy = wan.WanProxy(("127.0.0.1", port), wan.Profile("t", delay_s=0.1))
        pport = await proxy.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", pport)
            t0 = time.monotonic()
            writer.write(b"GET / HTTP/1.1\r\n\r\n")
            await writer.drain()
            await reader.readexactly(18)
            rtt = time.monotonic() - t0
            for i in range(200):                   # small writes, each its own chunk
                writer.write(b"%05d" % i)
                await writer.drain()
                if i % 20 == 0:
                    await asyncio.sleep(0.005)
            writer.write_eof()
            data = await asyncio.wait_for(reader.read(-1), 60)
            writer.close()
            return [int(data[i:i + 5]) for i in range(0, len(data), 5)], rtt, proxy.stats
        finally:
            await proxy.close()
            server.close()

    seq, rtt, stats = asyncio.run(go())
    assert seq == list(range(200))
    assert rtt >= 0.2                              # 100 ms each way: never faster
    # One request line, then client turns of raw bytes after the echo answered (how many
    # depends on how the writes and echoes interleave; at least one).
    assert stats.http_requests == 1 and stats.other_client_turns >= 1


def _load(name: str) -> object:
    spec = importlib.util.spec_from_file_location(name, _PATH.parent / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_report_rows_give_each_wan_figure_its_baseline() -> None:
    report = _load("report")

    def profile(rtt_ms: float, ms: float, counted: bool) -> dict[str, object]:
        call = {"median_ms": ms, "per_call": {"http_requests": 1.0, "other_client_turns": 0.0,
                                              "new_connections": 0.0} if counted else None}
        return {"rtt_ms": rtt_ms, "nominal_mb_s": 20.0 if counted else None,
                "http_1p1": call, "bridge_1p1": call, "jupyter_bridge_1p1": call,
                "print_line": {"median_ms": ms}, "chunked": {"batches": 10,
                "overhead_per_batch_ms": ms, "trivial_job_ms": ms / 2},
                "transfer": {"size_mb": 64, "download_mb_s": 18.0, "curl_download_mb_s": 20.0,
                             "upload_mb_s": 10.0, "curl_upload_mb_s": 20.0, "requests": {}}}

    wan = {"profiles": {"loopback": profile(0, 10.0, False), "150ms": profile(300, 320.0, True)},
           "skipped": {"1pct-loss": "netem unavailable"}}
    rows, notes = report.rows_of({"wan": {"ok": True, "data": wan}})
    by = {r["measure"]: r for r in rows}
    call = by["[wan 150ms] signed POST /jobs?wait 1+1 (1 HTTP req + 0 other client turns, "
              "0 new conn per call)"]
    assert call["baseline"] == 310.0 and call["ratio"] == pytest.approx(320 / 310)
    line = by["[wan 150ms] kernel print -> line in a get_job long-poll answer"]
    assert line["baseline"] == 160.0                # loopback + one way
    down = next(r for r in rows if r["measure"].startswith("[wan 150ms] download"))
    assert down["ratio"] == pytest.approx(0.9)
    assert all(r["baseline"] is None for r in rows if r["measure"].startswith("[wan loopback] s"))
    assert notes == ["bench_wan 1pct-loss: netem unavailable"]


def test_the_link_cap_is_one_bucket_per_direction_for_every_connection() -> None:
    capped = wan.WanProxy(("127.0.0.1", 9), wan.PROFILES["150ms-20MBps"])
    up, down = capped.links[True], capped.links[False]
    assert up is not None and down is not None and up is not down
    assert up.rate == 50e6 and wan.PROFILES["150ms-20MBps"].rate_bytes_s == 20e6
    assert wan.WanProxy(("127.0.0.1", 9), wan.PROFILES["50ms"]).links == {False: None, True: None}
