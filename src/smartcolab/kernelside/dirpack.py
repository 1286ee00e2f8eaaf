"""A directory as one gzip tar, written where the directory is: on the runtime's disk.

The bridge of a plain Jupyter Server has no archive endpoint to call, so it asks the
kernel to pack the directory into a file, then fetches that file through the server's
file API (resumable, sha256-checked) and extracts it safely on its side.  Links,
devices and anything else that is not a plain file or directory are left out and listed.
"""

from __future__ import annotations

import os
import tarfile
import uuid
from typing import Any


def pack(path: str, out_dir: str, max_bytes: int, max_members: int) -> dict[str, Any]:
    """Entry point in a kernel: ``path`` (relative to the cwd) as ``out_dir/<name>-<id>.tar.gz``
    with ``<name>/`` on top; refuses past ``max_bytes`` of file data or ``max_members``."""
    src = os.path.normpath(path)
    if not os.path.isdir(src):
        raise NotADirectoryError(f"not a directory: {path}")
    top = os.path.basename(os.path.abspath(src)) or "root"
    os.makedirs(out_dir, exist_ok=True)
    archive = os.path.join(out_dir, f"{top}-{uuid.uuid4().hex[:12]}.tar.gz")
    total, members, skipped = 0, 0, []
    try:
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(src, arcname=top, recursive=False)
            for here, dirs, files in os.walk(src):
                dirs.sort()
                rel = os.path.relpath(here, src)
                for name in sorted(dirs) + sorted(files):
                    full = os.path.join(here, name)
                    inside = os.path.normpath(os.path.join(top, rel, name))
                    if os.path.islink(full) or not (os.path.isfile(full) or os.path.isdir(full)):
                        skipped.append(os.path.join(rel, name))
                        continue
                    if os.path.isfile(full):
                        total += os.path.getsize(full)
                    members += 1
                    if total > max_bytes or members > max_members:
                        raise OverflowError(f"the directory holds more than {max_bytes} bytes "
                                            f"or {max_members} entries (the cap)")
                    tar.add(full, arcname=inside, recursive=False)
    except BaseException:
        os.remove(archive)
        raise
    return {"archive": archive, "size": os.path.getsize(archive), "members": members,
            "skipped": skipped[:200]}
