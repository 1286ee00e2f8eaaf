"""What a backend supplies to a download, and what a download hands back.

A backend opens a byte range (:class:`RangeSource`, and :class:`SpanSource` for the
closed spans of a parallel download) and answers it as a :class:`RangeReply`; a
download, one stream or several, hands back a :class:`Fetched` ``.part`` file or stops
(:class:`Stopped`).  The limits both ways of downloading share live here too.
"""

from __future__ import annotations

import contextlib
import inspect
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from smartcolab.client.local_files import ProgressFn

MAX_TOTAL_ATTEMPTS = 100
PROGRESS_EVERY_S = 0.1
# How long a cancelled download waits for its thread to notice (one chunk, normally).
STOP_GRACE_S = 5.0


@dataclass
class RangeReply:
    """One response to "the bytes of this file from ``offset``"."""

    partial: bool  # the body starts at the offset asked (206); else it is the whole file
    version: str | None  # the validator of what is sent (ETag); None when the backend has none
    encoding: str  # Content-Encoding as sent, lower case ("" when absent)
    chunks: Iterator[bytes]  # decoded when ``encoding`` was asked for, raw otherwise
    wire: Any = None  # a callable giving bytes received on the wire so far, if known
    content_range: str | None = None  # the Content-Range header as sent (spans check it)
    # Closes the reply from another thread, waking a read blocked on it (when stopping).
    abort: Callable[[], None] | None = None


def socket_closer(response: Any) -> Callable[[], None]:
    """An ``abort`` for an HTTP response being read in another thread.

    ``shutdown`` (not ``close``) of its socket is what wakes a ``recv`` blocked on it;
    the read then fails as a transport error and the stream's owner sees it stopped.
    """
    def abort() -> None:
        stream = getattr(response, "extensions", {}).get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
    return abort


class RangeSource(Protocol):
    """What a backend supplies: open a byte range (blocking: it runs in a worker thread)."""

    def open_range(self, remote: str, offset: int, version: str | None,
                   compress: bool) -> AbstractContextManager[RangeReply]:
        """Bytes of ``remote`` from ``offset``; ``RuntimeUnreachable`` on a transport failure.

        ``compress`` asks for gzip (only ever with offset 0); ``version`` is the
        validator the bytes held so far belong to (for ``If-Range``).
        """
        ...

    def backoff(self, failures: int) -> float:
        """Seconds to wait before the next attempt after ``failures`` in a row."""
        ...


@runtime_checkable
class SpanSource(Protocol):
    """A backend that can send one closed byte range (blocking: runs in a worker thread)."""

    def open_span(self, remote: str, start: int, end: int,
                  version: str | None) -> AbstractContextManager[Any]:
        """Bytes ``[start, end]`` (inclusive) of ``remote`` as a ``RangeReply``."""
        ...

    def backoff(self, failures: int) -> float:
        ...


@dataclass(frozen=True)
class Fetched:
    """A download held in its ``.part`` file, fsynced, not yet verified or published."""

    part: Path
    meta: Path
    size: int
    sha256: str
    version: str | None
    resumed_from: int
    attempts: int
    wire_bytes: int
    compressed: bool


class Stopped(Exception):
    """The caller went away (cancelled); the thread stops at its next chunk."""


async def report(progress: ProgressFn | None, done: int, total: int | None) -> None:
    """Call a progress callback, awaiting it if it is a coroutine function."""
    if progress is None:
        return
    maybe = progress(done, total)
    if inspect.isawaitable(maybe):
        await maybe
