"""Moving files between a runtime and this machine: list, stat, download, upload.

Downloads land in ``NAME.part`` beside a small ``NAME.part.json`` that records which
remote version (ETag) the bytes belong to; after a dropped connection they resume
with ``Range`` + ``If-Range``, so a changed remote file restarts from 0 instead of
splicing two versions.  The finished file appears under its name only after its
sha256 matched the runtime's ``/files/stat`` and it was fsynced: a ``.part`` is
never a finished file.  Local names are confined to the save directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from smartcolab.client.http.client import RuntimeClient
from smartcolab.client.http.transfer_dir import ArchiveResult, download_dir
from smartcolab.client.http.transfer_parts import MIN_PART, upload_parts
from smartcolab.client.local_files import (
    IO_CHUNK,
    ProgressFn,
    hash_local,
    local_file,
    local_target,
    part_paths,
    refuse_existing,
    remote_name,
)
from smartcolab.client.transfer import spans
from smartcolab.client.transfer.parallel import fetch_unsized
from smartcolab.client.transfer.publish import publish_verified
from smartcolab.client.transfer.resumable import fetch
from smartcolab.client.transfer.source import RangeReply, report, socket_closer
from smartcolab.client.transfer.spans import MIN_SPAN
from smartcolab.client.untrusted import DEFAULT_LIMITS, TransferLimits, check_stated_size
from smartcolab.shared import routes
from smartcolab.shared.errors import (
    BadRequest,
    ChecksumMismatch,
    FileExistsOnRuntime,
    InvalidInput,
    RangeNotSatisfiable,
    RuntimeUnreachable,
)
from smartcolab.shared.protocol import (
    H_CONTENT_SHA256,
    DeleteResult,
    FileEntry,
    FileList,
    FileStat,
    UploadResult,
)

__all__ = [
    "ArchiveResult", "DownloadResult", "delete", "download", "download_dir", "iter_files",
    "list_files", "local_target", "stat", "tune_read_size", "upload",
]

DEFAULT_ATTEMPTS = 8
# Parallel ranged streams per download (bench/bench_wan.py: a tunnel capping each stream).
DEFAULT_STREAMS = 6
READ_SIZE = 1024 * 1024


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    size: int
    sha256: str
    resumed_from: int = 0
    attempts: int = 1
    wire_bytes: int = 0
    compressed: bool = False


# ---------------------------------------------------------------- small helpers
async def list_files(client: RuntimeClient, path: str = "", *, recursive: bool = False,
                     pattern: str | None = None, limit: int = 1000,
                     cursor: str | None = None) -> FileList:
    """One page of a remote listing; pass ``next_cursor`` back for the next."""
    r = await client.request("GET", routes.FILES, params={
        "path": path, "recursive": _flag(recursive), "pattern": pattern, "limit": limit,
        "cursor": cursor})
    return FileList.model_validate(r.json())


async def iter_files(client: RuntimeClient, path: str = "", *, recursive: bool = False,
                     pattern: str | None = None) -> AsyncIterator[FileEntry]:
    """Every entry of a listing, following cursors."""
    cursor: str | None = None
    while True:
        page = await list_files(client, path, recursive=recursive, pattern=pattern, cursor=cursor)
        for entry in page.entries:
            yield entry
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


async def stat(client: RuntimeClient, path: str, *, with_hash: bool = True) -> FileStat:
    r = await client.request("GET", routes.FILES_STAT, params={"path": path, "hash": _flag(with_hash)})
    return FileStat.model_validate(r.json())


async def delete(client: RuntimeClient, path: str) -> DeleteResult:
    """Delete one remote file (never a directory)."""
    r = await client.request("DELETE", routes.FILES, params={"path": path, "confirm": "true"},
                             idempotent=False)
    return DeleteResult.model_validate(r.json())


def tune_read_size(nbytes: int = READ_SIZE) -> bool:
    """Let the HTTP/1.1 connection read up to ``nbytes`` per socket read.

    httpcore2 reads 64 KiB at a time; every read costs a trip through h11, anyio
    and httpx2 in Python.  On loopback that halves download throughput next to
    curl; 1 MiB reads (still only what the socket has ready) bring it level.
    Guarded: if the attribute moves in a later httpcore2, nothing happens.
    """
    try:
        from httpcore2._async.http11 import AsyncHTTP11Connection
        from httpcore2._sync.http11 import HTTP11Connection
    except ImportError:  # pragma: no cover - a different HTTP stack
        return False
    for cls in (AsyncHTTP11Connection, HTTP11Connection):
        current = getattr(cls, "READ_NUM_BYTES", None)
        if not isinstance(current, int):  # pragma: no cover
            return False
        if current < nbytes:
            cls.READ_NUM_BYTES = nbytes
    return True


def _flag(value: bool) -> str:
    return "true" if value else "false"


# ---------------------------------------------------------------- download
@dataclass(frozen=True)
class HttpRanges:
    """Our runtime's ``/files/content`` as a :class:`RangeSource` (Range + If-Range)."""

    client: RuntimeClient

    @contextlib.contextmanager
    def open_range(self, remote: str, offset: int, version: str | None,
                   compress: bool) -> Iterator[RangeReply]:
        headers = {"Accept-Encoding": "gzip" if compress else "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if version:
                headers["If-Range"] = version
        with self.client.stream_blocking("GET", routes.FILES_CONTENT, params={
                "path": remote, "compress": "true" if compress else None},
                                         headers=headers) as resp:
            encoding = resp.headers.get("content-encoding", "").strip().lower()
            # Decoded only when asked for; anything else is refused unread by the skeleton.
            chunks = resp.iter_bytes() if compress and encoding == "gzip" else resp.iter_raw()
            yield RangeReply(partial=resp.status_code == 206, version=resp.headers.get("etag"),
                             encoding=encoding, chunks=chunks,
                             wire=lambda: resp.num_bytes_downloaded,
                             abort=socket_closer(resp))

    @contextlib.contextmanager
    def open_span(self, remote: str, start: int, end: int,
                  version: str | None) -> Iterator[RangeReply]:
        headers = {"Accept-Encoding": "identity", "Range": f"bytes={start}-{end}"}
        if version:
            headers["If-Range"] = version
        with self.client.stream_blocking("GET", routes.FILES_CONTENT, params={"path": remote},
                                         headers=headers) as resp:
            yield RangeReply(partial=resp.status_code == 206, version=resp.headers.get("etag"),
                             encoding=resp.headers.get("content-encoding", "").strip().lower(),
                             chunks=resp.iter_raw(), wire=lambda: resp.num_bytes_downloaded,
                             abort=socket_closer(resp),
                             content_range=resp.headers.get("content-range"))

    def backoff(self, failures: int) -> float:
        return self.client.retry.delay(failures)


async def download(client: RuntimeClient, remote_path: str, save_dir: str | os.PathLike[str],
                   local_name: str | None = None, *, overwrite: bool = False,
                   progress: ProgressFn | None = None, compress: bool = False,
                   attempts: int = DEFAULT_ATTEMPTS,
                   limits: TransferLimits = DEFAULT_LIMITS, streams: int = DEFAULT_STREAMS,
                   min_span: int = MIN_SPAN) -> DownloadResult:
    """Download one remote file into ``save_dir``: resumable, sha256-verified, atomic.

    ``compress`` asks the runtime for gzip (saves tunnel quota on text-like files);
    a resume after a drop continues uncompressed with ``Range``.  No more bytes
    than the runtime stated are accepted.  A file of at least two ``min_span``
    comes over up to ``streams`` parallel ranged streams (a tunnel that caps each
    stream is filled), still resumable and checked against one sha256.  A new
    parallel download asks its first span at once, without a stat before it (the
    answer's ``Content-Range`` states the size); the whole file's sha256 is asked
    meanwhile.
    """
    tune_read_size()
    final = local_target(save_dir, local_name or remote_name(remote_path))
    refuse_existing(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    hashed: asyncio.Future[FileStat] | None = None
    try:
        got = None
        if (streams > 1 and not compress and spans.AVAILABLE
                and not part_paths(final)[1].exists()):
            # Asked now, answered while the bytes come (the runtime hashes a new file once).
            hashed = asyncio.ensure_future(stat(client, remote_path, with_hash=True))
            with contextlib.suppress(RangeNotSatisfiable, BadRequest, spans.NotRanged):
                # 416: an empty file; 400: not a regular file; 200: no Range support (a
                # server in between?): the stat below says which, one stream as before.
                got = await fetch_unsized(HttpRanges(client), remote_path, final,
                                          streams=streams, min_span=min_span,
                                          attempts=attempts, progress=progress, limits=limits)
        if got is None:
            head = await stat(client, remote_path, with_hash=False)
            if head.type != "file":
                raise InvalidInput(f"'{remote_path[:200]}' is a {head.type} on the runtime; "
                                   "use download_dir for directories")
            check_stated_size(head.size, remote_path[:200])
            if hashed is None:
                hashed = asyncio.ensure_future(stat(client, remote_path, with_hash=True))
            got = await fetch(HttpRanges(client), remote_path, final, size=head.size,
                              version=head.etag, compress=compress, attempts=attempts,
                              progress=progress, limits=limits, streams=streams,
                              min_span=min_span)
        assert hashed is not None  # asked on either path
        remote_stat = await hashed
    finally:
        if hashed is not None and not hashed.done():
            hashed.cancel()
            with contextlib.suppress(BaseException):
                await hashed
        elif hashed is not None and not hashed.cancelled():
            hashed.exception()  # retrieved, so asyncio does not warn about it
    if remote_stat.etag != got.version:
        # The remote file changed since: verify against the version we got, if still there.
        remote_stat = await stat(client, remote_path, with_hash=True)
    await publish_verified(got, remote_stat.sha256, final, overwrite, remote_path)
    return DownloadResult(path=final, size=got.size, sha256=got.sha256,
                          resumed_from=got.resumed_from, attempts=got.attempts,
                          wire_bytes=got.wire_bytes, compressed=got.compressed)


# ---------------------------------------------------------------- upload


async def _file_chunks(path: Path, size: int, progress: ProgressFn | None) -> AsyncIterator[bytes]:
    done = 0
    f: BinaryIO = await asyncio.to_thread(open, path, "rb")
    try:
        while chunk := await asyncio.to_thread(f.read, IO_CHUNK):
            done += len(chunk)
            yield chunk
            await report(progress, done, size)
    finally:
        f.close()


async def upload(client: RuntimeClient, local_path: str | os.PathLike[str], remote_path: str, *,
                 overwrite: bool = False, progress: ProgressFn | None = None,
                 attempts: int = 3, streams: int = DEFAULT_STREAMS,
                 part_size: int | None = None) -> UploadResult:
    """Upload a local file: its sha256 is declared (and signed) first, then streamed.

    A file of at least two parts (``part_size``, default: about 8 parts per stream, 8-64
    MiB) goes in parts over up to ``streams`` parallel connections (a tunnel
    that caps each stream is filled), checked by the runtime against the one sha256
    before it is published; a runtime without the part API (404) gets the single stream.
    """
    path, size = await asyncio.to_thread(local_file, local_path)
    if streams > 1 and size >= 2 * (part_size or MIN_PART):
        # The whole file's sha256 is computed while the parts go; the commit states it.
        hashing = asyncio.ensure_future(asyncio.to_thread(hash_local, path))
        try:
            parted = await upload_parts(client, path, size, hashing, remote_path,
                                        overwrite=overwrite, progress=progress,
                                        streams=streams, attempts=attempts,
                                        part_size=part_size)
        finally:
            if not hashing.done():
                hashing.cancel()
            with contextlib.suppress(BaseException):
                await hashing
        if parted is not None:
            return parted
    path, size, digest = await asyncio.to_thread(hash_local, path)
    failures = 0
    while True:
        try:
            async with client.stream(
                "PUT", routes.FILES_CONTENT,
                params={"path": remote_path, "overwrite": _flag(overwrite)},
                headers={H_CONTENT_SHA256: digest, "Content-Length": str(size)},
                content=_file_chunks(path, size, progress), timeout=600.0,
            ) as resp:
                result = UploadResult.model_validate_json(await resp.aread())
            break
        except InvalidInput as exc:
            if exc.details.get("reason") == "checksum_mismatch":
                raise ChecksumMismatch(f"{path} changed while it was uploaded (or was corrupted "
                                       "on the way); nothing was written; upload again",
                                       details=exc.details) from exc
            raise
        except FileExistsOnRuntime:
            if failures and (await stat(client, remote_path)).sha256 == digest:
                # An earlier attempt landed but its answer was lost.
                return UploadResult(path=remote_path, size=size, sha256=digest, overwritten=False)
            raise
        except RuntimeUnreachable:
            failures += 1
            if failures >= attempts:
                raise
            await asyncio.sleep(client.retry.delay(failures))
    if result.sha256 != digest or result.size != size:
        raise ChecksumMismatch(f"the runtime stored {result.size} bytes with sha256 "
                               f"{result.sha256}, expected {size} bytes with {digest}")
    return result


