"""Directories from a runtime: a streamed tar (optionally gzip/zstd), extracted safely.

Members that are absolute, climb out with ``..``, sit outside the archive's top
directory, or are links or devices are refused (and listed), never written.  The
tree is built in a staging directory and renamed into place at the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from smartcolab.client.http.client import RuntimeClient
from smartcolab.client.http.receive import report
from smartcolab.client.local_files import (
    OVERWRITE_HINT,
    ProgressFn,
    fsync_dir,
    local_target,
    part_paths,
    publish,
    refuse_existing,
)
from smartcolab.shared import routes
from smartcolab.shared.errors import InvalidInput, LocalPathRefused, RuntimeUnreachable

Compression = Literal["none", "gzip", "zstd"]
DEFAULT_ATTEMPTS = 8
_ARCHIVE_EXT = {"none": ".tar", "gzip": ".tar.gz", "zstd": ".tar.zst"}


@dataclass(frozen=True)
class ArchiveResult:
    path: Path
    wire_bytes: int
    extracted: bool
    members: int = 0
    refused: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- directories
async def download_dir(client: RuntimeClient, remote_dir: str, save_dir: str | os.PathLike[str],
                       local_name: str | None = None, *, compression: Compression = "gzip",
                       extract: bool = True, overwrite: bool = False,
                       progress: ProgressFn | None = None,
                       attempts: int = DEFAULT_ATTEMPTS) -> ArchiveResult:
    """A remote directory as a tar stream; extracted safely (escaping members refused)."""
    name = local_name or (PurePosixPath(remote_dir.replace("\\", "/")).name or "root")
    final = local_target(save_dir, name if extract else name + _ARCHIVE_EXT[compression])
    refuse_existing(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    part, _meta = part_paths(final.with_name(final.name + _ARCHIVE_EXT[compression]))
    failures = 0
    while True:
        done = 0
        try:
            with open(part, "wb") as f:  # noqa: ASYNC230 - local disk
                async with client.stream("GET", routes.FILES_ARCHIVE, params={
                        "path": remote_dir, "compression": compression}) as resp:
                    async for chunk in resp.aiter_raw():
                        f.write(chunk)
                        done += len(chunk)
                        await report(progress, done, None)
                f.flush()
                os.fsync(f.fileno())
            break
        except RuntimeUnreachable:
            failures += 1
            if failures >= attempts:
                part.unlink(missing_ok=True)
                raise
            await asyncio.sleep(client.retry.delay(failures))
    if not extract:
        await asyncio.to_thread(publish, part, final, overwrite)
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
            raise LocalPathRefused(f"{final} already exists; {OVERWRITE_HINT}",
                                   details={"reason": "exists"})
        old = final.with_name(f".{final.name}.old")
        os.replace(final, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(built, final)
    shutil.rmtree(staging, ignore_errors=True)
    fsync_dir(final.parent)
    return members, refused
