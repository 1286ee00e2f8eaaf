"""Uploads in parts: several streams fill one pre-sized ``.part`` file, one sha256 at the end.

A tunnel that caps each TCP stream (Colab's proxy, ngrok, Cloudflare) caps a single
streamed upload too; parts sent over parallel connections fill the link.  The rules:

* part ``n`` is exactly ``[n * part_size, min(size, (n + 1) * part_size))``: an offset
  off that grid or a body of another length is refused before a byte is written, so
  two parts can never overlap;
* a part is written with positioned writes into ``.sc-upload-<id>.part`` beside the
  destination (mode 0600, written down in the upload ledger, hidden from listings), and
  counts as received only once all its bytes arrived and matched its declared digest;
* the whole file's sha256 follows the parts as they land (after each part's answer, the
  run of received parts from the start is hashed, read back from the page cache, and
  its writeback to disk started), so commit hashes only what is left, compares the
  digest with the one stated at creation, fsyncs (little is left dirty) and only then
  links the file into place: nothing half-written is ever published;
* the upload lives in this process: ``status`` lists the parts received, so a client
  cut off resends only the missing ones; an upload idle past ``IDLE_S`` is dropped, and
  a restart sweeps its file through the ledger.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from smartcolab.runtime.files.publish import publish as _publish
from smartcolab.runtime.files.service import UPLOAD_TMP_MARK, Confined
from smartcolab.runtime.files.uploads import UploadLedger
from smartcolab.shared.errors import (
    BadRequest,
    Conflict,
    FileExistsOnRuntime,
    InsufficientStorage,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RateLimited,
)
from smartcolab.shared.protocol import UploadSession

MIN_PART = 1024 * 1024
MAX_PART = 64 * 1024 * 1024
DEFAULT_PART = 16 * 1024 * 1024
MAX_PARTS = 10_000
MAX_OPEN = 16
IDLE_S = 3600.0
PART_SUFFIX = ".part"
HASH_CHUNK = 4 * 1024 * 1024
WRITEBACK_EVERY = 64 * 1024 * 1024


@dataclass
class PartUpload:
    upload_id: str
    target: Confined
    size: int
    sha256: str | None
    overwrite: bool
    part_size: int
    tmp: Path
    fd: int
    token: str
    received: set[int] = field(default_factory=set)
    inflight: set[int] = field(default_factory=set)
    touched: float = field(default_factory=time.monotonic)
    committing: bool = False
    closed: bool = False
    # The whole file's sha256 over parts [0, hashed_parts), advanced under hash_lock.
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)
    hashed_parts: int = 0
    hash_lock: threading.Lock = field(default_factory=threading.Lock)
    written_back: int = 0  # bytes from 0 whose writeback was started (``_write_back``)

    @property
    def parts(self) -> int:
        return math.ceil(self.size / self.part_size)

    def part_range(self, index: int) -> tuple[int, int]:
        start = index * self.part_size
        return start, min(self.size, start + self.part_size)


def choose_part_size(size: int, asked: int | None) -> int:
    part = min(MAX_PART, max(MIN_PART, asked or DEFAULT_PART))
    # Never more than MAX_PARTS parts: a huge file gets bigger parts.
    return max(part, math.ceil(size / MAX_PARTS)) if size else part


class PartUploads:
    """The open uploads of one runtime process (thread-safe: parts arrive concurrently)."""

    def __init__(self, ledger: UploadLedger, max_bytes: int, *, max_open: int = MAX_OPEN,
                 idle_s: float = IDLE_S) -> None:
        self.ledger = ledger
        self.max_bytes = max_bytes
        self.max_open = max_open
        self.idle_s = idle_s
        self._open: dict[str, PartUpload] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ life cycle
    def create(self, target: Confined, rel_path: str, size: int, sha256: str | None,
               overwrite: bool,
               part_size: int | None) -> PartUpload:
        """Check the destination and the limits, then reserve the ``.part`` file."""
        if size > self.max_bytes:
            raise PayloadTooLarge(f"the upload is {size} bytes; this runtime accepts at most "
                                  f"{self.max_bytes} bytes per file",
                                  details={"limit": self.max_bytes})
        part = choose_part_size(size, part_size)
        if part > MAX_PART:
            raise PayloadTooLarge(f"{size} bytes would need parts over {MAX_PART} bytes",
                                  details={"limit": MAX_PART * MAX_PARTS})
        if target.path == target.root:
            raise BadRequest("the upload path names a root directory; give a file name")
        if target.path.is_dir():
            raise Conflict(f"'{rel_path[:200]}' is a directory; choose a file name")
        if target.path.exists() and not overwrite:
            raise FileExistsOnRuntime(f"'{rel_path[:200]}' already exists on the runtime; ask to "
                                      "overwrite it", details={"path": target.rel})
        self.expire()
        with self._lock:
            if len(self._open) >= self.max_open:
                raise RateLimited(f"{len(self._open)} uploads are open on this runtime (at most "
                                  f"{self.max_open}); commit or abort one first",
                                  details={"reason": "too_many_uploads", "limit": self.max_open})
            upload_id = secrets.token_urlsafe(18)
            self._open[upload_id] = placeholder = _placeholder(upload_id)
        try:
            upload = self._reserve(upload_id, target, size, sha256, overwrite, part)
        except BaseException:
            with self._lock:
                if self._open.get(upload_id) is placeholder:
                    del self._open[upload_id]
            raise
        with self._lock:
            self._open[upload_id] = upload
        return upload

    def _reserve(self, upload_id: str, target: Confined, size: int, sha256: str | None,
                 overwrite: bool, part: int) -> PartUpload:
        parent = target.path.parent
        parent.mkdir(parents=True, exist_ok=True)
        tmp = parent / f"{UPLOAD_TMP_MARK}{upload_id}{PART_SUFFIX}"
        token = self.ledger.begin(tmp)
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                         0o600)
        except BaseException:
            self.ledger.end(token)
            raise
        try:
            if size:
                # Reserved now, so a full disk is said at once and not after minutes of parts.
                if hasattr(os, "posix_fallocate"):
                    os.posix_fallocate(fd, 0, size)
                else:  # pragma: no cover - macOS, Windows
                    os.ftruncate(fd, size)
        except OSError as exc:
            _drop(fd, tmp, self.ledger, token)
            raise InsufficientStorage(f"no room for {size} bytes beside "
                                      f"'{target.rel[:200]}': {exc.strerror}",
                                      details={"size": size}) from None
        except BaseException:
            _drop(fd, tmp, self.ledger, token)
            raise
        return PartUpload(upload_id, target, size, sha256, overwrite, part, tmp, fd, token)

    def get(self, upload_id: str) -> PartUpload:
        with self._lock:
            upload = self._open.get(upload_id)
            if upload is None or upload.fd < 0:
                raise NotFound(f"no open upload '{upload_id[:80]}' on this runtime (committed, "
                               "aborted, expired after "
                               f"{self.idle_s:.0f} s idle, or the runtime restarted); "
                               "start the upload again",
                               details={"reason": "upload_not_found"})
            upload.touched = time.monotonic()
            return upload

    def session(self, upload: PartUpload) -> UploadSession:
        with self._lock:
            received = sorted(upload.received)
        return UploadSession(upload_id=upload.upload_id, path=upload.target.rel,
                             size=upload.size, sha256=upload.sha256,
                             part_size=upload.part_size, parts=upload.parts,
                             received=received, expires_in_s=self.idle_s)

    # ------------------------------------------------------------ parts
    def begin_part(self, upload_id: str, offset: int, length: int | None) -> tuple[PartUpload, int]:
        """Claim the part at ``offset``; refused unless it is exactly one part of the grid."""
        upload = self.get(upload_id)
        if offset < 0 or offset >= upload.size or offset % upload.part_size:
            raise RangeNotOnGrid(upload, offset)
        index = offset // upload.part_size
        start, end = upload.part_range(index)
        if length is not None and length != end - start:
            raise BadRequest(f"part {index} is {end - start} bytes (offset {start}); the body "
                             f"states {length}; nothing was written",
                             details={"reason": "bad_part_length", "expected": end - start})
        with self._lock:
            if upload.committing:
                raise Conflict("the upload is being committed; no more parts",
                               details={"reason": "committing"})
            if index in upload.received:
                raise Conflict(f"part {index} was already received",
                               details={"reason": "part_received", "part": index})
            if index in upload.inflight:
                raise Conflict(f"part {index} is being received on another connection",
                               details={"reason": "part_in_flight", "part": index})
            upload.inflight.add(index)
        return upload, index

    def write(self, upload: PartUpload, offset: int, chunks: list[bytes]) -> None:
        """``chunks``, in order, at ``offset``: one vectored write where the OS has it,
        the rest of a short write by plain writes."""
        written = 0
        if len(chunks) > 1 and hasattr(os, "pwritev"):
            written = os.pwritev(upload.fd, chunks, offset)
            if written == sum(len(c) for c in chunks):
                return
        view = memoryview(b"".join(chunks) if len(chunks) > 1 else chunks[0])[written:]
        offset += written
        while view:
            n = os.pwrite(upload.fd, view, offset)
            view, offset = view[n:], offset + n

    def end_part(self, upload: PartUpload, index: int, ok: bool) -> None:
        with self._lock:
            upload.inflight.discard(index)
            if ok:
                upload.received.add(index)
            upload.touched = time.monotonic()
            last_out = upload.closed and not upload.inflight
        if last_out:
            self._cleanup(upload)

    def advance_hash(self, upload: PartUpload, *, wait: bool = False) -> None:
        """Hash the received parts that follow the hashed ones (after a part's answer;
        at commit with ``wait``).  Without ``wait`` it leaves the work to a thread that
        is already at it (commit catches up whatever that one missed)."""
        if not upload.hash_lock.acquire(blocking=wait):
            return
        try:
            while True:
                with self._lock:
                    index = upload.hashed_parts
                    if upload.closed or index not in upload.received:
                        return
                start, end = upload.part_range(index)
                _hash_into(upload.hasher, upload.fd, start, end)
                upload.hashed_parts = index + 1
                _write_back(upload, end)
        except OSError:  # the upload was aborted meanwhile: its file is gone
            return
        finally:
            upload.hash_lock.release()

    # ------------------------------------------------------------ end
    def commit(self, upload_id: str, mode: int,
               sha256: str | None = None) -> tuple[PartUpload, bool]:
        """Hash the whole file, check it, fsync, publish; returns (upload, overwritten)."""
        upload = self.get(upload_id)
        if sha256 is not None and upload.sha256 is not None and sha256 != upload.sha256:
            raise InvalidInput("the commit states another sha256 than the upload's creation; "
                               "nothing was written", details={"reason": "sha256_differs"})
        expected = sha256 or upload.sha256
        if expected is None:
            raise InvalidInput("state the whole file's sha256 (at creation or in the commit); "
                               "nothing was written", details={"reason": "sha256_missing"})
        with self._lock:
            if upload.committing:
                raise Conflict("the upload is already being committed",
                               details={"reason": "committing"})
            missing = sorted(set(range(upload.parts)) - upload.received)
            if upload.inflight or missing:
                raise Conflict(f"{len(missing)} of {upload.parts} parts are missing; send them "
                               "and commit again", details={"reason": "parts_missing",
                                                           "missing": missing[:100]})
            upload.committing = True
        try:
            self.advance_hash(upload, wait=True)
            if upload.hashed_parts != upload.parts:
                raise OSError(f"read back {upload.hashed_parts} of {upload.parts} parts")
            digest = upload.hasher.copy().hexdigest()
            if digest != expected:
                # The parts are kept: the client may resend the ones it doubts, or abort.
                raise InvalidInput(f"the uploaded parts hash to {digest}, not the declared "
                                   f"{expected}; nothing was written",
                                   details={"reason": "checksum_mismatch", "received": digest})
            existed = upload.target.path.exists()
            os.fchmod(upload.fd, mode)
            os.fsync(upload.fd)
            _publish(upload.tmp, upload.target.path, upload.overwrite)
        except BaseException:
            with self._lock:
                upload.committing = False
            raise
        upload.sha256 = digest
        self._forget(upload, remove_file=False)
        return upload, existed and upload.overwrite

    def abort(self, upload_id: str) -> None:
        upload = self.get(upload_id)
        with self._lock:
            if upload.committing:
                raise Conflict("the upload is being committed", details={"reason": "committing"})
        self._forget(upload, remove_file=True)

    def expire(self) -> int:
        """Drop the uploads idle past ``idle_s``; returns how many."""
        now = time.monotonic()
        with self._lock:
            idle = [u for u in self._open.values() if u.fd >= 0 and not u.committing
                    and not u.inflight and now - u.touched > self.idle_s]
        for upload in idle:
            self._forget(upload, remove_file=True)
        return len(idle)

    def _forget(self, upload: PartUpload, *, remove_file: bool) -> None:
        with self._lock:
            if self._open.get(upload.upload_id) is upload:
                del self._open[upload.upload_id]
            if upload.closed:
                return
            upload.closed = True
            busy = bool(upload.inflight)
        if not remove_file:
            with contextlib.suppress(OSError):
                os.close(upload.fd)
            self.ledger.end(upload.token)
        elif not busy:  # else the last part to end cleans up (its write must not hit a closed fd)
            self._cleanup(upload)

    def _cleanup(self, upload: PartUpload) -> None:
        _drop(upload.fd, upload.tmp, self.ledger, upload.token)


class RangeNotOnGrid(BadRequest):
    """A part offset that is not the start of a part (it would overlap its neighbours)."""

    def __init__(self, upload: PartUpload, offset: int) -> None:
        super().__init__(f"offset {offset} is not the start of a part: parts are "
                         f"{upload.part_size} bytes from 0 to {upload.size}; nothing was written",
                         details={"reason": "bad_offset", "part_size": upload.part_size,
                                  "size": upload.size})


def _placeholder(upload_id: str) -> PartUpload:
    """Holds a slot (counted against ``max_open``) while the file is being reserved."""
    return PartUpload(upload_id, Confined(Path("/"), Path("/")), 0, "", False, 1, Path("/"), -1, "")


def _drop(fd: int, tmp: Path, ledger: UploadLedger, token: str) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
    with contextlib.suppress(OSError):
        tmp.unlink()
    ledger.end(token)


def _write_back(upload: PartUpload, hashed: int) -> None:
    """Start writing the hashed bytes to disk (not waiting) and drop the clean pages.

    Left dirty, the whole file waited for the commit's fsync: 1.85 s for 1 GiB on
    this machine, with the link idle.  The window reaches back one step, so pages
    still dirty last time are dropped now.  Where ``posix_fadvise`` is missing it
    does nothing (the fsync then does it all, as before).
    """
    advise = getattr(os, "posix_fadvise", None)
    if advise is None or hashed - upload.written_back < WRITEBACK_EVERY:
        return
    start = max(0, upload.written_back - WRITEBACK_EVERY)
    with contextlib.suppress(OSError):
        advise(upload.fd, start, hashed - start, os.POSIX_FADV_DONTNEED)
    upload.written_back = hashed


def _hash_into(h: hashlib._Hash, fd: int, start: int, end: int) -> None:
    offset = start
    while offset < end:
        chunk = os.pread(fd, min(HASH_CHUNK, end - offset), offset)
        if not chunk:
            raise OSError(f"the part file ends at {offset}, before {end}")
        h.update(chunk)
        offset += len(chunk)
