"""Local side of transfers: confined names, ``.part`` files, atomic publication.

Nothing here talks HTTP.  A name from a runtime or a caller is confined to the save
directory by :func:`local_target`; a finished download is moved to its name only by
:func:`publish` (hard link or replace, then a directory fsync).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any

from smartcolab.shared.errors import LocalPathRefused, LocalWriteFailed

IO_CHUNK = 1024 * 1024
# progress(bytes_done, bytes_total or None when unknown), called on the event loop's
# thread; it may be a coroutine function (the bridge sends MCP progress from one).
ProgressFn = Callable[[int, "int | None"], "Awaitable[None] | None"]
# Neutral for every caller: a tool argument, a CLI flag, a library keyword.
OVERWRITE_HINT = "ask to overwrite it (overwrite=true in a tool call, --overwrite on the command line)"


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


def remote_name(remote_path: str) -> str:
    name = PurePosixPath(remote_path.replace("\\", "/")).name
    if not name or name in (".", ".."):
        raise LocalPathRefused(f"cannot derive a local name from '{remote_path[:200]}'; pass "
                               "local_name")
    return name


def hash_prefix(path: Path, length: int) -> Any:
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


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def publish(part: Path, final: Path, overwrite: bool) -> None:
    """Move a verified ``.part`` to its name; without ``overwrite`` never clobber."""
    if overwrite:
        os.replace(part, final)
    else:
        try:
            os.link(part, final)
        except FileExistsError:
            raise LocalPathRefused(f"{final} already exists; {OVERWRITE_HINT}",
                                   details={"reason": "exists"}) from None
        except OSError:
            if final.exists():
                raise LocalPathRefused(f"{final} already exists", details={"reason": "exists"}) from None
            os.replace(part, final)
        else:
            part.unlink()
    fsync_dir(final.parent)


def discard(*paths: Path) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def refuse_existing(final: Path, overwrite: bool) -> None:
    if final.is_dir():
        raise LocalPathRefused(f"{final} is a directory; choose another local name")
    if final.exists() and not overwrite:
        raise LocalPathRefused(f"{final} already exists; {OVERWRITE_HINT}",
                               details={"reason": "exists"})


def part_paths(final: Path) -> tuple[Path, Path]:
    part = final.with_name(final.name + ".part")
    meta = final.with_name(final.name + ".part.json")
    for p in (part, meta):
        if p.is_symlink():  # a planted link would redirect our writes elsewhere
            p.unlink()
    return part, meta


def write_failed(exc: OSError, where: Path) -> LocalWriteFailed:
    reason = exc.strerror or str(exc)
    hint = ("free some space there" if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
            else "check that the save directory is writable")
    return LocalWriteFailed(
        f"could not write {where} on this machine: {reason}; {hint}, then call the download "
        "again: it resumes from what was saved", details={"path": str(where), "errno": exc.errno})


def local_file(local_path: str | os.PathLike[str]) -> tuple[Path, int]:
    """A local file to upload: its path and size; refused if not a regular file."""
    path = Path(local_path).expanduser()
    if not path.is_file():
        raise LocalPathRefused(f"{path} is not a readable regular file")
    return path, path.stat().st_size


def hash_local(local_path: str | os.PathLike[str]) -> tuple[Path, int, str]:
    """A local file to upload: its path, size and sha256; refused if not a regular file."""
    path, size = local_file(local_path)
    return path, size, hash_prefix(path, size).hexdigest()


def resume_offset(part: Path, meta: Path, remote: str, etag: str | None, remote_size: int) -> int:
    """Bytes of ``part`` that belong to the current remote version (its ETag), else 0."""
    try:
        info = json.loads(meta.read_text())
        size = part.stat().st_size
    except (OSError, ValueError):
        return 0
    if info.get("remote") != remote or info.get("etag") != etag or size > remote_size:
        return 0
    if "spans" in info:  # a parallel download's part: only its complete prefix counts
        return min(size, _span_prefix(info["spans"]))
    return size


def _span_prefix(spans: Any) -> int:
    """Bytes from 0 that recorded ``[start, done, end)`` spans say are complete."""
    at = 0
    try:
        for start, done, end in spans:
            if int(start) != at or not int(start) <= int(done) <= int(end):
                return at
            at = int(done)
            if at < int(end):
                break
    except (TypeError, ValueError):
        return 0
    return at
