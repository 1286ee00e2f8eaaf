"""The one resumable download: a backend supplies "open a byte range", this does the rest.

Bytes land in ``NAME.part`` beside ``NAME.part.json`` (which remote version they
belong to); after a drop the next attempt asks for the rest from the offset held,
so a cut costs only what was in flight.  Each backend (our runtime's
``/files/content``, a Jupyter Server's ``/files/``) implements
:class:`~smartcolab.client.transfer.source.RangeSource`; the caps on what a runtime may
make us store are enforced here, once:

* free space for the stated size is checked before the first byte is written;
* no more bytes than the stated size are accepted;
* a compressed ``Content-Encoding`` is accepted only when it was asked for (a gzip
  body sent for an identity request would be decoded without bound);
* a body of another version than the one stated aborts the download (download again).

The receive loop runs in one worker thread with blocking reads: an event-loop
round per chunk measured about a quarter more CPU per GiB (bench/bench_files.py).
The event loop only wakes every ``PROGRESS_EVERY_S`` to pass progress on, and a
cancelled caller stops the thread at its next chunk.  Several parallel streams
(``parallel``) take over where the source and the size allow.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from smartcolab.client.local_files import (
    ProgressFn,
    discard,
    hash_prefix,
    part_paths,
    resume_offset,
    write_failed,
    write_json_atomic,
)
from smartcolab.client.transfer import spans
from smartcolab.client.transfer.parallel import fetch_spans
from smartcolab.client.transfer.source import (
    MAX_TOTAL_ATTEMPTS,
    PROGRESS_EVERY_S,
    STOP_GRACE_S,
    Fetched,
    RangeReply,
    RangeSource,
    SpanSource,
    Stopped,
    report,
)
from smartcolab.client.transfer.spans import MIN_SPAN
from smartcolab.client.untrusted import DEFAULT_LIMITS, TransferLimits, ensure_free_space
from smartcolab.shared.errors import ChecksumMismatch, RuntimeMisbehaved, RuntimeUnreachable

# Start writing received data to disk every this many bytes, so the final fsync
# does not wait for the whole file (and the page cache is not filled with it).
WRITEBACK_EVERY = 64 * 1024 * 1024
ACCEPTED_ENCODINGS = ("", "identity")


@dataclass
class _Job:
    """What the thread needs and what it leaves behind; ``offset`` is read for progress."""

    source: RangeSource
    remote: str
    part: Path
    version: str | None
    total: int
    offset: int
    hasher: Any
    compress: bool
    attempts: int
    tries: int = 0
    wire: int = 0
    used_gzip: bool = False
    stop: threading.Event = field(default_factory=threading.Event)
    guard: threading.Lock = field(default_factory=threading.Lock)  # for ``abort``
    abort: Callable[[], None] | None = None  # the open reply's, while one is open

    def halt(self) -> None:
        """Stop the thread now, waking it if it is blocked in a read."""
        with self.guard:
            self.stop.set()
            if self.abort is not None:
                self.abort()


async def fetch(source: RangeSource, remote: str, final: Path, *, size: int,
                version: str | None, compress: bool = False, attempts: int = 8,
                progress: ProgressFn | None = None,
                limits: TransferLimits = DEFAULT_LIMITS, streams: int = 1,
                min_span: int = MIN_SPAN) -> Fetched:
    """Receive ``remote`` (``size`` bytes as stated, ``version``) into ``final``'s ``.part``.

    With ``streams`` > 1, a source that can send closed spans (:class:`SpanSource`)
    and at least two spans of ``min_span`` left to fetch, the rest comes over that
    many parallel streams (``transfer/parallel.py``); a gzip download is always one stream.
    """
    part, meta = part_paths(final)
    offset = await asyncio.to_thread(resume_offset, part, meta, remote, version, size)
    if (streams > 1 and not compress and spans.AVAILABLE and isinstance(source, SpanSource)
            and size - offset >= 2 * min_span):
        return await fetch_spans(source, remote, part, meta, size=size, version=version,
                                 offset=offset, streams=streams, min_span=min_span,
                                 attempts=attempts, progress=progress, limits=limits)
    await asyncio.to_thread(ensure_free_space, final.parent, size - offset, limits)
    hasher = await asyncio.to_thread(hash_prefix, part, offset) if offset else hashlib.sha256()
    job = _Job(source=source, remote=remote, part=part, version=version, total=size,
               offset=offset, hasher=hasher, compress=compress, attempts=attempts)
    write_json_atomic(meta, {"remote": remote, "etag": version, "size": size})
    try:
        await _run(job, progress)
    except (RuntimeMisbehaved, ChecksumMismatch):
        discard(part, meta)  # hostile or stale bytes are not kept for a resume
        raise
    return Fetched(part=part, meta=meta, size=job.offset, sha256=job.hasher.hexdigest(),
                   version=job.version, resumed_from=offset, attempts=job.tries,
                   wire_bytes=job.wire, compressed=job.used_gzip)


async def _run(job: _Job, progress: ProgressFn | None) -> None:
    """Run :func:`_receive` in a thread; report progress meanwhile; stop it if cancelled."""
    task = asyncio.ensure_future(asyncio.to_thread(_receive, job))
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=PROGRESS_EVERY_S)
            await report(progress, job.offset, job.total)
        task.result()
    except BaseException:
        job.halt()
        with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_GRACE_S):
            await asyncio.wait({task})
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: the caller's own exception is what propagates
        raise


def _receive(job: _Job) -> None:
    """Fetch into ``job.part`` from ``job.offset``, resuming after drops."""
    try:
        with open(job.part, "r+b" if job.offset else "wb") as f:
            f.truncate(job.offset)
            f.seek(job.offset)
            failures = 0
            while job.offset < job.total:
                job.tries += 1
                before = job.offset
                try:
                    _one_attempt(job, f)
                    if job.offset != job.total:
                        raise RuntimeUnreachable(
                            f"the download ended at {job.offset} of {job.total} bytes")
                except RuntimeUnreachable as exc:
                    if job.stop.is_set():  # its reply was closed under it: not a drop
                        raise Stopped("download stopped") from exc
                    failures = 1 if job.offset > before else failures + 1
                    if failures >= job.attempts or job.tries >= MAX_TOTAL_ATTEMPTS:
                        f.flush()
                        raise RuntimeUnreachable(
                            f"download of '{job.remote[:200]}' failed after {job.tries} attempts "
                            f"at {job.offset} of {job.total} bytes ({exc.message}); call download "
                            "again to resume from there",
                            details={"offset": job.offset, "part": str(job.part)}) from exc
                    if job.stop.wait(job.source.backoff(failures)):
                        raise Stopped("download stopped") from exc
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise write_failed(exc, job.part) from exc


def _one_attempt(job: _Job, f: Any) -> None:
    gzip_now = job.compress and job.offset == 0
    with job.source.open_range(job.remote, job.offset, job.version, gzip_now) as reply:
        _check_reply(job, reply, gzip_now)
        with job.guard:
            if job.stop.is_set():
                raise Stopped("download stopped")
            job.abort = reply.abort
        if not reply.partial and job.offset:
            # The whole file came back (no Range support, or If-Range failed): start over.
            job.offset = 0
            f.seek(0)
            f.truncate(0)
            job.hasher = hashlib.sha256()
        job.used_gzip |= reply.encoding == "gzip"
        write, update, stop = f.write, job.hasher.update, job.stop
        flushed = job.offset
        try:
            for chunk in reply.chunks:
                if job.offset + len(chunk) > job.total:
                    raise RuntimeMisbehaved(
                        f"the runtime sent more than the {job.total:,} bytes it stated for "
                        f"'{job.remote[:200]}'; the download was stopped and nothing was kept",
                        details={"stated": job.total, "remote": job.remote[:200]})
                write(chunk)
                update(chunk)
                job.offset += len(chunk)
                if stop.is_set():
                    raise Stopped("download stopped")
                if job.offset - flushed >= WRITEBACK_EVERY:
                    flushed = _start_writeback(f, flushed, job.offset)
        finally:
            with job.guard:
                job.abort = None
            job.wire += reply.wire() if callable(reply.wire) else 0


def _check_reply(job: _Job, reply: RangeReply, gzip_asked: bool) -> None:
    if reply.encoding not in ACCEPTED_ENCODINGS and not (gzip_asked and reply.encoding == "gzip"):
        asked = "gzip or identity" if gzip_asked else "identity"
        raise RuntimeMisbehaved(
            f"the runtime sent '{job.remote[:200]}' with Content-Encoding "
            f"{reply.encoding[:40]!r} although {asked} was asked for; refused (a compressed "
            "body could expand without bound)", details={"encoding": reply.encoding[:40]})
    if job.version is not None and reply.version is not None and reply.version != job.version:
        raise ChecksumMismatch(
            f"'{job.remote[:200]}' changed on the runtime during the download (version "
            f"{reply.version[:80]!r}, expected {job.version[:80]!r}); download again",
            details={"reason": "changed"})


def _start_writeback(f: Any, start: int, end: int) -> int:
    """Begin (not wait for) the disk write of ``[start, end)``; returns ``end``.

    ``POSIX_FADV_DONTNEED`` starts writeback of dirty pages without waiting and
    drops the pages already written, so the closing fsync has little left to do.
    Where it does not exist (macOS, Windows) this does nothing.
    """
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        f.flush()
        with contextlib.suppress(OSError):
            advise(f.fileno(), start, end - start, os.POSIX_FADV_DONTNEED)
    return end
