"""A loopback TCP proxy that cuts connections after N bytes, for resume/retry tests.

    with CutProxy(port, down_after=1_000_000, cuts=2) as proxy:
        client = RuntimeClient(proxy.url, secret)   # the first 2 big streams die

``down_after`` cuts a connection once that many bytes went server -> client,
``up_after`` once that many went client -> server; only the first ``cuts``
connections to carry that much are cut (``None`` = every one), later ones pass
through untouched.
``hold_after`` stalls every connection once that many bytes went server -> client,
until ``release()`` (a stream that hangs mid-body, for tests of stopping).
The cut is abrupt (RST), like a tunnel dropping.  Threads only, no event loop, so
it works under any test style.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType

_BUF = 64 * 1024


class CutProxy:
    def __init__(self, target_port: int, *, target_host: str = "127.0.0.1",
                 down_after: int | None = None, up_after: int | None = None,
                 cuts: int | None = 1, hold_after: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.down_after = down_after
        self.up_after = up_after
        self.cuts_left = cuts
        self.hold_after = hold_after
        self.held = 0  # connections that reached hold_after and were stalled
        self._released = threading.Event()
        self.connections = 0
        self.cut_count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> CutProxy:
        self._spawn(self._accept_loop)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def release(self) -> None:
        """Let stalled connections (and later ones) go on."""
        self._released.set()

    def close(self) -> None:
        self._stop.set()
        self._released.set()
        self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)  # wakes a pump blocked in recv() on it
            with contextlib.suppress(OSError):
                s.close()
        for t in self._threads:
            t.join(5)

    def _spawn(self, target: object, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self.connections += 1
                self._socks += [client, upstream]
            state = {"closed": False}
            self._spawn(self._pump, upstream, client, self.down_after, state, self.hold_after)
            self._spawn(self._pump, client, upstream, self.up_after, state)

    def _pump(self, src: socket.socket, dst: socket.socket, limit: int | None,
              state: dict[str, bool], hold: int | None = None) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(_BUF)
                if hold is not None and data and sent + len(data) >= hold:
                    dst.sendall(data[:hold - sent])
                    sent, data = hold, data[hold - sent:]
                    hold = None
                    with self._lock:
                        self.held += 1
                    self._released.wait()
                    if self._stop.is_set():
                        return
                    if not data:
                        continue
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                if limit is not None and sent + len(data) >= limit and self._take_cut():
                    dst.sendall(data[:limit - sent])
                    self._reset(src, dst, state)
                    return
                dst.sendall(data)
                sent += len(data)
        except OSError:
            self._reset(src, dst, state)

    def _take_cut(self) -> bool:
        """Whether this connection, which just carried ``limit`` bytes, is cut: the first
        ``cuts`` connections to get that far are (small requests on other connections,
        such as the client's loopback lane, never reach the limit and take no cut)."""
        with self._lock:
            if self.cuts_left is not None:
                if self.cuts_left <= 0:
                    return False
                self.cuts_left -= 1
            self.cut_count += 1
            return True

    def _reset(self, a: socket.socket, b: socket.socket, state: dict[str, bool]) -> None:
        with self._lock:
            if state["closed"]:
                return
            state["closed"] = True
        for s in (a, b):
            with contextlib.suppress(OSError):
                # Linger 0: close sends RST, as a dropped tunnel does.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                # Wakes the other pump blocked in recv() on this socket; a bare close()
                # would wait for it and the peer would see nothing.
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
