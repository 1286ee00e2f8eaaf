"""The one SQLite setup (shared/sqlite.py): private file modes, WAL, and the three stores use it."""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
from pathlib import Path

import pytest

from smartcolab.client.journal import Journal
from smartcolab.mcp.chunked.checkpoints import CheckpointStore
from smartcolab.runtime.engine.store import JobStore
from smartcolab.shared.sqlite import open_db

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@posix_only
def test_a_new_database_and_its_wal_are_private_under_a_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        db = open_db(tmp_path / "new" / "x.sqlite3")
        db.execute("CREATE TABLE t (v)")
        db.execute("INSERT INTO t VALUES (1)")
    finally:
        os.umask(old)
    path = tmp_path / "new" / "x.sqlite3"
    assert mode(path) == 0o600
    assert mode(path.with_name("x.sqlite3-wal")) == 0o600
    assert mode(path.with_name("x.sqlite3-shm")) == 0o600
    assert mode(path.parent) == 0o700
    db.close()


@posix_only
def test_an_existing_readable_database_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    sqlite3.connect(path).close()
    os.chmod(path, 0o644)
    open_db(path).close()
    assert mode(path) == 0o600


def test_wal_autocommit_and_a_shared_connection_across_threads(tmp_path: Path) -> None:
    db = open_db(tmp_path / "x.sqlite3", row_factory=sqlite3.Row)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert db.isolation_level is None
    db.execute("CREATE TABLE t (v)")
    db.execute("INSERT INTO t VALUES (7)")
    # Autocommit: another connection sees the row without a commit call.
    other = sqlite3.connect(tmp_path / "x.sqlite3")
    assert other.execute("SELECT v FROM t").fetchall() == [(7,)]
    assert db.execute("SELECT v FROM t").fetchone()["v"] == 7
    other.close()
    db.close()


def test_busy_timeout_is_set(tmp_path: Path) -> None:
    db = open_db(tmp_path / "x.sqlite3", busy_timeout_s=12.5)
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 12500
    db.close()


@posix_only
def test_the_three_stores_open_private_wal_databases(tmp_path: Path) -> None:
    stores: list[JobStore | Journal | CheckpointStore] = [
        JobStore(tmp_path / "runtime" / "jobs.sqlite3"), Journal(tmp_path / "bridge"),
        CheckpointStore(tmp_path / "checkpoints")]
    try:
        for store in stores:
            assert mode(store.path) == 0o600, store.path
            assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        for store in stores:
            store.close()
