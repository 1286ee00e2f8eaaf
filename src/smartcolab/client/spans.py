"""Parallel ranged download: N streams over one ``.part``, one sha256 over the whole.

A tunnel (Colab's proxy, ngrok, Cloudflare) often caps what one TCP stream carries
well below what the link can; N streams, each asking a span ``bytes=a-b``, fill it.
What stays as in the single-stream skeleton (``client/resumable.py``):

* the ``.part`` file is never a finished file; it is published only after its sha256
  matched the runtime's (one digest over the whole file, computed while the bytes
  arrive: a hasher thread follows the contiguous prefix that is complete, reading it
  back from the page cache, so nothing is held in memory but one chunk per stream);
* resumable: ``NAME.part.json`` records each span's ``[start, done, end)``; after a
  drop or a later call, each span continues from its ``done``;
* a new download asks no stat first: its first span ``bytes=0-N`` goes out at once and
  the answer's ``Content-Range`` (``bytes 0-M/TOTAL``, checked: it starts at 0 and ends
  where the asked span or the file ends) states the size the other spans are cut from
  (:func:`probe`); every later answer must state the same size and version;
* every answer is checked before its first byte is written: a ``206`` whose
  ``Content-Range`` is exactly the span asked (start, end and the stated size), the
  version (ETag) stated, identity encoding, and never a byte past the span's end.
  A body shorter than its span is a drop (that span resumes); anything else is
  ``RuntimeMisbehaved`` and nothing is kept.

``done`` is saved after the bytes were handed to the OS (a killed process loses
nothing; a power cut before writeback can: the sha256 check then refuses the file).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from smartcolab.client.local_files import IO_CHUNK, write_failed, write_json_atomic
from smartcolab.shared.errors import (
    ChecksumMismatch,
    RuntimeMisbehaved,
    RuntimeUnreachable,
    SmartColabError,
)

# Below this many bytes per stream a second stream costs more (a request) than it gains.
MIN_SPAN = 8 * 1024 * 1024
# Above this per stream, a file is cut into more spans than streams, taken in file order
# by whichever stream is free, each a share of what is left (largest first, down to
# ``min_span``): the streams finish their spans at different times, so one waits out
# its next request's round trip while the others carry the link (equal spans end and
# re-ask together: the whole link idles a round trip), the last spans are small (no
# stream left alone at the end), and the bytes land nearly in order, so the whole-file
# hash follows them instead of reading back most of the file after the last byte
# (bench/bench_parallel.py, 150 ms profile).
MAX_SPAN = 16 * 1024 * 1024
SAVE_EVERY = 16 * 1024 * 1024
WRITEBACK_EVERY = 64 * 1024 * 1024
# Positioned reads and writes (several streams, one file descriptor): POSIX only; where
# they are missing (Windows) downloads take one stream.
AVAILABLE = hasattr(os, "pwrite") and hasattr(os, "pread")
_CONTENT_RANGE = re.compile(r"^bytes (\d{1,19})-(\d{1,19})/(\d{1,19})$")


@runtime_checkable
class SpanSource(Protocol):
    """A backend that can send one closed byte range (blocking: runs in a worker thread)."""

    def open_span(self, remote: str, start: int, end: int,
                  version: str | None) -> AbstractContextManager[Any]:
        """Bytes ``[start, end]`` (inclusive) of ``remote`` as a ``RangeReply``."""
        ...

    def backoff(self, failures: int) -> float:
        ...


@dataclass
class Span:
    start: int
    done: int
    end: int  # exclusive
    failures: int = 0


@dataclass
class SpanJob:
    source: SpanSource
    remote: str
    part: Path
    meta: Path
    version: str | None
    total: int
    spans: list[Span]
    attempts: int
    max_tries: int
    streams: int = 0  # parallel streams; 0: one per span
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Condition = field(default_factory=threading.Condition)
    save_lock: threading.Lock = field(default_factory=threading.Lock)  # one writer of the record
    # The open replies' aborts (closing a reply from the stopping side wakes a stream
    # blocked in a read at once, instead of at its read timeout).
    aborts: dict[int, Callable[[], None]] = field(default_factory=dict)
    tries: int = 0
    next_span: int = 0  # spans are handed to the streams in file order
    wire: int = 0
    hashed: int = 0
    error: BaseException | None = None
    opened: Opened | None = None  # the first span's reply, opened before the plan

    @property
    def received(self) -> int:
        return sum(s.done - s.start for s in self.spans)

    def contiguous(self) -> int:
        """Bytes from 0 that are all in the file."""
        at = 0
        for s in self.spans:
            if s.start > at:
                break
            at = s.done
            if s.done < s.end:
                break
        return at


@dataclass
class Opened:
    """A span's reply opened before the file's size was known (its answer says it)."""

    span: Span
    reply: Any
    stack: contextlib.ExitStack
    total: int
    version: str | None


class NotRanged(Exception):
    """The first span was answered with the whole file (a server without ``Range``):
    nothing was read; the caller asks a stat and takes one stream, as before."""


def probe(source: SpanSource, remote: str, first: int) -> Opened:
    """Open ``bytes=0-(first - 1)`` of a file of unknown size; checked before any byte
    is read: a ``206`` in identity encoding whose ``Content-Range`` starts at 0 and ends
    at the asked end or the file's last byte (``RuntimeMisbehaved`` otherwise; a ``200``
    is :class:`NotRanged`)."""
    stack = contextlib.ExitStack()
    try:
        reply = stack.enter_context(source.open_span(remote, 0, first - 1, None))
        if not reply.partial:
            raise NotRanged(remote)
        match = _CONTENT_RANGE.match((reply.content_range or "").strip())
        got = tuple(int(g) for g in match.groups()) if match else None
        if reply.encoding not in ("", "identity") or got is None or (
                got[0] != 0 or got[2] < 1 or got[1] != min(first, got[2]) - 1):
            raise RuntimeMisbehaved(
                f"the runtime answered the range 0-{first - 1} of '{remote[:200]}' with "
                "206, Content-Range "
                f"{(reply.content_range or '(none)')[:80]!r} and Content-Encoding "
                f"{(reply.encoding or 'identity')[:40]!r}; refused, nothing was kept",
                details={"asked": f"0-{first - 1}",
                         "content_range": (reply.content_range or "")[:80]})
    except BaseException:
        stack.close()
        raise
    total = got[2]
    return Opened(Span(0, 0, min(first, total)), reply, stack, total, reply.version)


def plan_spans(offset: int, total: int, streams: int, min_span: int = MIN_SPAN,
               max_span: int | None = None) -> list[Span]:
    """``[0, offset)`` held, ``[offset, total)`` cut into at most ``streams`` equal spans
    of at least ``min_span`` bytes each, or, where those would exceed ``max_span``, into
    more spans, each a ``1 / (2 * streams)`` share of what is left and at least
    ``min_span`` (taken in turn by ``streams`` streams)."""
    left = total - offset
    n = max(1, min(streams, left // max(1, min_span)))
    if n > 1 and left > n * (max_span or MAX_SPAN):
        cuts = [offset]
        while total - cuts[-1] > min_span:
            cuts.append(cuts[-1] + max(min_span, (total - cuts[-1]) // (2 * n)))
        cuts.append(total)
    else:
        step = -(-left // n)
        cuts = [offset + i * step for i in range(n)] + [total]
    held = [Span(0, offset, offset)] if offset else []
    return held + [Span(a, a, b) for a, b in itertools.pairwise(cuts) if b > a]


def held_spans(info: dict[str, Any], part: Path, total: int) -> list[Span] | None:
    """The spans a previous parallel attempt recorded, if they still describe ``part``."""
    raw = info.get("spans")
    try:
        if not isinstance(raw, list) or part.stat().st_size != total:
            return None
        spans = [Span(int(a), int(d), int(e)) for a, d, e in raw]
    except (OSError, TypeError, ValueError):
        return None
    at = 0
    for s in spans:  # they must tile [0, total) in order, each done inside its own
        if s.start != at or not s.start <= s.done <= s.end:
            return None
        at = s.end
    return spans if at == total and spans else None


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


def check_span_reply(job: SpanJob, reply: Any, span: Span) -> None:
    """A span's answer is written only if it is exactly what was asked."""
    asked = f"{span.done}-{span.end - 1}/{job.total}"
    if reply.encoding not in ("", "identity"):
        raise RuntimeMisbehaved(
            f"the runtime sent a span of '{job.remote[:200]}' with Content-Encoding "
            f"{reply.encoding[:40]!r} although identity was asked for; refused",
            details={"encoding": reply.encoding[:40]})
    if job.version is not None and reply.version is not None and reply.version != job.version:
        raise ChecksumMismatch(
            f"'{job.remote[:200]}' changed on the runtime during the download (version "
            f"{reply.version[:80]!r}, expected {job.version[:80]!r}); download again",
            details={"reason": "changed"})
    match = _CONTENT_RANGE.match((reply.content_range or "").strip())
    got = (tuple(int(g) for g in match.groups()) if match else None)
    if not reply.partial or got != (span.done, span.end - 1, job.total):
        raise RuntimeMisbehaved(
            f"the runtime answered the range {asked} of '{job.remote[:200]}' with "
            f"{'206' if reply.partial else 'a whole body'} and Content-Range "
            f"{(reply.content_range or '(none)')[:80]!r}; refused, nothing was kept",
            details={"asked": asked, "content_range": (reply.content_range or "")[:80]})
