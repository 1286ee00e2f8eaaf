"""A small TCP proxy that makes loopback look like a long link: delay and bandwidth caps.

Each direction of each connection is one pipe: a reader takes a chunk from one socket,
paces it through a token bucket (the per-stream bandwidth cap, as a single stream through
a tunnel sees it), then through the link's bucket shared by every connection in that
direction (the link's total capacity), and queues it to be written ``delay`` seconds
after it was read.  One
queue per direction keeps the byte order; a round trip therefore costs 2 x delay.  Queued
bytes are bounded (the link's buffer), so a fast sender is held back like TCP would be.

The proxy counts what crosses it: connections, bytes, and *client turns* -- a chunk the
client sends after the server has spoken (or first on its connection).  Without HTTP
pipelining a client turn is one request, so a turn whose first bytes are an HTTP request
line counts as one HTTP request; other turns (WebSocket frames, TLS) are counted apart.

    python bench/wan_proxy.py --target 127.0.0.1:8000 --delay 0.05 --rate-mbps 20 --link-mbps 50
    # prints {"port": N} once listening; then answers "stats" / "reset" lines on stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass

READ_SIZE = 64 * 1024
# The bucket's credit, in seconds of the rate: late wake-ups on a loaded machine are caught
# up within it instead of being lost, at the price of bursts this long at loopback speed.
BURST_S = 0.05
# A request line: METHOD SP target SP HTTP/1.x -- checked on a turn's first bytes only.
REQUEST_LINE = re.compile(rb"^[A-Z]{3,10} \S+ HTTP/1\.[01]\r\n")
Clock = Callable[[], float]


class TokenBucket:
    """``rate`` bytes/s with ``burst`` bytes of credit; ``reserve`` says how long to wait.

    Debt is allowed: a reservation larger than the credit is granted at once and the
    caller waits until the bucket would have refilled to zero, so pacing is exact over
    any run of reservations and needs no loop.
    """

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens = burst
        self._last = clock()

    def reserve(self, n: int) -> float:
        """Take ``n`` bytes of credit; returns the seconds to wait before sending them."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


@dataclass
class Stats:
    connections: int = 0
    http_requests: int = 0
    other_client_turns: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass(frozen=True)
class Profile:
    name: str
    delay_s: float = 0.0          # each way
    rate_bytes_s: float | None = None  # per stream, per direction
    link_bytes_s: float | None = None  # all streams together, per direction

    @property
    def rtt_s(self) -> float:
        return 2 * self.delay_s


PROFILES = {p.name: p for p in (Profile("loopback"), Profile("50ms", 0.050),
                                Profile("150ms-20MBps", 0.150, 20e6, 50e6))}


class _Turns:
    """Per connection: has the server spoken since the client last did?"""

    def __init__(self) -> None:
        self.server_spoke = True


class _Pipe:
    """One direction of one connection: read, pace, delay, write, in order."""

    def __init__(self, proxy: WanProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 upstream: bool, turns: _Turns, abort: Callable[[], None]) -> None:
        self.proxy, self.reader, self.writer = proxy, reader, writer
        self.upstream, self.turns, self.abort = upstream, turns, abort
        self.queue: deque[tuple[float, bytes]] = deque()
        self.queued = 0
        self.changed = asyncio.Event()
        p = proxy.profile
        self.bucket = (TokenBucket(p.rate_bytes_s, max(READ_SIZE, p.rate_bytes_s * BURST_S))
                       if p.rate_bytes_s else None)
        self.link = proxy.links[upstream]
        # The link's buffer: what a delayed, capped stream keeps in flight, and then some.
        self.limit = max(4 << 20, int(4 * (p.rate_bytes_s or 2e8) * p.delay_s))

    def _count(self, chunk: bytes) -> None:
        stats = self.proxy.stats
        if self.upstream:
            stats.bytes_up += len(chunk)
            if self.turns.server_spoke:
                self.turns.server_spoke = False
                if REQUEST_LINE.match(chunk):
                    stats.http_requests += 1
                else:
                    stats.other_client_turns += 1
        else:
            stats.bytes_down += len(chunk)
            self.turns.server_spoke = True

    async def read_side(self) -> None:
        try:
            while chunk := await self.reader.read(READ_SIZE):
                self._count(chunk)
                if self.bucket is not None:
                    await asyncio.sleep(self.bucket.reserve(len(chunk)))
                if self.link is not None:
                    await asyncio.sleep(self.link.reserve(len(chunk)))
                while self.queued >= self.limit:
                    self.changed.clear()
                    await self.changed.wait()
                self.queue.append((time.monotonic() + self.proxy.profile.delay_s, chunk))
                self.queued += len(chunk)
                self.changed.set()
        except (ConnectionError, OSError):
            pass
        finally:
            self.queue.append((time.monotonic() + self.proxy.profile.delay_s, b""))
            self.changed.set()

    async def write_side(self) -> None:
        try:
            while True:
                while not self.queue:
                    self.changed.clear()
                    await self.changed.wait()
                due, chunk = self.queue[0]
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                self.queue.popleft()
                self.queued -= len(chunk)
                self.changed.set()
                if not chunk:  # the other side closed its sending half: pass it on
                    if self.writer.can_write_eof():
                        self.writer.write_eof()
                    return
                self.writer.write(chunk)
                await self.writer.drain()
        except (ConnectionError, OSError):
            # A reset on one side ends the connection on both, or a reader could wait forever.
            self.abort()
            self.queue.clear()
            self.queued = 0
            self.changed.set()


class WanProxy:
    """Listens on 127.0.0.1 and forwards each connection to ``target`` through the profile."""

    def __init__(self, target: tuple[str, int], profile: Profile) -> None:
        self.target, self.profile = target, profile
        self.stats = Stats()
        rate = profile.link_bytes_s
        # One bucket per direction (index: upstream?), shared by every connection.
        self.links = {d: TokenBucket(rate, max(READ_SIZE, rate * BURST_S)) if rate else None
                      for d in (False, True)}
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5)

    def reset(self) -> None:
        self.stats = Stats()

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.target)
        except OSError:
            c_writer.close()
            return
        turns = _Turns()

        def abort() -> None:
            for w in (c_writer, s_writer):
                w.transport.abort()

        up = _Pipe(self, c_reader, s_writer, True, turns, abort)
        down = _Pipe(self, s_reader, c_writer, False, turns, abort)
        try:
            await asyncio.gather(up.read_side(), up.write_side(), down.read_side(), down.write_side())
        except asyncio.CancelledError:
            pass  # the proxy is shutting down with this connection open: nothing to report
        finally:
            for w in (c_writer, s_writer):
                w.close()


async def _serve(target: tuple[str, int], profile: Profile, port: int) -> None:
    proxy = WanProxy(target, profile)
    print(json.dumps({"port": await proxy.start(port)}), flush=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        cmd = line.strip()
        if cmd == "stats":
            print(json.dumps(asdict(proxy.stats)), flush=True)
        elif cmd == "reset":
            proxy.reset()
            print("{}", flush=True)
    await proxy.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", required=True, help="host:port of the server behind the proxy")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds each way")
    ap.add_argument("--rate-mbps", type=float, default=0.0, help="MB/s per stream (0: no cap)")
    ap.add_argument("--link-mbps", type=float, default=0.0,
                    help="MB/s of all streams together, per direction (0: no cap)")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    host, _, port = args.target.rpartition(":")
    profile = Profile("cli", args.delay, args.rate_mbps * 1e6 or None, args.link_mbps * 1e6 or None)
    asyncio.run(_serve((host, int(port)), profile, args.port))


if __name__ == "__main__":
    main()
