"""Uploads in parts over HTTP: create, PUT parts (in parallel), status, commit, abort.

All of it behind ``security/gate.py`` like every other route.  The part PUT is, like
the streamed upload, a route whose body the gate does not buffer: the part's digest is
declared in ``X-SC-Content-SHA256`` (which the signature covers, with the upload id
and offset in the query) and checked here before the part counts as received.  The
rules of the parts themselves are in ``runtime/files/parts.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Query, Request

from smartcolab.runtime.api.files import UPLOAD_IDLE_S, _files, body_chunks
from smartcolab.runtime.files.parts import PartUpload, PartUploads
from smartcolab.runtime.files.publish import file_mode
from smartcolab.runtime.state import RuntimeState
from smartcolab.shared import routes
from smartcolab.shared.errors import BadRequest, InvalidInput
from smartcolab.shared.protocol import (
    EMPTY_SHA256,
    H_CONTENT_SHA256,
    H_SIGNATURE,
    UPLOAD_ID_PATTERN,
    UploadCommit,
    UploadCreate,
    UploadResult,
    UploadSession,
)

log = logging.getLogger("smartcolab.runtime.files.parts")
router = APIRouter(tags=["files"])
part_router = APIRouter(tags=["files"])
UploadId = Annotated[str, Query(pattern=UPLOAD_ID_PATTERN)]
WRITE_CHUNK = 1024 * 1024
WRITE_CHUNKS = 256  # chunks per write at most (the OS takes 1024 buffers in one call)
_SHA_HEX = re.compile(r"^[0-9a-f]{64}$")


def _parts(request: Request) -> PartUploads:
    parts: PartUploads | None = getattr(request.app.state, "sc_parts", None)
    if parts is None:
        state: RuntimeState = request.app.state.sc
        parts = PartUploads(state.uploads, state.config.max_upload_bytes)
        request.app.state.sc_parts = parts
    return parts


def _check_id(upload_id: str) -> str:
    if not re.fullmatch(UPLOAD_ID_PATTERN, upload_id):
        raise InvalidInput("not an upload id", details={"reason": "bad_upload_id"})
    return upload_id


@router.post(routes.FILES_UPLOADS, response_model=UploadSession, status_code=201)
async def create_upload(request: Request, body: UploadCreate) -> UploadSession:
    """Start an upload in parts: the destination is checked and the file reserved now."""
    svc = _files(request)
    target = svc.confine(body.path)
    svc.refuse_state_dir(target)
    parts = _parts(request)
    upload = await asyncio.to_thread(parts.create, target, body.path, body.size, body.sha256,
                                     body.overwrite, body.part_size)
    return parts.session(upload)


@router.get(routes.FILES_UPLOAD, response_model=UploadSession)
async def upload_status(request: Request, upload_id: str) -> UploadSession:
    """Which parts are in: a client cut off resends only the others."""
    parts = _parts(request)
    return parts.session(parts.get(_check_id(upload_id)))


@router.post(routes.FILES_UPLOAD_COMMIT, response_model=UploadResult)
async def commit_upload(request: Request, upload_id: str,
                        body: UploadCommit | None = None) -> UploadResult:
    """Every part in: the whole file's sha256 (stated at creation or here) is checked,
    then the file is fsynced and published."""
    parts = _parts(request)
    upload, overwritten = await asyncio.to_thread(
        parts.commit, _check_id(upload_id), file_mode(), body.sha256 if body else None)
    digest = upload.sha256 or ""
    st = await asyncio.to_thread(upload.target.path.stat)
    _files(request).remember((str(upload.target.path), st.st_size, st.st_mtime_ns), digest)
    return UploadResult(path=upload.target.rel, size=upload.size, sha256=digest,
                        overwritten=overwritten)


@router.delete(routes.FILES_UPLOAD, status_code=204)
async def abort_upload(request: Request, upload_id: str) -> None:
    """Drop the upload and its ``.part`` file."""
    await asyncio.to_thread(_parts(request).abort, _check_id(upload_id))


def _declared(request: Request) -> str | None:
    declared = request.headers.get(H_CONTENT_SHA256)
    if declared is None:
        # Signed requests always declare one (the empty digest if nothing else); a bearer
        # part may omit it: the whole file's sha256 at commit still checks it.
        return EMPTY_SHA256 if H_SIGNATURE in request.headers else None
    declared = declared.strip().lower()
    if not _SHA_HEX.match(declared):
        raise InvalidInput(f"{H_CONTENT_SHA256} must be 64 hex digits (the sha256 of the part)")
    return declared


@part_router.put(routes.FILES_UPLOAD_PART, status_code=204)
async def put_part(request: Request, background: BackgroundTasks, upload_id: UploadId,
                   offset: Annotated[int, Query(ge=0, le=2**62)],
                   check: Annotated[Literal["part", "commit"], Query(
                       description="part: the part's sha256 declared in X-SC-Content-SHA256 "
                                   "is checked; commit: only the whole file's sha256 at commit "
                                   "checks the bytes (one hash pass less on both sides)")] = "part",
                   ) -> None:
    """One part, streamed to its place in the ``.part`` file; it counts once complete (and
    matching its declared digest, unless ``check=commit``)."""
    declared = _declared(request) if check == "part" else None
    length_header = request.headers.get("content-length")
    length = int(length_header) if length_header and length_header.isdigit() else None
    parts = _parts(request)
    upload, index = parts.begin_part(upload_id, offset, length)
    ok = False
    try:
        digest = await _receive(request, parts, upload, offset, hashed=declared is not None)
        if declared is not None and digest != declared:
            raise InvalidInput(f"part {index} hashes to {digest}, not the declared {declared}; "
                               "it was not accepted: send it again",
                               details={"reason": "checksum_mismatch", "part": index})
        ok = True
    finally:
        parts.end_part(upload, index, ok)
    # After the answer: the whole file's sha256 follows the parts, off the part's path.
    background.add_task(parts.advance_hash, upload)


async def _receive(request: Request, parts: PartUploads, upload: PartUpload, offset: int, *,
                   hashed: bool) -> str:
    """The part's bytes into place; their sha256 if ``hashed`` (else empty)."""
    start, end = upload.part_range(offset // upload.part_size)
    h = hashlib.sha256() if hashed else None
    pos = start
    # The chunks as they came, written with one vectored write per ~1 MiB: no copy into
    # a buffer and out again (two copies of every byte, 9 % of the runtime's CPU on a
    # 1 GiB upload); a sender of tiny chunks is bounded by WRITE_CHUNKS.
    held: list[bytes] = []
    size = 0
    async for chunk in body_chunks(
            request, idle=f"no part data for {UPLOAD_IDLE_S:.0f} s; the part was not accepted",
            cut=BadRequest("the part was interrupted; send it again",
                           details={"reason": "part_interrupted"})):
        if pos + size + len(chunk) > end:
            raise BadRequest(f"the part runs past its end ({end - start} bytes); it was "
                             "not accepted", details={"reason": "bad_part_length"})
        held.append(chunk)
        size += len(chunk)
        if size >= WRITE_CHUNK or len(held) >= WRITE_CHUNKS:
            await asyncio.to_thread(_write_and_hash, parts, upload, pos, held, h)
            pos, held, size = pos + size, [], 0
    if held:
        await asyncio.to_thread(_write_and_hash, parts, upload, pos, held, h)
        pos += size
    if pos != end:
        raise BadRequest(f"received {pos - start} of the part's {end - start} bytes; it was "
                         "not accepted", details={"reason": "bad_part_length"})
    return h.hexdigest() if h is not None else ""


def _write_and_hash(parts: PartUploads, upload: PartUpload, pos: int, chunks: list[bytes],
                    h: hashlib._Hash | None) -> None:
    if h is not None:
        for chunk in chunks:
            h.update(chunk)
    parts.write(upload, pos, chunks)
