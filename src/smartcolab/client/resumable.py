"""The one resumable download: a backend supplies "open a byte range", this does the rest.

Bytes land in ``NAME.part`` beside ``NAME.part.json`` (which remote version they
belong to); after a drop the next attempt asks for the rest from the offset held,
so a cut costs only what was in flight.  Each backend (our runtime's
``/files/content``, a Jupyter Server's ``/files/``) implements :class:`RangeSource`;
the caps on what a runtime may make us store are enforced here, once:

* free space for the stated size is checked before the first byte is written;
* no more bytes than the stated size are accepted;
* a compressed ``Content-Encoding`` is accepted only when it was asked for (a gzip
  body sent for an identity request would be decoded without bound);
* a body of another version than the one stated aborts the download (download again).

The receive loop runs in one worker thread with blocking reads: an event-loop
round per chunk measured about a quarter more CPU per GiB (bench/bench_files.py).
The event loop only wakes every ``PROGRESS_EVERY_S`` to pass progress on, and a
cancelled caller stops the thread at its next chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio

from smartcolab.client import spans
from smartcolab.client.local_files import (
    ProgressFn,
    discard,
    hash_prefix,
    part_paths,
    publish,
    resume_offset,
    write_failed,
    write_json_atomic,
)
from smartcolab.client.spans import MIN_SPAN, SpanJob, SpanSource, held_spans, plan_spans, run_spans
from smartcolab.client.untrusted import (
    DEFAULT_LIMITS,
    TransferLimits,
    check_stated_size,
    ensure_free_space,
)
from smartcolab.shared.errors import ChecksumMismatch, RuntimeMisbehaved, RuntimeUnreachable

MAX_TOTAL_ATTEMPTS = 100
PROGRESS_EVERY_S = 0.1
# How long a cancelled download waits for its thread to notice (one chunk, normally).
STOP_GRACE_S = 5.0
# Start writing received data to disk every this many bytes, so the final fsync
# does not wait for the whole file (and the page cache is not filled with it).
WRITEBACK_EVERY = 64 * 1024 * 1024
ACCEPTED_ENCODINGS = ("", "identity")


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


async def report(progress: ProgressFn | None, done: int, total: int | None) -> None:
    """Call a progress callback, awaiting it if it is a coroutine function."""
    if progress is None:
        return
    maybe = progress(done, total)
    if inspect.isawaitable(maybe):
        await maybe


async def fetch(source: RangeSource, remote: str, final: Path, *, size: int,
                version: str | None, compress: bool = False, attempts: int = 8,
                progress: ProgressFn | None = None,
                limits: TransferLimits = DEFAULT_LIMITS, streams: int = 1,
                min_span: int = MIN_SPAN) -> Fetched:
    """Receive ``remote`` (``size`` bytes as stated, ``version``) into ``final``'s ``.part``.

    With ``streams`` > 1, a source that can send closed spans (:class:`SpanSource`)
    and at least two spans of ``min_span`` left to fetch, the rest comes over that
    many parallel streams (``client/spans.py``); a gzip download is always one stream.
    """
    part, meta = part_paths(final)
    offset = await asyncio.to_thread(resume_offset, part, meta, remote, version, size)
    if (streams > 1 and not compress and spans.AVAILABLE and isinstance(source, SpanSource)
            and size - offset >= 2 * min_span):
        return await _fetch_spans(source, remote, part, meta, size=size, version=version,
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


async def _fetch_spans(source: SpanSource, remote: str, part: Path, meta: Path, *, size: int,
                       version: str | None, offset: int, streams: int, min_span: int,
                       attempts: int, progress: ProgressFn | None,
                       limits: TransferLimits) -> Fetched:
    def plan() -> list[Any]:
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            info = {}
        same = (isinstance(info, dict) and info.get("remote") == remote
                and info.get("etag") == version and info.get("size") == size)
        return (held_spans(info, part, size) if same else None) or plan_spans(
            offset, size, streams, min_span)

    planned = await asyncio.to_thread(plan)
    job = SpanJob(source=source, remote=remote, part=part, meta=meta, version=version,
                  total=size, spans=planned, attempts=attempts, max_tries=MAX_TOTAL_ATTEMPTS,
                  streams=streams)
    held = job.received
    await asyncio.to_thread(ensure_free_space, part.parent, size - held, limits)
    return await _run_span_job(job, progress, held)


async def fetch_unsized(source: SpanSource, remote: str, final: Path, *, streams: int,
                        min_span: int = MIN_SPAN, attempts: int = 8,
                        progress: ProgressFn | None = None,
                        limits: TransferLimits = DEFAULT_LIMITS) -> Fetched:
    """A new parallel download without a stat first: the first span (``2 * min_span``)
    is asked at once and its answer's ``Content-Range`` states the size and its ETag the
    version the other spans are cut from and checked against (``spans.probe``).

    Any record of an earlier attempt is ignored (the caller resumes those with
    :func:`fetch`).  Raises what the runtime answered the first span (416 for an empty
    file, 400 for something not a regular file) or ``spans.NotRanged`` (a 200: a server
    that ignores ``Range``): the caller then asks a stat.
    """
    part, meta = part_paths(final)
    task = asyncio.ensure_future(asyncio.to_thread(spans.probe, source, remote, 2 * min_span))
    try:
        opened = await asyncio.shield(task)
    except BaseException:
        # Cancelled while the thread opens the reply: close it once it is open.
        task.add_done_callback(_close_probe)
        raise
    try:
        check_stated_size(opened.total, remote[:200])
        await asyncio.to_thread(ensure_free_space, final.parent, opened.total, limits)
        planned = plan_spans(opened.span.end, opened.total, streams, min_span)
        planned[0] = opened.span  # the held [0, first) of the plan: the probe fetches it
        job = SpanJob(source=source, remote=remote, part=part, meta=meta,
                      version=opened.version, total=opened.total, spans=planned,
                      attempts=attempts, max_tries=MAX_TOTAL_ATTEMPTS, streams=streams,
                      opened=opened)
    except BaseException:
        opened.stack.close()
        raise
    return await _run_span_job(job, progress, 0)


def _close_probe(task: asyncio.Future[spans.Opened]) -> None:
    if not task.cancelled() and task.exception() is None:
        with contextlib.suppress(Exception):
            task.result().stack.close()


async def _run_span_job(job: SpanJob, progress: ProgressFn | None, held: int) -> Fetched:
    part, meta, size = job.part, job.meta, job.total
    task = asyncio.ensure_future(asyncio.to_thread(run_spans, job))
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=PROGRESS_EVERY_S)
            await report(progress, job.received, size)
        digest = task.result()
    except (RuntimeMisbehaved, ChecksumMismatch):
        discard(part, meta)  # hostile or stale bytes are not kept for a resume
        raise
    except BaseException:
        spans.stop(job)
        with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_GRACE_S):
            await asyncio.wait({task})
        spans.close_opened(job)  # in case the thread never started
        if task.done() and not task.cancelled():
            task.exception()
        raise
    if not digest:
        raise Stopped("download stopped")
    return Fetched(part=part, meta=meta, size=size, sha256=digest, version=job.version,
                   resumed_from=held, attempts=job.tries, wire_bytes=job.wire, compressed=False)


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


def verify_and_publish(got: Fetched, expected_sha256: str | None, final: Path, overwrite: bool,
                       remote: str) -> None:
    """Publish a fetched ``.part`` under its name only if its sha256 is the runtime's."""
    if expected_sha256 != got.sha256:
        discard(got.part, got.meta)
        raise ChecksumMismatch(
            f"'{remote[:200]}' arrived with sha256 {got.sha256} but the runtime has "
            f"{expected_sha256} (it may have changed meanwhile); the partial file was removed, "
            "download again", details={"local": got.sha256, "remote": expected_sha256})
    publish(got.part, final, overwrite)
    discard(got.meta)


T = TypeVar("T")


async def run_to_end(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` in a thread to its end even if the caller is cancelled meanwhile.

    A thread cannot be cancelled: a cancel that lands while it runs would tell the
    caller "cancelled" while the thread goes on (publishing a file, dropping its
    record) behind its back.  So the caller waits for it, shielded, and the cancel
    takes effect once it is done: state is either as before or wholly changed.
    """
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    cancelled: asyncio.CancelledError | None = None
    with anyio.CancelScope(shield=True):
        while not task.done():
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError as exc:  # a plain task.cancel(): still wait
                cancelled = exc
    if cancelled is not None:
        if not task.cancelled():
            task.exception()  # retrieved: the cancel is what propagates
        raise cancelled
    result = task.result()
    await anyio.lowlevel.checkpoint_if_cancelled()
    return result


async def publish_verified(got: Fetched, expected_sha256: str | None, final: Path,
                           overwrite: bool, remote: str) -> None:
    """:func:`verify_and_publish` as one step a cancel cannot cut in two."""
    await run_to_end(verify_and_publish, got, expected_sha256, final, overwrite, remote)
