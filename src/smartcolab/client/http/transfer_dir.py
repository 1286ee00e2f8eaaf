"""Directories from a runtime: a streamed tar (optionally gzip/zstd), extracted safely.

Members that are absolute, climb out with ``..``, sit outside the archive's top
directory, or are links or devices are refused (and listed), never written.  The
tree is built in a staging directory and renamed into place at the end; the
staging directory is removed whatever happens.  A runtime is untrusted: the
archive's wire size, its extracted size and its member count are capped
(:class:`~smartcolab.client.untrusted.TransferLimits`), and the extracted size
also by the free space found before extraction starts.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from smartcolab.client.http.client import RuntimeClient
from smartcolab.client.local_files import (
    OVERWRITE_HINT,
    ProgressFn,
    discard,
    fsync_dir,
    local_target,
    part_paths,
    publish,
    write_failed,
)
from smartcolab.client.transfer.source import report
from smartcolab.client.untrusted import DEFAULT_LIMITS, ByteBudget, TransferLimits
from smartcolab.shared import routes
from smartcolab.shared.errors import (
    InvalidInput,
    LocalPathRefused,
    RuntimeMisbehaved,
    RuntimeUnreachable,
)

Compression = Literal["none", "gzip", "zstd"]
DEFAULT_ATTEMPTS = 8
_ARCHIVE_EXT = {"none": ".tar", "gzip": ".tar.gz", "zstd": ".tar.zst"}
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@dataclass(frozen=True)
class ArchiveResult:
    path: Path
    wire_bytes: int
    extracted: bool
    members: int = 0
    refused: list[str] = field(default_factory=list)


def _refuse_existing_dir(final: Path, overwrite: bool) -> None:
    if (final.exists() or final.is_symlink()) and not overwrite:
        raise LocalPathRefused(f"{final} already exists; {OVERWRITE_HINT}",
                               details={"reason": "exists"})


# ---------------------------------------------------------------- directories
async def download_dir(client: RuntimeClient, remote_dir: str, save_dir: str | os.PathLike[str],
                       local_name: str | None = None, *, compression: Compression = "gzip",
                       extract: bool = True, overwrite: bool = False,
                       progress: ProgressFn | None = None, attempts: int = DEFAULT_ATTEMPTS,
                       limits: TransferLimits = DEFAULT_LIMITS) -> ArchiveResult:
    """A remote directory as a tar stream; extracted safely (escaping members refused)."""
    name = local_name or (PurePosixPath(remote_dir.replace("\\", "/")).name or "root")
    final = local_target(save_dir, name if extract else name + _ARCHIVE_EXT[compression])
    _refuse_existing_dir(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    part, _meta = part_paths(final.with_name(final.name + _ARCHIVE_EXT[compression]))
    wire = await asyncio.to_thread(ByteBudget.for_folder, final.parent, limits.max_archive_bytes,
                                   f"the archive of '{remote_dir[:200]}'", limits)
    done = await _receive_archive(client, remote_dir, compression, part, wire, progress, attempts)
    if not extract:
        try:
            await asyncio.to_thread(publish, part, final, overwrite)
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise write_failed(exc, final) from exc
        return ArchiveResult(path=final, wire_bytes=done, extracted=False)
    try:
        extracted = await asyncio.to_thread(
            ByteBudget.for_folder, final.parent, limits.max_extracted_bytes,
            f"the extracted tree of '{remote_dir[:200]}'", limits)
        members, refused = await asyncio.to_thread(
            _extract_into, part, compression, final, overwrite, extracted, limits.max_members)
    finally:
        part.unlink(missing_ok=True)
    return ArchiveResult(path=final, wire_bytes=done, extracted=True, members=members,
                         refused=refused)


async def _receive_archive(client: RuntimeClient, remote_dir: str, compression: Compression,
                           part: Path, budget: ByteBudget, progress: ProgressFn | None,
                           attempts: int) -> int:
    """The archive's bytes into ``part`` (restarted from 0 after a drop), within ``budget``."""
    failures = 0
    while True:
        done = 0
        try:
            with open(part, "wb") as f:  # noqa: ASYNC230 - local disk
                async with client.stream("GET", routes.FILES_ARCHIVE, params={
                        "path": remote_dir, "compression": compression},
                        headers={"Accept-Encoding": "identity"}) as resp:
                    # Raw bytes: the tar's own compression is the one we asked for; a
                    # Content-Encoding on top is never decoded here.
                    async for chunk in resp.aiter_raw():
                        done += len(chunk)
                        budget.check(done)
                        f.write(chunk)
                        await report(progress, done, None)
                f.flush()
                os.fsync(f.fileno())
            return done
        except RuntimeUnreachable:
            failures += 1
            if failures >= attempts:
                discard(part)
                raise
            await asyncio.sleep(client.retry.delay(failures))
        except OSError as exc:
            discard(part)
            raise write_failed(exc, part) from exc
        except BaseException:
            discard(part)
            raise


def _refusal(member: tarfile.TarInfo, top: str) -> str | None:
    pure = PurePosixPath(member.name)
    if pure.is_absolute() or ".." in pure.parts or "\x00" in member.name:
        return "escapes the destination"
    if not pure.parts or pure.parts[0] != top:
        return "outside the archive's top directory"
    if not (member.isfile() or member.isdir()):
        return "not a regular file or directory (links and devices are refused)"
    return None


def _top_of(member: tarfile.TarInfo) -> str | None:
    """The first real component of a member's name ('.' and './' have none)."""
    parts = [p for p in PurePosixPath(member.name).parts if p not in ("/", ".")]
    return parts[0] if parts and parts[0] != ".." else None


def _extract_into(archive: Path, compression: Compression, final: Path, overwrite: bool,
                  budget: ByteBudget | None = None,
                  max_members: int = DEFAULT_LIMITS.max_members) -> tuple[int, list[str]]:
    budget = budget or ByteBudget.for_folder(final.parent, DEFAULT_LIMITS.max_extracted_bytes,
                                             "the extracted tree")
    staging = final.with_name(f".{final.name}.extract-part")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        members, refused, top = _extract_members(archive, compression, staging, budget,
                                                 max_members)
        built = staging / (top or "")
        if top is None or not built.is_dir():
            raise InvalidInput("the archive was empty or had no top directory")
        _put_in_place(built, final, overwrite)
        fsync_dir(final.parent)
        return members, refused
    except OSError as exc:
        raise write_failed(exc, final) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract_members(archive: Path, compression: Compression, staging: Path,
                     budget: ByteBudget, max_members: int) -> tuple[int, list[str], str | None]:
    members, refused, written = 0, [], 0
    top: str | None = None
    with open(archive, "rb") as raw:
        src: Any = raw
        if compression == "zstd":
            import zstandard  # optional: only needed for zstd archives

            src = zstandard.ZstdDecompressor().stream_reader(raw)
        with tarfile.open(fileobj=src, mode="r|gz" if compression == "gzip" else "r|") as tar:
            for seen, member in enumerate(tar, start=1):
                if seen > max_members:
                    raise RuntimeMisbehaved(f"the archive has more than {max_members:,} members "
                                            "(the cap); nothing was kept",
                                            details={"cap": max_members})
                if member.isdir() and member.name.strip("/") in ("", "."):
                    continue  # the archive's own root ('.', './'): nothing to write
                top = top or _top_of(member)
                why = _refusal(member, top) if top else "outside the archive's top directory"
                if why is not None:
                    refused.append(f"{member.name[:200]}: {why}")
                    continue
                written += member.size if member.isfile() else 0
                budget.check(written)  # declared sizes are what tarfile writes
                try:
                    if hasattr(tarfile, "data_filter"):
                        tar.extract(member, staging, filter="data")
                    else:  # pragma: no cover - Python < 3.10.12: _refusal already checked
                        tar.extract(member, staging)
                except OSError as exc:
                    if exc.errno in _DISK_FULL:
                        raise  # this machine's fault, not the member's: say so
                    refused.append(f"{member.name[:200]}: {exc}")
                    continue
                except tarfile.TarError as exc:
                    refused.append(f"{member.name[:200]}: {exc}")
                    continue
                members += 1
    return members, refused, top


def _put_in_place(built: Path, final: Path, overwrite: bool) -> None:
    """Rename the built tree onto ``final``; with ``overwrite`` an old file or tree goes."""
    if final.exists() or final.is_symlink():
        if not overwrite:
            raise LocalPathRefused(f"{final} already exists; {OVERWRITE_HINT}",
                                   details={"reason": "exists"})
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    os.replace(built, final)
