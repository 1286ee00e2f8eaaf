"""The one way smartcolab opens a SQLite database: private, WAL, autocommit.

Used by the runtime's job store, the bridge's journal and the checkpoint store.
Each holds one connection shared by its threads (under its own lock where it needs
one) and writes short explicit transactions.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from pathlib import Path

__all__ = ["PRIVATE_DIR_MODE", "PRIVATE_FILE_MODE", "open_db"]

# Job code, outputs and secrets-adjacent state: readable by the owner only.
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
DEFAULT_BUSY_TIMEOUT_S = 5.0
# SQLite gives its -wal and -shm files the database file's permissions when it makes
# them; ones left by an older version are tightened here as well.
_COMPANIONS = ("", "-wal", "-shm", "-journal")


def open_db(path: Path, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
            row_factory: type[sqlite3.Row] | None = None) -> sqlite3.Connection:
    """Open ``path`` (creating it and its directory) for use from several threads.

    * The file is created with mode 0600 (its directory, when created here, 0700), and
      an existing database that others could read is made private.
    * ``isolation_level=None``: autocommit; callers write ``BEGIN``/``with db:`` blocks.
    * WAL: readers never block the writer, and a committed transaction survives the
      process being killed at any moment.
    * ``synchronous=NORMAL``: in WAL mode only a power loss of the machine can drop
      the last few commits, never corrupt the file; FULL costs an fsync per commit
      (1-8 ms here, half a chunked batch's whole budget).
    * ``busy_timeout_s``: how long a write waits for another process's lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE))
    for suffix in _COMPANIONS:
        _make_private(path.with_name(path.name + suffix))
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                         timeout=busy_timeout_s)
    if row_factory is not None:
        db.row_factory = row_factory
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def _make_private(path: Path) -> None:
    # Another user's file (a shared directory) is left alone rather than failing the open.
    with contextlib.suppress(FileNotFoundError, PermissionError):
        if stat.S_IMODE(path.stat().st_mode) & ~PRIVATE_FILE_MODE:
            os.chmod(path, PRIVATE_FILE_MODE)
