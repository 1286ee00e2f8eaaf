"""The threads of a parallel download: N streams filling one ``.part``, one hash behind them.

Each stream takes the next span not yet taken, in file order, writes its bytes at their
place (``pwrite``) and records its progress in ``NAME.part.json``; one more thread
hashes the contiguous prefix that is complete, reading it back from the page cache.
The first error stops them all; a stream stalled in a read is woken by closing its
reply under it.  ``done`` is saved after the bytes were handed to the OS (a killed
process loses nothing; a power cut before writeback can: the sha256 check then refuses
the file).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from contextlib import AbstractContextManager
from typing import Any

from smartcolab.client.local_files import IO_CHUNK, write_failed, write_json_atomic
from smartcolab.client.transfer.spans import Opened, Span, SpanJob, check_span_reply
from smartcolab.shared.errors import RuntimeMisbehaved, RuntimeUnreachable, SmartColabError

SAVE_EVERY = 16 * 1024 * 1024
WRITEBACK_EVERY = 64 * 1024 * 1024


def save(job: SpanJob) -> None:
    """Record every span's progress (streams save in turn: the record has one temp name)."""
    with job.save_lock:
        with job.lock:
            spans = [[s.start, s.done, s.end] for s in job.spans]
        write_json_atomic(job.meta, {"remote": job.remote, "etag": job.version,
                                     "size": job.total, "spans": spans})


def run_spans(job: SpanJob) -> str:
    """Fetch every span in parallel into ``job.part``; returns the whole file's sha256."""
    try:
        fd = os.open(job.part, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        raise write_failed(exc, job.part) from exc
    try:
        os.ftruncate(fd, job.total)
        save(job)
        todo = sum(1 for s in job.spans if s.done < s.end)
        workers = [threading.Thread(target=_stream, args=(job, fd), daemon=True,
                                    name=f"span-{i}")
                   for i in range(min(todo, job.streams or todo))]
        for w in workers:
            w.start()
        try:
            digest = _follow_hash(job, fd)
        finally:
            stop(job)
            for w in workers:
                w.join()
            with contextlib.suppress(OSError):
                save(job)
        if job.error is not None:
            raise job.error
        os.fsync(fd)
        return digest
    except OSError as exc:
        raise write_failed(exc, job.part) from exc
    finally:
        os.close(fd)
        close_opened(job)


def close_opened(job: SpanJob) -> None:
    """Close the first span's reply if no stream took it."""
    with job.lock:
        opened, job.opened = job.opened, None
    if opened is not None:
        with contextlib.suppress(Exception):
            opened.stack.close()


def _follow_hash(job: SpanJob, fd: int) -> str:
    """Hash ``[0, total)`` in order as it becomes complete; stop at the first error."""
    h = hashlib.sha256()
    advised = 0
    while job.hashed < job.total:
        with job.lock:
            while job.error is None and not job.stop.is_set() and job.contiguous() <= job.hashed:
                job.lock.wait(0.5)
            if job.error is not None or job.stop.is_set():
                return ""
            ready = job.contiguous()
        while job.hashed < ready:
            chunk = os.pread(fd, min(IO_CHUNK, ready - job.hashed), job.hashed)
            if not chunk:
                raise OSError(f"could not read back {job.part} at {job.hashed}")
            h.update(chunk)
            job.hashed += len(chunk)
        advise = getattr(os, "posix_fadvise", None)
        if advise is not None and job.hashed - advised >= WRITEBACK_EVERY:
            # Hashed: start writing it out and drop what is clean; the window reaches back
            # one step so pages still dirty last time are dropped now.
            start = max(0, advised - WRITEBACK_EVERY)
            with contextlib.suppress(OSError):
                advise(fd, start, job.hashed - start, os.POSIX_FADV_DONTNEED)
            advised = job.hashed
    return h.hexdigest()


def stop(job: SpanJob) -> None:
    """Stop every stream now: a stalled one is woken by closing its reply under it."""
    with job.lock:
        job.stop.set()
        job.lock.notify_all()
        for abort in job.aborts.values():
            abort()


def _fail(job: SpanJob, exc: BaseException) -> None:
    with job.lock:
        if job.error is None:
            job.error = exc
    stop(job)


def _stream(job: SpanJob, fd: int) -> None:
    """One stream: the next span not yet taken, in file order, until none is left."""
    while not job.stop.is_set() and job.error is None:
        with job.lock:
            while job.next_span < len(job.spans) and (
                    job.spans[job.next_span].done >= job.spans[job.next_span].end):
                job.next_span += 1
            if job.next_span >= len(job.spans):
                return
            span = job.spans[job.next_span]
            job.next_span += 1
        _worker(job, fd, span)


def _worker(job: SpanJob, fd: int, span: Span) -> None:
    try:
        while span.done < span.end and not job.stop.is_set():
            with job.lock:
                job.tries += 1
                tries = job.tries
            before = span.done
            try:
                _one_span(job, fd, span)
                if span.done < span.end:
                    raise RuntimeUnreachable(f"a span ended at {span.done} of [{span.start}, "
                                             f"{span.end})")
            except RuntimeUnreachable as exc:
                if job.stop.is_set():
                    return  # stopped from outside (its reply was closed): not a drop
                span.failures = 1 if span.done > before else span.failures + 1
                if span.failures >= job.attempts or tries >= job.max_tries:
                    raise RuntimeUnreachable(
                        f"download of '{job.remote[:200]}' failed after {tries} attempts with "
                        f"{job.received:,} of {job.total:,} bytes held ({exc.message}); call "
                        "download again to resume from there",
                        details={"offset": job.contiguous(), "part": str(job.part)}) from exc
                if job.stop.wait(job.source.backoff(span.failures)):
                    return
    except (SmartColabError, OSError) as exc:
        _fail(job, write_failed(exc, job.part) if isinstance(exc, OSError) else exc)
    except BaseException as exc:  # pragma: no cover - a bug: still stop the others
        _fail(job, exc)


def _open(job: SpanJob, span: Span) -> AbstractContextManager[Any]:
    """The span's reply: the one the probe opened (once), else a new request."""
    with job.lock:
        opened = job.opened
        if opened is not None and opened.span is span and span.done == span.start:
            job.opened = None
            return _Taken(opened)
    return job.source.open_span(job.remote, span.done, span.end - 1, job.version)


class _Taken(AbstractContextManager[Any]):
    def __init__(self, opened: Opened) -> None:
        self.opened = opened

    def __enter__(self) -> Any:
        return self.opened.reply

    def __exit__(self, *exc: Any) -> bool:
        # The exception goes through the reply's own context (it maps transport errors).
        return bool(self.opened.stack.__exit__(*exc))


def _one_span(job: SpanJob, fd: int, span: Span) -> None:
    with _open(job, span) as reply:
        check_span_reply(job, reply, span)
        saved = span.done
        with job.lock:  # registered under the lock stop() holds: none is missed
            if job.stop.is_set():
                return
            if callable(reply.abort):
                job.aborts[id(reply)] = reply.abort
        try:
            for chunk in reply.chunks:
                if job.stop.is_set():
                    return
                if span.done + len(chunk) > span.end:
                    raise RuntimeMisbehaved(
                        f"the runtime sent more than the bytes {span.done}-{span.end - 1} asked "
                        f"of '{job.remote[:200]}'; the download was stopped and nothing was kept",
                        details={"span": [span.done, span.end - 1]})
                os.pwrite(fd, chunk, span.done)
                with job.lock:
                    span.done += len(chunk)
                    job.lock.notify_all()
                if span.done - saved >= SAVE_EVERY:
                    save(job)
                    saved = span.done
        finally:
            with job.lock:
                job.aborts.pop(id(reply), None)
                job.wire += reply.wire() if callable(reply.wire) else 0

