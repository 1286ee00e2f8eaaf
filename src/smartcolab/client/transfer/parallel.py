"""A parallel ranged download driven from the event loop.

The spans and their streams run in worker threads (``spans``, ``span_streams``); this
plans them (a resumed download from its record, a new one from its first span's answer,
asked before the size is known), passes progress on every ``PROGRESS_EVERY_S`` and stops
the threads when the caller is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import anyio

from smartcolab.client.local_files import ProgressFn, discard, part_paths
from smartcolab.client.transfer import span_streams, spans
from smartcolab.client.transfer.source import (
    MAX_TOTAL_ATTEMPTS,
    PROGRESS_EVERY_S,
    STOP_GRACE_S,
    Fetched,
    SpanSource,
    Stopped,
    report,
)
from smartcolab.client.transfer.span_streams import run_spans
from smartcolab.client.transfer.spans import MIN_SPAN, SpanJob, held_spans, plan_spans
from smartcolab.client.untrusted import (
    DEFAULT_LIMITS,
    TransferLimits,
    check_stated_size,
    ensure_free_space,
)
from smartcolab.shared.errors import ChecksumMismatch, RuntimeMisbehaved


async def fetch_spans(source: SpanSource, remote: str, part: Path, meta: Path, *, size: int,
                      version: str | None, offset: int, streams: int, min_span: int,
                      attempts: int, progress: ProgressFn | None,
                      limits: TransferLimits) -> Fetched:
    """The rest of a sized download over parallel streams (``resumable.fetch`` asks)."""
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
    ``resumable.fetch``).  Raises what the runtime answered the first span (416 for an empty
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
        span_streams.stop(job)
        with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_GRACE_S):
            await asyncio.wait({task})
        span_streams.close_opened(job)  # in case the thread never started
        if task.done() and not task.cancelled():
            task.exception()
        raise
    if not digest:
        raise Stopped("download stopped")
    return Fetched(part=part, meta=meta, size=size, sha256=digest, version=job.version,
                   resumed_from=held, attempts=job.tries, wire_bytes=job.wire, compressed=False)
