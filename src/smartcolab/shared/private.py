"""Private local state: directories 0700, files 0600, written atomically.

The local runtime's secret lets anyone who reads it run code as this user, and the job
store, outputs and journal hold the user's code and data: none of it may be readable
by other local users. Both the bridge and the local runtime daemon call
``private_umask()`` first, so everything they create later is private too (SQLite's
WAL and journal files included, which are created without an explicit mode).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DIR_MODE = 0o700
FILE_MODE = 0o600
UMASK = 0o077


def private_umask() -> int:
    """Make every file and directory this process creates from now on private."""
    return os.umask(UMASK)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) 0700; tighten it if it exists and is ours."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    with contextlib.suppress(OSError):  # not ours (a shared parent): leave it alone
        st = path.stat()
        if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
            path.chmod(DIR_MODE)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as 0600, atomically (temp file + fsync + rename)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                 FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_private_json(path: Path, data: Mapping[str, Any]) -> None:
    write_private(path, json.dumps(dict(data), indent=1, sort_keys=True) + "\n")


def open_private_append(path: Path) -> int:
    """A file descriptor appending to ``path``, created 0600 (a log, say)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0),
                 FILE_MODE)
    with contextlib.suppress(OSError):
        os.fchmod(fd, FILE_MODE)
    return fd
