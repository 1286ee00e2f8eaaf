"""Parallel ranged download: N streams over one ``.part``, one sha256 over the whole.

A tunnel (Colab's proxy, ngrok, Cloudflare) often caps what one TCP stream carries
well below what the link can; N streams, each asking a span ``bytes=a-b``, fill it.
What stays as in the single-stream skeleton (``transfer/resumable.py``):

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

This module holds the spans: how a file is cut into them, how a record of them is read
back, the probe of the first one and the checks on every answer; the threads that fill
them are ``span_streams``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smartcolab.client.transfer.source import SpanSource
from smartcolab.shared.errors import ChecksumMismatch, RuntimeMisbehaved

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
# Positioned reads and writes (several streams, one file descriptor): POSIX only; where
# they are missing (Windows) downloads take one stream.
AVAILABLE = hasattr(os, "pwrite") and hasattr(os, "pread")
_CONTENT_RANGE = re.compile(r"^bytes (\d{1,19})-(\d{1,19})/(\d{1,19})$")


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


def stated_range(reply: Any) -> tuple[int, ...] | None:
    """``(first, last, total)`` of a reply's ``Content-Range: bytes first-last/total``,
    or ``None`` where it is missing or not of that form."""
    match = _CONTENT_RANGE.match((reply.content_range or "").strip())
    return tuple(int(g) for g in match.groups()) if match else None


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
        got = stated_range(reply)
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
    got = stated_range(reply)
    if not reply.partial or got != (span.done, span.end - 1, job.total):
        raise RuntimeMisbehaved(
            f"the runtime answered the range {asked} of '{job.remote[:200]}' with "
            f"{'206' if reply.partial else 'a whole body'} and Content-Range "
            f"{(reply.content_range or '(none)')[:80]!r}; refused, nothing was kept",
            details={"asked": asked, "content_range": (reply.content_range or "")[:80]})
