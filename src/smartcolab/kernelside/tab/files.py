"""Small files through the control cell of a Colab tab (``client/colabtab/files.py``).

The page has no file tool, so bytes travel as base64 inside control-cell answers, in
chunks, and only small files go this way (the bridge caps them).  Paths are relative to
the kernel's working directory (``/content`` on Colab) unless absolute.  Uploads land in
a ``.smartcolab-part`` file, renamed once complete and checked.  Stdlib only.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import os
import stat as stat_module
from typing import Any

PART = ".smartcolab-part"


def _kind(mode: int) -> str:
    if stat_module.S_ISLNK(mode):
        return "symlink"
    return "dir" if stat_module.S_ISDIR(mode) else "file" if stat_module.S_ISREG(mode) else "other"


def stat(path: str, with_hash: bool = False) -> dict[str, Any]:
    """Type, size, mtime (and sha256 of a file); ``{"missing": True}`` when absent."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {"path": path, "missing": True}
    found = {"path": path, "root": os.getcwd(), "type": _kind(st.st_mode), "size": st.st_size,
             "mtime": st.st_mtime, "sha256": None}
    if with_hash and found["type"] == "file":
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        found["sha256"] = digest.hexdigest()
    return found


def listing(path: str, recursive: bool, pattern: str | None, limit: int) -> dict[str, Any]:
    """Entries under ``path`` (names matching ``pattern``), at most ``limit``; ``total`` all."""
    base = path or "."
    entries: list[dict[str, Any]] = []
    total = 0
    for top, dirs, files in os.walk(base):
        dirs.sort()
        for name in sorted(dirs) + sorted(files):
            full = os.path.join(top, name)
            if pattern and not fnmatch.fnmatch(name, pattern):
                continue
            total += 1
            if len(entries) < limit:
                st = os.lstat(full)
                entries.append({"name": name, "path": os.path.relpath(full, base),
                                "root": os.path.abspath(base), "type": _kind(st.st_mode),
                                "size": st.st_size, "mtime": st.st_mtime})
        if not recursive:
            break
    return {"root": os.path.abspath(base), "path": path, "entries": entries, "total": total}


def read(path: str, offset: int, length: int) -> dict[str, Any]:
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read(length)
    return {"data": base64.b64encode(data).decode("ascii"), "size": os.path.getsize(path)}


def write(path: str, data: str, offset: int, final: bool, overwrite: bool,
          sha256: str | None = None) -> dict[str, Any]:
    """Write one chunk at ``offset`` of the part file; ``final``: check and rename it."""
    if offset == 0 and os.path.exists(path) and not overwrite:
        return {"error": "exists"}
    part = path + PART
    if offset == 0:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(part, "r+b" if offset else "wb") as fh:
        fh.seek(offset)
        fh.write(base64.b64decode(data))
    if not final:
        return {"written": offset + len(base64.b64decode(data))}
    got = stat(part, with_hash=True)
    if sha256 is not None and got["sha256"] != sha256:
        os.remove(part)
        return {"error": "checksum"}
    existed = os.path.exists(path)
    os.replace(part, path)
    return {"path": path, "size": got["size"], "sha256": got["sha256"], "overwritten": existed}
