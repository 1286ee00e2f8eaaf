"""File endpoints: list, stat, download (ranges, gzip), directory archives, upload, delete.

Both routers are authenticated by ``security/gate.py`` before any body is read.
The streamed upload (``upload_router``) is the one route whose body the gate does not
hash: it is never buffered, and the route itself checks the bytes against the digest
declared in ``X-SC-Content-SHA256`` (which the signature covers) before anything
appears at the destination.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import secrets
import stat as stat_mod
import zlib
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import Annotated, Any, BinaryIO, Literal

import anyio
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from smartcolab.runtime.files.archive import tar_stream
from smartcolab.runtime.files.service import (
    DEFAULT_LIST_LIMIT,
    MAX_LIST_LIMIT,
    MAX_PATH_CHARS,
    UPLOAD_TMP_MARK,
    FileService,
    etag_for,
    open_regular,
)
from smartcolab.runtime.state import RuntimeState
from smartcolab.shared import routes
from smartcolab.shared.errors import (
    BadRequest,
    Conflict,
    FileExistsOnRuntime,
    InvalidInput,
    PayloadTooLarge,
    RangeNotSatisfiable,
    SmartColabError,
)
from smartcolab.shared.protocol import (
    EMPTY_SHA256,
    H_CONTENT_SHA256,
    H_IDENTITY_LENGTH,
    H_SIGNATURE,
    DeleteResult,
    FileList,
    FileStat,
    UploadResult,
)

log = logging.getLogger("smartcolab.runtime.files.service")
router = APIRouter(tags=["files"])
# What check_client_path enforces, stated in the OpenAPI document too.
ClientPath = Annotated[str, Query(max_length=MAX_PATH_CHARS, pattern=r"^[^\x00]*$",
                                  description="relative to the working root, or absolute "
                                              "inside a root; no NUL byte")]
upload_router = APIRouter(tags=["files"])

CHUNK = 1024 * 1024
# An upload that sends nothing for this long is dropped (and its temp file removed).
UPLOAD_IDLE_S = 120.0
GZIP_LEVEL = 6
GZIP_MIN_BYTES = 1024
# Already-compressed formats gain nothing from gzip; they are sent as they are.
INCOMPRESSIBLE = frozenset({
    ".gz", ".tgz", ".zip", ".zst", ".xz", ".bz2", ".7z", ".rar", ".lz4", ".br", ".png", ".jpg",
    ".jpeg", ".gif", ".webp", ".mp3", ".mp4", ".mkv", ".avi", ".mov", ".ogg", ".flac", ".pdf",
    ".parquet", ".npz", ".pt", ".pth", ".safetensors", ".h5", ".onnx", ".whl", ".jar"})
# At most 19 digits (any file offset fits); longer numbers are refused, never converted.
_RANGE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")
_SHA_HEX = re.compile(r"^[0-9a-f]{64}$")


async def body_chunks(request: Request, *, idle: str, cut: SmartColabError
                      ) -> AsyncIterator[bytes]:
    """A request body as it arrives.  A sender silent for ``UPLOAD_IDLE_S`` ends it with a
    400 saying ``idle``; one gone mid-body, with ``cut``."""
    stream = request.stream()
    try:
        while True:
            try:
                with anyio.fail_after(UPLOAD_IDLE_S):
                    chunk = await anext(stream)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise BadRequest(idle) from None
            yield chunk
    except ClientDisconnect:
        raise cut from None


def _files(request: Request) -> FileService:
    svc: FileService | None = getattr(request.app.state, "sc_files", None)
    if svc is None:
        state: RuntimeState = request.app.state.sc
        svc = FileService(state.config.roots, state.config.state_dir)
        request.app.state.sc_files = svc
    return svc


@router.get(routes.FILES, response_model=FileList)
async def list_files(request: Request, path: ClientPath = "", recursive: bool = False,
                     pattern: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = DEFAULT_LIST_LIMIT,
                     cursor: Annotated[str | None, Query(
                         pattern=r"^[A-Za-z0-9_-]{1,512}$",
                         description="next_cursor of the previous page, as given")] = None,
                     include_state: bool = False) -> FileList:
    """Entries of a directory (recursively if asked), filtered by a glob, paginated."""
    svc = _files(request)
    return await asyncio.to_thread(svc.list, path, recursive=recursive, pattern=pattern,
                                   limit=limit, cursor=cursor, include_state=include_state)


@router.get(routes.FILES_STAT, response_model=FileStat)
async def stat_file(request: Request, path: ClientPath, hash: bool = True) -> FileStat:
    """Type, size, mtime, ETag and (for files) sha256, cached by size and mtime."""
    return await _files(request).stat(path, with_hash=hash)


def parse_range(header: str, size: int) -> tuple[int, int]:
    """One ``bytes=a-b`` / ``a-`` / ``-n`` range as inclusive (start, end)."""
    match = _RANGE.match(header[:100].strip().replace(" ", "")) if len(header) <= 100 else None
    if match is None:
        raise RangeNotSatisfiable(f"unsupported Range header '{header[:80]}'; send one range "
                                  "such as 'bytes=1000-'", details={"size": size})
    first, last = match.groups()
    if first == "" and last == "":
        raise RangeNotSatisfiable("empty byte range", details={"size": size})
    if first == "":
        start, end = max(0, size - int(last)), size - 1
    else:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start or size == 0:
        raise RangeNotSatisfiable(f"range {header[:80]} is outside the file's {size} bytes",
                                  details={"size": size})
    return start, end


def _gzip_ok(name: str, size: int) -> bool:
    return size >= GZIP_MIN_BYTES and os.path.splitext(name)[1].lower() not in INCOMPRESSIBLE


async def _read_range(f: BinaryIO, start: int, length: int) -> AsyncIterator[bytes]:
    try:
        await asyncio.to_thread(f.seek, start)
        remaining = length
        while remaining > 0:
            chunk = await asyncio.to_thread(f.read, min(CHUNK, remaining))
            if not chunk:
                break  # the file shrank: the response ends short and the client resumes
            remaining -= len(chunk)
            yield chunk
    finally:
        f.close()


async def _gzip(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    comp = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    async for chunk in chunks:
        out = await asyncio.to_thread(comp.compress, chunk)
        if out:
            yield out
    yield comp.flush()


_BYTES = {"schema": {"type": "string", "format": "binary"}}


_CONTENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The file's bytes", "content": {"application/octet-stream": _BYTES}},
    206: {"description": "The requested range of the file's bytes",
          "content": {"application/octet-stream": _BYTES}}}


# Two registrations, each with its own operation id: one route for both methods gives the
# OpenAPI document the same id twice.
@router.head(routes.FILES_CONTENT, operation_id="head_content", responses=_CONTENT_RESPONSES)
@router.get(routes.FILES_CONTENT, operation_id="get_content", responses=_CONTENT_RESPONSES)
async def get_content(request: Request, path: ClientPath, compress: bool = Query(
        False, description="gzip the body (Content-Encoding) if the file looks compressible; "
                           "ignored with Range")) -> Response:
    """The file's bytes, streamed; ``Range`` (with ``If-Range``) resumes a download."""
    svc = _files(request)
    target, st = svc.existing(path)
    if not stat_mod.S_ISREG(st.st_mode):
        raise BadRequest(f"'{path[:200]}' is not a regular file; download a directory with "
                         "GET /files/archive", details={"reason": "not_a_file"})
    # closed by the body iterator or below
    f = await asyncio.to_thread(open_regular, target.path)
    try:
        st = os.fstat(f.fileno())  # validators of the bytes actually opened
        size, etag = st.st_size, etag_for(st)
        headers = {"ETag": etag, "Accept-Ranges": "bytes", "Vary": "Accept-Encoding",
                   "Last-Modified": formatdate(st.st_mtime, usegmt=True),
                   "Content-Type": "application/octet-stream"}
        start, length, status = 0, size, 200
        range_header = request.headers.get("range")
        if_range = request.headers.get("if-range")
        if range_header and (if_range is None or if_range.strip() == etag):
            start, end = parse_range(range_header, size)
            length, status = end - start + 1, 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        elif compress and not range_header and _gzip_ok(target.path.name, size):
            headers.update({"Content-Encoding": "gzip", H_IDENTITY_LENGTH: str(size)})
            if request.method == "HEAD":
                f.close()
                return Response(status_code=200, headers=headers)
            return StreamingResponse(_gzip(_read_range(f, 0, size)), headers=headers)
        headers["Content-Length"] = str(length)
        if request.method == "HEAD":
            f.close()
            return Response(status_code=status, headers=headers)
    except BaseException:
        f.close()
        raise
    return StreamingResponse(_read_range(f, start, length), status_code=status, headers=headers)


_ARCHIVE_TYPES = {"none": ("application/x-tar", ".tar"), "gzip": ("application/gzip", ".tar.gz"),
                  "zstd": ("application/zstd", ".tar.zst")}


@router.get(routes.FILES_ARCHIVE, responses={200: {
    "description": "A tar stream of the directory",
    "content": {"application/x-tar": _BYTES, "application/gzip": _BYTES,
                "application/zstd": _BYTES}}})
async def get_archive(request: Request, path: ClientPath = "",
                      compression: Literal["none", "gzip", "zstd"] = "none") -> Response:
    """A directory as a tar stream (optionally gzip or zstd), built on the fly."""
    svc = _files(request)
    target, st = svc.existing(path)
    if not stat_mod.S_ISDIR(st.st_mode):
        raise BadRequest(f"'{path[:200]}' is not a directory; download a file with "
                         "GET /files/content", details={"reason": "not_a_directory"})
    body = tar_stream(svc, target, compression)
    first = await anext(body)  # raises (e.g. zstd missing) before any header is sent
    media, ext = _ARCHIVE_TYPES[compression]
    name = (target.path.name or "root") + ext

    async def rest() -> AsyncIterator[bytes]:
        try:
            yield first
            async for chunk in body:
                yield chunk
        finally:
            await body.aclose()

    return StreamingResponse(rest(), media_type=media, headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{_quote(name)}"})


def _quote(name: str) -> str:
    from urllib.parse import quote
    return quote(name, safe="")


@router.delete(routes.FILES, response_model=DeleteResult)
async def delete_file(request: Request, path: ClientPath, confirm: Annotated[bool, Query(
        description="must be true: without it nothing is deleted (400 confirm_required)",
        json_schema_extra={"enum": [True]})] = False) -> DeleteResult:
    """Delete one file (never a directory), only with ``confirm=true``."""
    target = await asyncio.to_thread(_files(request).delete, path, confirm=confirm)
    return DeleteResult(path=target.rel, deleted=True)


def _declared_digest(request: Request) -> str | None:
    declared = request.headers.get(H_CONTENT_SHA256)
    if declared is None:
        # A signed request signs the empty digest when it declares none; bearer
        # uploads (curl) may omit it and are then stored unverified.
        return EMPTY_SHA256 if H_SIGNATURE in request.headers else None
    declared = declared.strip().lower()
    if not _SHA_HEX.match(declared):
        raise InvalidInput(f"{H_CONTENT_SHA256} must be 64 hex digits (the sha256 of the file)")
    return declared


def _write_and_hash(f: BinaryIO, h: hashlib._Hash, data: bytes) -> None:
    h.update(data)
    f.write(data)


@upload_router.put(routes.FILES_CONTENT, response_model=UploadResult)
async def put_content(request: Request, path: ClientPath,
                      overwrite: bool = Query(False, description="replace an existing file"),
                      ) -> UploadResult:
    """Streamed upload: temp file beside the target, digest check, fsync, atomic rename."""
    svc = _files(request)
    state: RuntimeState = request.app.state.sc
    limit = state.config.max_upload_bytes
    target = svc.confine(path)
    svc.refuse_state_dir(target)
    if target.path == target.root:
        raise BadRequest("the upload path names a root directory; give a file name")
    declared = _declared_digest(request)
    length_header = request.headers.get("content-length")
    expected = int(length_header) if length_header and length_header.isdigit() else None
    if expected is not None and expected > limit:
        raise PayloadTooLarge(f"the upload is {expected} bytes; this runtime accepts at most "
                              f"{limit} bytes per file", details={"limit": limit})
    existed = target.path.exists()
    if target.path.is_dir():
        raise Conflict(f"'{path[:200]}' is a directory; choose a file name")
    if existed and not overwrite:
        raise FileExistsOnRuntime(f"'{path[:200]}' already exists on the runtime; ask to "
                                  "overwrite it (overwrite=true in a tool call or the query, "
                                  "--overwrite on the command line)", details={"path": target.rel})
    parent = target.path.parent
    await asyncio.to_thread(parent.mkdir, parents=True, exist_ok=True)
    tmp = parent / f"{UPLOAD_TMP_MARK}{secrets.token_hex(8)}.tmp"
    h = hashlib.sha256()
    received = 0
    ledger = state.uploads
    token = await asyncio.to_thread(ledger.begin, tmp)
    try:
        f = await asyncio.to_thread(open, tmp, "xb")  # closed in every branch below
    except BaseException:
        ledger.end(token)
        raise
    try:
        buf = bytearray()
        async for chunk in body_chunks(
                request, idle=f"no upload data for {UPLOAD_IDLE_S:.0f} s; nothing was written",
                cut=BadRequest("the upload was interrupted; nothing was written")):
            received += len(chunk)
            if received > limit:
                raise PayloadTooLarge(f"the upload exceeds this runtime's limit of {limit} "
                                      "bytes per file; nothing was written",
                                      details={"limit": limit})
            buf += chunk
            if len(buf) >= CHUNK:
                await asyncio.to_thread(_write_and_hash, f, h, bytes(buf))
                buf.clear()
        await asyncio.to_thread(_write_and_hash, f, h, bytes(buf))
        if expected is not None and received != expected:
            raise BadRequest(f"received {received} of {expected} bytes; nothing was written")
        digest = h.hexdigest()
        if declared is not None and digest != declared:
            raise InvalidInput(f"the uploaded bytes hash to {digest}, not the declared "
                               f"{declared}; nothing was written",
                               details={"reason": "checksum_mismatch", "received": digest})
        await asyncio.to_thread(_finish, f, tmp, target.path, overwrite)
    except BaseException as exc:
        f.close()
        with contextlib.suppress(OSError):
            tmp.unlink()
        log.info("upload to %s refused or interrupted after %d bytes (%s); temp file removed",
                 target.rel, received, type(exc).__name__)
        raise
    finally:
        ledger.end(token)
    st = target.path.stat()
    svc.remember((str(target.path), st.st_size, st.st_mtime_ns), digest)
    return UploadResult(path=target.rel, size=received, sha256=digest,
                        overwritten=existed and overwrite)


def _finish(f: BinaryIO, tmp: os.PathLike[str], dest: os.PathLike[str], overwrite: bool) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()
    if overwrite:
        os.replace(tmp, dest)
    else:
        try:
            os.link(tmp, dest)  # atomic "create if absent": a racing writer cannot be clobbered
        except FileExistsError:
            raise FileExistsOnRuntime("the file appeared during the upload; pass "
                                      "overwrite=true to replace it") from None
        except OSError:  # filesystems without hard links (some FUSE mounts)
            if os.path.exists(dest):
                raise FileExistsOnRuntime("the file appeared during the upload") from None
            os.replace(tmp, dest)
        else:
            os.unlink(tmp)
    dir_fd = os.open(os.path.dirname(os.fspath(dest)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
