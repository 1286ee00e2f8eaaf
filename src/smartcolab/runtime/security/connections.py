"""Connection hygiene under uvicorn: header deadline, per-address cap, fd limit, quiet errors.

Limits in ``limits.py`` see requests; a slowloris client never finishes one.  So,
at the connection level (uvicorn's HTTP/1.1 protocol, subclassed: httptools' where it is
installed, h11's otherwise or with ``SMARTCOLAB_HTTP=h11``):

* a request's headers must arrive within ``header_timeout_s`` of its first byte (or
  of the connection opening): a connection trickling a header forever is closed;
* one address holds at most ``max_connections_per_client`` connections at once;
  more are answered 429 and closed at once;
* a response's head and body leave as one segment, sent when the response completes;
* ``RLIMIT_NOFILE`` is raised to its hard limit at start (1,024 is a common soft one);
* when the process runs out of descriptors anyway, ``accept()`` fails in a loop:
  the same error is logged once per interval with a count, not as a traceback
  per attempt.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from smartcolab.shared.env import HTTP as HTTP_ENV

log = logging.getLogger("smartcolab.runtime")
QUIET_INTERVAL_S = 30.0
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_OVER_CAP = (b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
             b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s")
_OVER_CAP_BODY = (b'{"error":{"code":"rate_limited","message":"too many open connections '
                  b'from this address; close some and retry","details":{"reason":'
                  b'"connection_cap"}}}')


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return (before, after)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return (-1, -1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return soft, target
        except (ValueError, OSError):
            return soft, soft
    return soft, soft


class ConnectionCounter:
    """Open connections per client address (the TCP peer), thread-safe."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.refused = 0

    def acquire(self, addr: str) -> bool:
        with self._lock:
            if self.cap > 0 and self._open[addr] >= self.cap:
                self.refused += 1
                return False
            self._open[addr] += 1
            return True

    def release(self, addr: str) -> None:
        with self._lock:
            self._open[addr] -= 1
            if self._open[addr] <= 0:
                del self._open[addr]

    def open(self, addr: str) -> int:
        with self._lock:
            return self._open.get(addr, 0)


class CoalescingTransport:
    """A transport that sends what is written in one event-loop turn as one ``send``.

    uvicorn writes a response's status line and headers, then its body, as two writes:
    two segments, and on a loaded machine the client wakes for the headers and again
    for the body.  Small writes are held until the end of the turn (``call_soon``) or
    until they reach ``FLUSH_BYTES``; large writes (file downloads) go out at once.
    Everything else is the wrapped transport's.
    """

    FLUSH_BYTES = 64 * 1024

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held = bytearray()
        self._flush_at: asyncio.Handle | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._held and len(data) >= self.FLUSH_BYTES:
            self._transport.write(data)
            return
        self._held += data
        if len(self._held) >= self.FLUSH_BYTES:
            self.flush()
        elif self._flush_at is None:
            self._flush_at = self._loop.call_soon(self.flush)

    def flush(self) -> None:
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        if self._held:
            data, self._held = bytes(self._held), bytearray()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held.clear()
        self._transport.abort()

    # Asked on every response: spelled out, as a lookup through __getattr__ costs ~15x a call.
    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


if TYPE_CHECKING:
    class _UvicornHTTP(asyncio.Protocol):
        """What the guard uses of uvicorn's protocols (h11's and httptools')."""

        loop: asyncio.AbstractEventLoop
        transport: asyncio.Transport
        client: tuple[str, int] | None
        cycle: Any

        def on_response_complete(self) -> None: ...
        def _unset_keepalive_if_required(self) -> None: ...
else:
    _UvicornHTTP = asyncio.Protocol


class GuardedProtocol(_UvicornHTTP):
    """A header deadline, a per-address connection cap and one-segment responses, mixed in
    before one of uvicorn's HTTP/1.1 protocols (h11's here, httptools' in
    ``httptools_protocol.py``)."""

    header_timeout_s: float = 10.0
    counter: ConnectionCounter = ConnectionCounter(0)
    _header_timer: asyncio.TimerHandle | None = None
    _counted: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast(asyncio.Transport, CoalescingTransport(transport,
                                                                            self.loop)))
        addr = self.client[0] if self.client else "unknown"
        if not self.counter.acquire(addr):
            transport.write(_OVER_CAP % (len(_OVER_CAP_BODY), _OVER_CAP_BODY))
            transport.close()
            return
        self._counted = addr
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._counted is not None:
            self.counter.release(self._counted)
            self._counted = None
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        # The whole response is written: send it now, in its one segment, instead of at
        # the end of the loop turn, after the middleware's audit line and whatever else
        # was queued before it.
        flush = getattr(self.transport, "flush", None)
        if flush is not None:
            flush()
        super().on_response_complete()
        if self._body_pending() and not self.transport.is_closing():
            # Answered before the request's body came (a refusal: 401, 413): the rest of
            # that body, like a request's headers, is due within the header deadline; the
            # long keep-alive is for idle connections, not for one a client left mid-body.
            self._unset_keepalive_if_required()
            self._arm()

    def _body_pending(self) -> bool:
        """Whether the current request's body is still arriving (the parser's to say)."""
        raise NotImplementedError

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        if (before is None or before.response_complete) and self._header_timer is None:
            self._arm()  # the first byte of a new request: its headers are now due
        super().data_received(data)
        if self.cycle is not before:
            self._disarm()  # a complete request line and headers were parsed

    def _arm(self) -> None:
        if self.header_timeout_s > 0 and self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being served; its body has its own idle limits
        if not self.transport.is_closing():
            self.transport.close()


class GuardedH11Protocol(GuardedProtocol, H11Protocol):
    """uvicorn's h11 protocol, guarded: the fallback where httptools is missing, and
    ``SMARTCOLAB_HTTP=h11``.  Its head size bound is h11's own
    (``h11_max_incomplete_event_size``)."""

    def _body_pending(self) -> bool:
        return self.conn.their_state is h11.SEND_BODY


def http_parser() -> str:
    """``"httptools"`` when it is importable and not switched off by ``SMARTCOLAB_HTTP=h11``,
    else ``"h11"``."""
    if os.environ.get(HTTP_ENV, "").strip().lower() == "h11":
        return "h11"
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def protocol_class(*, header_timeout_s: float, max_per_client: int,
                   parser: str | None = None) -> type[GuardedProtocol]:
    """A protocol class for one server, with its own counter; ``parser`` as ``http_parser``
    chooses when not given."""
    base: type[GuardedProtocol] = GuardedH11Protocol
    if (parser or http_parser()) == "httptools":
        from smartcolab.runtime.security.httptools_protocol import GuardedHttpToolsProtocol

        base = GuardedHttpToolsProtocol
    return type(f"Runtime{base.__name__.removeprefix('Guarded')}", (base,), {
        "header_timeout_s": header_timeout_s, "counter": ConnectionCounter(max_per_client)})


class QuietErrors:
    """Logs each kind of repeated error once per interval, with how many were left out."""

    def __init__(self, interval_s: float = QUIET_INTERVAL_S, clock: Any = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._skipped: Counter[str] = Counter()

    def allow(self, key: str) -> tuple[bool, int]:
        """(log it now?, how many of this kind were skipped since the last one)."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._skipped[key] += 1
            return False, 0
        self._last[key] = now
        return True, self._skipped.pop(key, 0)

    def handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """An event-loop exception handler: accept() errors and the like, rate-limited."""
        exc = context.get("exception")
        message = str(context.get("message", "event loop error"))
        key = f"{message}|{type(exc).__name__}|{getattr(exc, 'errno', '')}"
        ok, skipped = self.allow(key)
        if not ok:
            return
        more = f" ({skipped} more like it in the last {self.interval_s:.0f} s)" if skipped else ""
        if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS:
            log.error("%s: %s%s; the server keeps serving open connections and retries",
                      message, exc, more)
        else:
            log.error("%s%s", message, more, exc_info=exc if exc is not None else None)


class QuietFilter(logging.Filter):
    """A logging filter: records caused by running out of descriptors, once per interval."""

    def __init__(self, quiet: QuietErrors) -> None:
        super().__init__()
        self.quiet = quiet

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not (isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS):
            return True
        ok, skipped = self.quiet.allow(f"{record.name}|{record.msg}|{exc.errno}")
        if ok:
            record.exc_info = None  # one line, no traceback
            note = f" [{skipped} repeats skipped]" if skipped else ""
            record.msg = f"{record.msg} ({str(exc).replace('%', '%%')}){note}"
        return ok
