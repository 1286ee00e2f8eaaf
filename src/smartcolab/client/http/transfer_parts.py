"""Upload in parts: up to N parallel part PUTs into one upload, one sha256 over the whole.

A tunnel that caps each stream caps a single streamed upload too; parts over parallel
connections fill the link (bench/bench_wan.py).  The runtime's part API
(``runtime/files/parts.py``): create (size and whole-file sha256 stated), PUT each
part at its offset (its own digest signed), status, commit (the runtime hashes the
whole file before anything is published), abort.

Resumable within a call: a part cut off is sent again (a part counts on the runtime
only once complete and matching its digest; one already in is answered 409
``part_received`` and taken as done).  A runtime without the part API (404 on create,
not ``upload_not_found``) gets ``None`` back: the caller sends one stream instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from smartcolab.client.http.client import RuntimeClient
from smartcolab.client.local_files import IO_CHUNK, ProgressFn
from smartcolab.client.transfer.source import report
from smartcolab.shared import routes
from smartcolab.shared.errors import (
    ChecksumMismatch,
    Conflict,
    InvalidInput,
    NotFound,
    RuntimeUnreachable,
    SmartColabError,
)
from smartcolab.shared.protocol import (
    EMPTY_SHA256,
    H_CONTENT_SHA256,
    FileStat,
    UploadCreate,
    UploadResult,
    UploadSession,
)

log = logging.getLogger("smartcolab.client.transfer")
MIN_PART = 8 * 1024 * 1024
MAX_PART = 64 * 1024 * 1024
PART_TIMEOUT_S = 600.0


# Parts per stream aimed at.  One part per stream left the last parts' bytes to the
# commit (the runtime's whole-file hash follows the run of parts received from the
# start; with one part per stream all of them land at the very end) and ended every
# stream at once.  Several parts per stream, taken in file order, land nearly in order
# (the runtime hashes each as it lands) and keep the streams busy to the end; each
# part costs its stream one round trip (the answer), which the staggered streams
# cover (``_all_parts``).
PARTS_PER_STREAM = 8
MIB = 1024 * 1024


def part_size_for(size: int, streams: int) -> int:
    """About ``PARTS_PER_STREAM`` parts per stream, whole MiB, within 8-64 MiB (the
    runtime allows 1-64 MiB and at most 10,000 parts; it may choose larger parts for a
    huge file, and its answer is what counts)."""
    per = -(-size // max(1, streams * PARTS_PER_STREAM))
    return max(MIN_PART, min(MAX_PART, -(-per // MIB) * MIB))


@dataclass
class _Run:
    client: RuntimeClient
    path: Path
    session: UploadSession
    progress: ProgressFn | None
    attempts: int
    check_parts: bool = False
    done_bytes: int = 0
    failures: int = 0
    queue: asyncio.Queue[int] = field(default_factory=asyncio.Queue)
    # Bytes of the first part sent so far (``None`` once it is over, sent or not): the
    # later streams start at set points of it (``_all_parts``).
    lead: int | None = 0
    lead_moved: asyncio.Event = field(default_factory=asyncio.Event)

    def lead_to(self, sent: int | None) -> None:
        if self.lead is not None:
            self.lead = sent
            self.lead_moved.set()

    async def lead_reached(self, at: int) -> None:
        while self.lead is not None and self.lead < at:
            self.lead_moved.clear()
            await self.lead_moved.wait()


def _hash_part(path: Path, offset: int, length: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        left = length
        while left > 0:
            chunk = f.read(min(IO_CHUNK, left))
            if not chunk:
                raise ChecksumMismatch(f"{path} shrank while it was uploaded; nothing was "
                                       "written")
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


async def _part_chunks(run: _Run, index: int, offset: int,
                       length: int) -> AsyncIterator[bytes]:
    """The part read as it is sent (from the page cache when it was just hashed)."""
    path = run.path
    f: BinaryIO = await asyncio.to_thread(open, path, "rb")
    try:
        await asyncio.to_thread(f.seek, offset)
        left = length
        while left > 0:
            chunk = await asyncio.to_thread(f.read, min(IO_CHUNK, left))
            if not chunk:
                raise ChecksumMismatch(f"{path} shrank while it was uploaded; nothing was "
                                       "written")
            left -= len(chunk)
            yield chunk
            if index == 0:
                run.lead_to(length - left)
    finally:
        f.close()


async def _send_part(run: _Run, index: int) -> None:
    s = run.session
    offset = index * s.part_size
    length = min(s.size, offset + s.part_size) - offset
    if run.check_parts:
        digest = await asyncio.to_thread(_hash_part, run.path, offset, length)
        params: dict[str, str | int] = {"upload_id": s.upload_id, "offset": offset}
    else:
        # The signed commit states the whole file's sha256, which the runtime checks
        # before anything is published: one hash pass less on both sides.
        digest = EMPTY_SHA256
        params = {"upload_id": s.upload_id, "offset": offset, "check": "commit"}
    try:
        async with run.client.stream(
                "PUT", routes.FILES_UPLOAD_PART, params=params,
                headers={H_CONTENT_SHA256: digest, "Content-Length": str(length)},
                content=_part_chunks(run, index, offset, length),
                timeout=PART_TIMEOUT_S) as resp:
            await resp.aread()
    except Conflict as exc:
        if exc.details.get("reason") != "part_received":
            raise
        # An earlier attempt landed but its answer was lost.
    finally:
        if index == 0:
            run.lead_to(None)  # over (a resend is not waited for)
    run.done_bytes += length
    await report(run.progress, run.done_bytes, s.size)


async def _worker(run: _Run) -> None:
    while True:
        try:
            index = run.queue.get_nowait()
        except asyncio.QueueEmpty:
            return
        try:
            await _send_part(run, index)
        except (RuntimeUnreachable, Conflict, InvalidInput) as exc:
            retryable = isinstance(exc, RuntimeUnreachable) or exc.details.get("reason") in (
                "part_in_flight", "checksum_mismatch", "part_interrupted")
            run.failures += 1
            if not retryable or run.failures >= run.attempts:
                raise
            await asyncio.sleep(run.client.retry.delay(run.failures))
            # A refusal sent before the body was read can reach us as a reset connection,
            # and an answer can be lost after the part landed: the runtime says which.
            if await _landed(run, index):
                continue
            log.info("part %d of %s: %s; sending it again", index, run.path, exc)
            run.queue.put_nowait(index)


async def _landed(run: _Run, index: int) -> bool:
    s = run.session
    try:
        r = await run.client.request("GET", routes.fill(routes.FILES_UPLOAD,
                                                        upload_id=s.upload_id))
    except RuntimeUnreachable:
        return False
    if index not in UploadSession.model_validate_json(r.content).received:
        return False
    length = min(s.size, (index + 1) * s.part_size) - index * s.part_size
    run.done_bytes += length
    await report(run.progress, run.done_bytes, s.size)
    return True


async def _create(client: RuntimeClient, body: UploadCreate) -> UploadSession | None:
    try:
        r = await client.request("POST", routes.FILES_UPLOADS,
                                 json=body.model_dump(), idempotent=False)
    except NotFound as exc:
        if exc.details.get("reason") == "upload_not_found":
            raise
        log.info("the runtime has no part API (404 on POST %s): one stream",
                 routes.FILES_UPLOADS)
        return None
    return UploadSession.model_validate_json(r.content)


async def _commit(run: _Run, remote_path: str, digest: str) -> UploadResult:
    s = run.session
    url = routes.fill(routes.FILES_UPLOAD_COMMIT, upload_id=s.upload_id)
    lost = False
    while True:
        try:
            r = await run.client.request("POST", url, json={"sha256": digest},
                                         idempotent=False, timeout=PART_TIMEOUT_S)
            return UploadResult.model_validate_json(r.content)
        except RuntimeUnreachable:
            run.failures += 1
            if run.failures >= run.attempts:
                raise
            lost = True
            await asyncio.sleep(run.client.retry.delay(run.failures))
        except NotFound:
            if not lost:
                raise
            # The commit landed but its answer was lost: the file says so.
            r = await run.client.request("GET", routes.FILES_STAT,
                                         params={"path": remote_path, "hash": "true"})
            if FileStat.model_validate_json(r.content).sha256 != digest:
                raise
            return UploadResult(path=s.path, size=s.size, sha256=digest, overwritten=False)


async def upload_parts(client: RuntimeClient, path: Path, size: int,
                       hashing: Awaitable[tuple[Path, int, str]], remote_path: str, *,
                       overwrite: bool, progress: ProgressFn | None, streams: int,
                       attempts: int, part_size: int | None = None,
                       check_parts: bool = False) -> UploadResult | None:
    """Upload ``path`` in parts over up to ``streams`` connections; ``None`` when the
    runtime has no part API (the caller then sends one stream).

    ``hashing`` is the whole file's sha256 being computed meanwhile (``hash_local``): the
    parts do not wait for it, the commit states it, and the runtime checks it before
    anything is published.  ``check_parts`` also has each part's sha256 checked as it
    lands (a corrupted part is resent instead of failing the commit; one hash pass more
    on both sides).
    """
    session = await _create(client, UploadCreate(
        path=remote_path, size=size, overwrite=overwrite,
        part_size=part_size or part_size_for(size, streams)))
    if session is None:
        return None
    run = _Run(client, path, session, progress, max(attempts, 2 * streams),
               check_parts=check_parts)
    for index in range(session.parts):
        run.queue.put_nowait(index)
    try:
        await _all_parts(run, streams)
        _, hashed_size, digest = await hashing
        if hashed_size != size:
            raise ChecksumMismatch(f"{path} changed size while it was uploaded; nothing was "
                                   "written; upload again")
        result = await _commit(run, remote_path, digest)
    except BaseException as exc:
        await _abort(client, session)
        if isinstance(exc, InvalidInput) and exc.details.get("reason") == "checksum_mismatch":
            raise ChecksumMismatch(f"{path} changed while it was uploaded (or was corrupted on "
                                   "the way); nothing was written; upload again",
                                   details=exc.details) from exc
        raise
    if result.sha256 != digest or result.size != size:
        raise ChecksumMismatch(f"the runtime stored {result.size} bytes with sha256 "
                               f"{result.sha256}, expected {size} bytes with {digest}")
    return result


def stagger(streams: int, part_size: int) -> list[int]:
    """Where each stream starts, in bytes of the first part sent: half the streams at
    once, the others spread over that first part.

    Equal parts at equal shares of the link end together, and every stream then waits
    out its answer's round trip at the same moment: the link idles a round trip per
    part.  Started at different points of a part, the streams keep those offsets (each
    has the same share), so while one waits the others carry.  Half the streams at
    first fill any link that half of them can.
    """
    first = -(-streams // 2)
    late = streams - first
    return [0] * first + [part_size * j // (late + 1) for j in range(1, late + 1)]


async def _staggered(run: _Run, at: int) -> None:
    await run.lead_reached(at)
    await _worker(run)


async def _all_parts(run: _Run, streams: int) -> None:
    """The workers until the queue is empty; the first failure cancels the others."""
    starts = stagger(min(streams, run.session.parts), run.session.part_size)
    tasks = [asyncio.ensure_future(_staggered(run, at) if at else _worker(run))
             for at in starts]
    try:
        for done in asyncio.as_completed(tasks):
            await done
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _abort(client: RuntimeClient, session: UploadSession) -> None:
    with contextlib.suppress(SmartColabError, OSError):
        await asyncio.shield(client.request(
            "DELETE", routes.fill(routes.FILES_UPLOAD, upload_id=session.upload_id),
            idempotent=False, timeout=30.0))


__all__ = ["MIN_PART", "part_size_for", "stagger", "upload_parts"]
