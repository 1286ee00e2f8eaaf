"""A file download's receive loop, run in one worker thread with blocking reads.

The async loop paid an event-loop round (epoll, futures, anyio stream) per
256 KiB chunk on top of receiving, writing and hashing; one thread with
blocking 1 MiB reads measured about a quarter less CPU per GiB and kept up with
curl on loopback (bench/bench_files.py).  The event loop stays free: it only
wakes every ``PROGRESS_EVERY_S`` to pass progress on, and a cancelled caller
stops the thread at its next chunk.  Resume, ``If-Range`` and backoff are the
same as before; see ``transfer.download``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from smartcolab.client.http.client import RuntimeClient
from smartcolab.client.local_files import ProgressFn, write_failed, write_json_atomic
from smartcolab.shared import routes
from smartcolab.shared.errors import RuntimeUnreachable
from smartcolab.shared.protocol import H_IDENTITY_LENGTH

MAX_TOTAL_ATTEMPTS = 100
PROGRESS_EVERY_S = 0.1
# How long a cancelled download waits for its thread to notice (one chunk, normally).
STOP_GRACE_S = 5.0
# Start writing received data to disk every this many bytes, so the final fsync
# does not wait for the whole file (and the page cache is not filled with it).
WRITEBACK_EVERY = 64 * 1024 * 1024


class Stopped(Exception):
    """The caller went away (cancelled); the thread stops at its next chunk."""


@dataclass
class Receive:
    """What the thread needs and what it leaves behind; ``offset`` is read for progress."""

    remote: str
    part: Path
    meta: Path
    etag: str
    total: int
    offset: int
    hasher: Any
    compress: bool
    attempts: int
    tries: int = 0
    wire: int = 0
    used_gzip: bool = False
    stop: threading.Event = field(default_factory=threading.Event)


async def report(progress: ProgressFn | None, done: int, total: int | None) -> None:
    """Call a progress callback, awaiting it if it is a coroutine function."""
    if progress is None:
        return
    maybe = progress(done, total)
    if inspect.isawaitable(maybe):
        await maybe


async def receive(client: RuntimeClient, job: Receive, progress: ProgressFn | None) -> None:
    """Run :func:`_receive` in a thread; report progress meanwhile; stop it if cancelled."""
    task = asyncio.ensure_future(asyncio.to_thread(_receive, client, job))
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=PROGRESS_EVERY_S)
            await report(progress, job.offset, job.total)
        task.result()
    except BaseException:
        job.stop.set()
        with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_GRACE_S):
            await asyncio.wait({task})
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: the caller's own exception is what propagates
        raise


def _receive(client: RuntimeClient, job: Receive) -> None:
    """Fetch ``job.remote`` into ``job.part`` from ``job.offset``, resuming after drops."""
    try:
        with open(job.part, "r+b" if job.offset else "wb") as f:
            f.truncate(job.offset)
            f.seek(job.offset)
            failures = 0
            while job.offset < job.total:
                job.tries += 1
                before = job.offset
                try:
                    _one_attempt(client, job, f)
                    if job.offset != job.total:
                        raise RuntimeUnreachable(
                            f"the download ended at {job.offset} of {job.total} bytes")
                except RuntimeUnreachable as exc:
                    failures = 1 if job.offset > before else failures + 1
                    if failures >= job.attempts or job.tries >= MAX_TOTAL_ATTEMPTS:
                        f.flush()
                        raise RuntimeUnreachable(
                            f"download of '{job.remote[:200]}' failed after {job.tries} attempts "
                            f"at {job.offset} of {job.total} bytes ({exc.message}); call download "
                            "again to resume from there",
                            details={"offset": job.offset, "part": str(job.part)}) from exc
                    if job.stop.wait(client.retry.delay(failures)):
                        raise Stopped("download stopped") from exc
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise write_failed(exc, job.part) from exc


def _one_attempt(client: RuntimeClient, job: Receive, f: Any) -> None:
    gzip_now = job.compress and job.offset == 0
    headers = {"Accept-Encoding": "gzip" if gzip_now else "identity"}
    if job.offset:
        headers.update({"Range": f"bytes={job.offset}-", "If-Range": job.etag})
    with client.stream_blocking("GET", routes.FILES_CONTENT, params={
            "path": job.remote, "compress": "true" if gzip_now else None},
                                headers=headers) as resp:
        if resp.status_code != 206 and job.offset:
            # The runtime sent the whole file: its version changed. Start over.
            job.offset = 0
            f.seek(0)
            f.truncate(0)
            job.hasher = hashlib.sha256()
        new_etag = resp.headers.get("etag", job.etag)
        if new_etag != job.etag:
            job.etag = new_etag
            job.total = int(resp.headers.get("content-length")
                            or resp.headers.get(H_IDENTITY_LENGTH) or job.total)
            write_json_atomic(job.meta, {"remote": job.remote, "etag": job.etag,
                                         "size": job.total})
        gz = resp.headers.get("content-encoding", "") == "gzip"
        job.used_gzip |= gz
        write, update, stop = f.write, job.hasher.update, job.stop
        flushed = job.offset
        try:
            for chunk in resp.iter_bytes() if gz else resp.iter_raw():
                write(chunk)
                update(chunk)
                job.offset += len(chunk)
                if stop.is_set():
                    raise Stopped("download stopped")
                if job.offset - flushed >= WRITEBACK_EVERY:
                    flushed = _start_writeback(f, flushed, job.offset)
        finally:
            job.wire += resp.num_bytes_downloaded


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
