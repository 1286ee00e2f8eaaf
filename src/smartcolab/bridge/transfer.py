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
import hashlib
import json
import os
import random
import shutil
import tarfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Literal

from ..errors import (
    ChecksumMismatch,
    FileExistsOnRuntime,
    InvalidInput,
    LocalPathRefused,
    RuntimeUnreachable,
)
from ..protocol import H_CONTENT_SHA256, DeleteResult, FileEntry, FileList, FileStat, UploadResult
from .client import RuntimeClient

ProgressFn = Callable[[int, "int | None"], None]
Compression = Literal["none", "gzip", "zstd"]

DEFAULT_ATTEMPTS = 8
MAX_TOTAL_ATTEMPTS = 100
IO_CHUNK = 1024 * 1024
H_IDENTITY_LENGTH = "X-SC-Identity-Length"
_ARCHIVE_EXT = {"none": ".tar", "gzip": ".tar.gz", "zstd": ".tar.zst"}


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    size: int
    sha256: str
    resumed_from: int = 0
    attempts: int = 1
    wire_bytes: int = 0
    compressed: bool = False


@dataclass(frozen=True)
class ArchiveResult:
    path: Path
    wire_bytes: int
    extracted: bool
    members: int = 0
    refused: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- small helpers
async def list_files(client: RuntimeClient, path: str = "", *, recursive: bool = False,
                     pattern: str | None = None, limit: int = 1000,
                     cursor: str | None = None) -> FileList:
    """One page of a remote listing; pass ``next_cursor`` back for the next."""
    r = await client.request("GET", "/files", params={
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
    r = await client.request("GET", "/files/stat", params={"path": path, "hash": _flag(with_hash)})
    return FileStat.model_validate(r.json())


async def delete(client: RuntimeClient, path: str) -> DeleteResult:
    """Delete one remote file (never a directory)."""
    r = await client.request("DELETE", "/files", params={"path": path, "confirm": "true"},
                             idempotent=False)
    return DeleteResult.model_validate(r.json())


def _flag(value: bool) -> str:
    return "true" if value else "false"


def local_target(save_dir: str | os.PathLike[str], name: str) -> Path:
    """``save_dir/name``, refusing names that are absolute, climb out, or pass a symlink out."""
    if not name or "\x00" in name:
        raise LocalPathRefused("the local name is empty or contains a NUL byte")
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise LocalPathRefused(f"the local name '{name[:200]}' is absolute; give a name relative "
                               "to the save directory")
    if any(part in ("..", ".") for part in pure.parts) or not pure.parts:
        raise LocalPathRefused(f"the local name '{name[:200]}' may not contain '..' or '.' parts")
    base = Path(save_dir).expanduser().resolve()
    target = base.joinpath(*pure.parts)
    parent = target.parent.resolve()
    if parent != base and base not in parent.parents:
        raise LocalPathRefused(f"'{name[:200]}' would be written outside {base} (a symlinked "
                               "directory leads out)")
    return parent / target.name


def _remote_name(remote_path: str) -> str:
    name = PurePosixPath(remote_path.replace("\\", "/")).name
    if not name or name in (".", ".."):
        raise LocalPathRefused(f"cannot derive a local name from '{remote_path[:200]}'; pass "
                               "local_name")
    return name


def _backoff(client: RuntimeClient, failures: int) -> float:
    base = min(client.retry.max_s, client.retry.initial_s * (2 ** max(0, failures - 1)))
    return float(base) * random.uniform(0.5, 1.0)


def _hash_prefix(path: Path, length: int) -> Any:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = length
        while left > 0:
            chunk = f.read(min(IO_CHUNK, left))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _publish(part: Path, final: Path, overwrite: bool) -> None:
    """Move a verified ``.part`` to its name; without ``overwrite`` never clobber."""
    if overwrite:
        os.replace(part, final)
    else:
        try:
            os.link(part, final)
        except FileExistsError:
            raise LocalPathRefused(f"{final} already exists; pass overwrite=True to replace "
                                   "it", details={"reason": "exists"}) from None
        except OSError:
            if final.exists():
                raise LocalPathRefused(f"{final} already exists", details={"reason": "exists"}) from None
            os.replace(part, final)
        else:
            part.unlink()
    _fsync_dir(final.parent)


def _discard(*paths: Path) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def _refuse_existing(final: Path, overwrite: bool) -> None:
    if final.is_dir():
        raise LocalPathRefused(f"{final} is a directory; choose another local name")
    if final.exists() and not overwrite:
        raise LocalPathRefused(f"{final} already exists; pass overwrite=True to replace it",
                               details={"reason": "exists"})


def _part_paths(final: Path) -> tuple[Path, Path]:
    part = final.with_name(final.name + ".part")
    meta = final.with_name(final.name + ".part.json")
    for p in (part, meta):
        if p.is_symlink():  # a planted link would redirect our writes elsewhere
            p.unlink()
    return part, meta


def _resume_offset(part: Path, meta: Path, remote: str, head: FileStat) -> int:
    """Bytes of ``part`` that belong to the current remote version, else 0."""
    try:
        info = json.loads(meta.read_text())
        size = part.stat().st_size
    except (OSError, ValueError):
        return 0
    if info.get("remote") != remote or info.get("etag") != head.etag or size > head.size:
        return 0
    return size


# ---------------------------------------------------------------- download
async def download(client: RuntimeClient, remote_path: str, save_dir: str | os.PathLike[str],
                   local_name: str | None = None, *, overwrite: bool = False,
                   progress: ProgressFn | None = None, compress: bool = False,
                   attempts: int = DEFAULT_ATTEMPTS) -> DownloadResult:
    """Download one remote file into ``save_dir``: resumable, sha256-verified, atomic.

    ``compress`` asks the runtime for gzip (saves tunnel quota on text-like files);
    a resume after a drop continues uncompressed with ``Range``.
    """
    final = local_target(save_dir, local_name or _remote_name(remote_path))
    _refuse_existing(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    part, meta = _part_paths(final)
    head = await stat(client, remote_path, with_hash=False)
    if head.type != "file":
        raise InvalidInput(f"'{remote_path[:200]}' is a {head.type} on the runtime; use "
                           "download_dir for directories")
    hashed = asyncio.ensure_future(stat(client, remote_path, with_hash=True))
    try:
        return await _download_body(client, remote_path, head, hashed, part, meta, final,
                                    overwrite, progress, compress, attempts)
    finally:
        if not hashed.done():
            hashed.cancel()
            with contextlib.suppress(BaseException):
                await hashed


async def _download_body(client: RuntimeClient, remote: str, head: FileStat,
                         hashed: asyncio.Future[FileStat], part: Path, meta: Path, final: Path,
                         overwrite: bool, progress: ProgressFn | None, compress: bool,
                         attempts: int) -> DownloadResult:
    etag = head.etag or ""
    total = head.size
    offset = await asyncio.to_thread(_resume_offset, part, meta, remote, head)
    resumed_from = offset
    hasher = await asyncio.to_thread(_hash_prefix, part, offset) if offset else hashlib.sha256()
    _write_json_atomic(meta, {"remote": remote, "etag": etag, "size": total})
    failures = tries = wire = 0
    used_gzip = False
    with open(part, "r+b" if offset else "wb") as f:  # noqa: ASYNC230 - local disk, small writes
        f.truncate(offset)
        f.seek(offset)
        while offset < total:
            tries += 1
            before = offset
            gzip_now = compress and offset == 0
            headers = {"Accept-Encoding": "gzip" if gzip_now else "identity"}
            if offset:
                headers.update({"Range": f"bytes={offset}-", "If-Range": etag})
            try:
                async with client.stream("GET", "/files/content", params={
                        "path": remote, "compress": "true" if gzip_now else None},
                                         headers=headers) as resp:
                    if resp.status_code != 206 and offset:
                        # The runtime sent the whole file: its version changed. Start over.
                        offset = 0
                        f.seek(0)
                        f.truncate(0)
                        hasher = hashlib.sha256()
                    new_etag = resp.headers.get("etag", etag)
                    if new_etag != etag:
                        etag = new_etag
                        total = int(resp.headers.get("content-length")
                                    or resp.headers.get(H_IDENTITY_LENGTH) or total)
                        _write_json_atomic(meta, {"remote": remote, "etag": etag, "size": total})
                    gz = resp.headers.get("content-encoding", "") == "gzip"
                    used_gzip |= gz
                    chunks = resp.aiter_bytes() if gz else resp.aiter_raw()
                    async for chunk in chunks:
                        f.write(chunk)
                        hasher.update(chunk)
                        offset += len(chunk)
                        if progress is not None:
                            progress(offset, total)
                    wire += resp.num_bytes_downloaded
                if offset != total:
                    raise RuntimeUnreachable(f"the download ended at {offset} of {total} bytes")
            except RuntimeUnreachable as exc:
                failures = 1 if offset > before else failures + 1
                if failures >= attempts or tries >= MAX_TOTAL_ATTEMPTS:
                    f.flush()
                    raise RuntimeUnreachable(
                        f"download of '{remote[:200]}' failed after {tries} attempts at "
                        f"{offset} of {total} bytes ({exc.message}); call download again to "
                        "resume from there", details={"offset": offset, "part": str(part)}) from exc
                await asyncio.sleep(_backoff(client, failures))
        f.flush()
        await asyncio.to_thread(os.fsync, f.fileno())
    digest = hasher.hexdigest()
    remote_stat = await hashed
    if remote_stat.etag == etag and remote_stat.sha256 != digest:
        _discard(part, meta)
        raise ChecksumMismatch(f"'{remote[:200]}' arrived with sha256 {digest} but the runtime "
                               f"has {remote_stat.sha256}; the partial file was removed, "
                               "download again", details={"local": digest,
                                                          "remote": remote_stat.sha256})
    if remote_stat.etag != etag:
        # The remote file changed while we downloaded: verify against the version we got.
        again = await stat(client, remote, with_hash=True)
        if again.sha256 != digest:
            raise ChecksumMismatch(f"'{remote[:200]}' changed on the runtime during the "
                                   "download; download again", details={"local": digest})
    await asyncio.to_thread(_publish, part, final, overwrite)
    _discard(meta)
    return DownloadResult(path=final, size=offset, sha256=digest, resumed_from=resumed_from,
                          attempts=tries, wire_bytes=wire, compressed=used_gzip)


# ---------------------------------------------------------------- upload
def _hash_local(local_path: str | os.PathLike[str]) -> tuple[Path, int, str]:
    path = Path(local_path).expanduser()
    if not path.is_file():
        raise LocalPathRefused(f"{path} is not a readable regular file")
    size = path.stat().st_size
    return path, size, _hash_prefix(path, size).hexdigest()


async def _file_chunks(path: Path, size: int, progress: ProgressFn | None) -> AsyncIterator[bytes]:
    done = 0
    f: BinaryIO = await asyncio.to_thread(open, path, "rb")
    try:
        while chunk := await asyncio.to_thread(f.read, IO_CHUNK):
            done += len(chunk)
            yield chunk
            if progress is not None:
                progress(done, size)
    finally:
        f.close()


async def upload(client: RuntimeClient, local_path: str | os.PathLike[str], remote_path: str, *,
                 overwrite: bool = False, progress: ProgressFn | None = None,
                 attempts: int = 3) -> UploadResult:
    """Upload a local file: its sha256 is declared (and signed) first, then streamed."""
    path, size, digest = await asyncio.to_thread(_hash_local, local_path)
    failures = 0
    while True:
        try:
            async with client.stream(
                "PUT", "/files/content",
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
            await asyncio.sleep(_backoff(client, failures))
    if result.sha256 != digest or result.size != size:
        raise ChecksumMismatch(f"the runtime stored {result.size} bytes with sha256 "
                               f"{result.sha256}, expected {size} bytes with {digest}")
    return result


# ---------------------------------------------------------------- directories
async def download_dir(client: RuntimeClient, remote_dir: str, save_dir: str | os.PathLike[str],
                       local_name: str | None = None, *, compression: Compression = "gzip",
                       extract: bool = True, overwrite: bool = False,
                       progress: ProgressFn | None = None,
                       attempts: int = DEFAULT_ATTEMPTS) -> ArchiveResult:
    """A remote directory as a tar stream; extracted safely (escaping members refused)."""
    name = local_name or (PurePosixPath(remote_dir.replace("\\", "/")).name or "root")
    final = local_target(save_dir, name if extract else name + _ARCHIVE_EXT[compression])
    _refuse_existing(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    part, _meta = _part_paths(final.with_name(final.name + _ARCHIVE_EXT[compression]))
    failures = 0
    while True:
        done = 0
        try:
            with open(part, "wb") as f:  # noqa: ASYNC230 - local disk
                async with client.stream("GET", "/files/archive", params={
                        "path": remote_dir, "compression": compression}) as resp:
                    async for chunk in resp.aiter_raw():
                        f.write(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, None)
                f.flush()
                os.fsync(f.fileno())
            break
        except RuntimeUnreachable:
            failures += 1
            if failures >= attempts:
                part.unlink(missing_ok=True)
                raise
            await asyncio.sleep(_backoff(client, failures))
    if not extract:
        await asyncio.to_thread(_publish, part, final, overwrite)
        return ArchiveResult(path=final, wire_bytes=done, extracted=False)
    try:
        members, refused = await asyncio.to_thread(
            _extract_into, part, compression, final, overwrite)
    finally:
        part.unlink(missing_ok=True)
    return ArchiveResult(path=final, wire_bytes=done, extracted=True, members=members,
                         refused=refused)


def _refusal(member: tarfile.TarInfo, top: str) -> str | None:
    pure = PurePosixPath(member.name)
    if pure.is_absolute() or ".." in pure.parts or "\x00" in member.name:
        return "escapes the destination"
    if not pure.parts or pure.parts[0] != top:
        return "outside the archive's top directory"
    if not (member.isfile() or member.isdir()):
        return "not a regular file or directory (links and devices are refused)"
    return None


def _extract_into(archive: Path, compression: Compression, final: Path,
                  overwrite: bool) -> tuple[int, list[str]]:
    staging = final.with_name(f".{final.name}.extract-part")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    members, refused = 0, []
    top: str | None = None
    with open(archive, "rb") as raw:
        src: Any = raw
        if compression == "zstd":
            import zstandard  # optional: only needed for zstd archives

            src = zstandard.ZstdDecompressor().stream_reader(raw)
        with tarfile.open(fileobj=src, mode="r|gz" if compression == "gzip" else "r|") as tar:
            for member in tar:
                top = top or PurePosixPath(member.name).parts[0]
                why = _refusal(member, top)
                if why is not None:
                    refused.append(f"{member.name[:200]}: {why}")
                    continue
                try:
                    if hasattr(tarfile, "data_filter"):
                        tar.extract(member, staging, filter="data")
                    else:  # pragma: no cover - Python < 3.10.12: _refusal already checked
                        tar.extract(member, staging)
                except (tarfile.TarError, OSError) as exc:
                    refused.append(f"{member.name[:200]}: {exc}")
                    continue
                members += 1
    built = staging / (top or "")
    if top is None or not built.is_dir():
        shutil.rmtree(staging, ignore_errors=True)
        raise InvalidInput("the archive was empty or had no top directory")
    if final.exists():
        if not overwrite:
            shutil.rmtree(staging, ignore_errors=True)
            raise LocalPathRefused(f"{final} already exists; pass overwrite=True")
        old = final.with_name(f".{final.name}.old")
        os.replace(final, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(built, final)
    shutil.rmtree(staging, ignore_errors=True)
    _fsync_dir(final.parent)
    return members, refused
