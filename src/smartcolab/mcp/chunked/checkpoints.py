"""The local checkpoint store of chunked operations: one SQLite database (WAL) in CHECKPOINT_DIR.

A checkpoint is keyed by its name only (the original put the date in its file name,
so resuming after midnight restarted from zero).  Every change is one transaction,
so a bridge killed at any moment leaves the previous or the next state, never half
of one; a batch is recorded only if it starts exactly where the checkpoint stands
(compare-and-set), so a batch can never be counted twice or skipped, and a failing
batch never advances ``completed``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from smartcolab.shared.errors import Conflict, NotFound
from smartcolab.shared.sqlite import open_db

__all__ = ["DB_NAME", "BatchRow", "Checkpoint", "CheckpointStore", "Status"]

DB_NAME = "checkpoints.sqlite3"
OUTPUT_TAIL_CHARS = 4000
Status = Literal["running", "paused", "failed", "done"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    name TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    inputs TEXT NOT NULL,
    run_id TEXT NOT NULL,
    status TEXT NOT NULL,
    completed INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL,
    batch_size INTEGER NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    runtime TEXT,
    session TEXT,
    setup_epoch TEXT,
    setup_runs INTEGER NOT NULL DEFAULT 0,
    pending_job TEXT,
    pending_start INTEGER,
    pending_kind TEXT,
    last_error TEXT,
    broke_at INTEGER,
    owner TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    busy_s REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS batches (
    name TEXT NOT NULL,
    start INTEGER NOT NULL,
    stop INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    output_tail TEXT NOT NULL,
    wall_s REAL NOT NULL,
    body_s REAL NOT NULL,
    finished_at REAL NOT NULL,
    PRIMARY KEY (name, start)
);
CREATE TABLE IF NOT EXISTS collected (
    name TEXT NOT NULL,
    idx INTEGER NOT NULL,
    value TEXT NOT NULL,
    is_repr INTEGER NOT NULL,
    PRIMARY KEY (name, idx)
);
"""


@dataclass
class Checkpoint:
    """One operation's recorded state, as read from the store."""

    name: str
    fingerprint: str
    inputs: dict[str, Any]
    run_id: str
    status: Status
    completed: int
    total: int
    batch_size: int
    attempt: int
    runtime: str | None
    session: str | None
    setup_epoch: str | None
    setup_runs: int
    pending_job: str | None
    pending_start: int | None
    pending_kind: str | None
    last_error: dict[str, Any] | None
    broke_at: int | None
    owner: str | None
    created_at: float
    updated_at: float
    busy_s: float

    def summary(self) -> dict[str, Any]:
        """The short, JSON-ready view used by list_checkpoints."""
        return {"name": self.name, "status": self.status, "completed": self.completed,
                "total": self.total, "batch_size": self.batch_size, "runtime": self.runtime,
                "broke_at": self.broke_at, "updated_at": self.updated_at,
                "failed_index": (self.last_error or {}).get("failed_index")
                if self.status == "failed" else None}


@dataclass
class BatchRow:
    start: int
    stop: int
    job_id: str
    output_tail: str
    wall_s: float
    body_s: float
    finished_at: float
    values: list[tuple[int, Any, bool]] = field(default_factory=list)


class CheckpointStore:
    """Thread-safe access to the checkpoint database; every method is one transaction."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / DB_NAME
        self._lock = threading.Lock()
        # synchronous=NORMAL (open_db): a power loss may drop the last few commits, whose
        # batches then run again; a killed process loses nothing committed.
        self._db = open_db(self.path, busy_timeout_s=30.0, row_factory=sqlite3.Row)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ------------------------------------------------------------ reads
    def get(self, name: str) -> Checkpoint | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM checkpoints WHERE name = ?", (name,)).fetchone()
        return _checkpoint(row) if row else None

    def require(self, name: str) -> Checkpoint:
        cp = self.get(name)
        if cp is None:
            raise NotFound(f"no checkpoint named {name!r}; list_checkpoints shows the names.",
                           details={"checkpoint": name})
        return cp

    def all(self) -> list[Checkpoint]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM checkpoints ORDER BY updated_at DESC").fetchall()
        return [_checkpoint(r) for r in rows]

    def batches(self, name: str, *, last: int = 5) -> list[BatchRow]:
        """The last ``last`` recorded batches, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM batches WHERE name = ? ORDER BY start DESC LIMIT ?",
                (name, last)).fetchall()
        return [BatchRow(start=r["start"], stop=r["stop"], job_id=r["job_id"],
                         output_tail=r["output_tail"], wall_s=r["wall_s"], body_s=r["body_s"],
                         finished_at=r["finished_at"]) for r in reversed(rows)]

    def timings(self, name: str) -> dict[str, float]:
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) AS n, COALESCE(SUM(wall_s), 0) AS wall, "
                "COALESCE(SUM(body_s), 0) AS body FROM batches WHERE name = ?", (name,)).fetchone()
        return {"batches": row["n"], "wall_s": row["wall"], "body_s": row["body"]}

    def values(self, name: str, *, offset: int = 0, limit: int = 1000
               ) -> list[tuple[int, Any, bool]]:
        """Collected values as (index, value, is_repr), by index."""
        with self._lock:
            rows = self._db.execute(
                "SELECT idx, value, is_repr FROM collected WHERE name = ? AND idx >= ? "
                "ORDER BY idx LIMIT ?", (name, offset, limit)).fetchall()
        return [(r["idx"], json.loads(r["value"]), bool(r["is_repr"])) for r in rows]

    def count_values(self, name: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM collected WHERE name = ?",
                                   (name,)).fetchone()
        return int(row[0])

    # ------------------------------------------------------------ writes
    def create(self, name: str, *, fingerprint: str, inputs: dict[str, Any], run_id: str,
               total: int, batch_size: int, runtime: str | None, session: str | None,
               owner: str | None, replace: bool = False) -> Checkpoint:
        """A new checkpoint at 0; ``replace`` drops an existing one of that name first."""
        now = time.time()
        with self._tx() as db:
            exists = db.execute("SELECT 1 FROM checkpoints WHERE name = ?", (name,)).fetchone()
            if exists and not replace:
                raise Conflict(f"checkpoint {name!r} exists already.", details={"checkpoint": name})
            _delete(db, name)
            db.execute(
                "INSERT INTO checkpoints (name, fingerprint, inputs, run_id, status, total, "
                "batch_size, runtime, session, owner, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                (name, fingerprint, json.dumps(inputs), run_id, total, batch_size, runtime,
                 session, owner, now, now))
        return self.require(name)

    def update(self, name: str, **fields: Any) -> None:
        """Set plain columns (status, owner, pending_*, setup_*...) in one transaction."""
        allowed = {"status", "owner", "pending_job", "pending_start", "pending_kind",
                   "setup_epoch", "setup_runs", "runtime", "session", "last_error", "attempt"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        if "last_error" in fields and fields["last_error"] is not None:
            fields["last_error"] = json.dumps(fields["last_error"])
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as db:
            db.execute(f"UPDATE checkpoints SET {cols}, updated_at = ? WHERE name = ?",
                       (*fields.values(), time.time(), name))

    def record_batch(self, name: str, *, start: int, stop: int, done: int, job_id: str,
                     output: str, wall_s: float, body_s: float, broke: bool,
                     values: list[tuple[int, str, bool]],
                     next_job: str | None = None) -> bool:
        """Record a successful batch; False (and nothing written) if it is not the next one.

        ``values`` hold JSON text.  ``done`` is the iterations the batch ran: fewer than
        ``stop - start`` only when a ``break`` ended the operation.  ``next_job`` names
        the next batch's job id, recorded as pending in the same transaction (one
        fsync per batch instead of two).
        """
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT completed, total FROM checkpoints WHERE name = ?",
                             (name,)).fetchone()
            if row is None or row["completed"] != start:
                return False
            new_completed = start + done
            finished = broke or stop >= row["total"]
            db.execute(
                "INSERT INTO batches (name, start, stop, job_id, output_tail, wall_s, body_s, "
                "finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, start, new_completed, job_id, output[-OUTPUT_TAIL_CHARS:], wall_s,
                 body_s, now))
            db.executemany(
                "INSERT OR REPLACE INTO collected (name, idx, value, is_repr) VALUES (?, ?, ?, ?)",
                [(name, idx, text, int(is_repr)) for idx, text, is_repr in values])
            pending = next_job if next_job and not finished else None
            db.execute(
                "UPDATE checkpoints SET completed = ?, attempt = 0, pending_job = ?, "
                "pending_start = ?, pending_kind = ?, last_error = NULL, "
                "status = ?, broke_at = ?, busy_s = busy_s + ?, updated_at = ? WHERE name = ?",
                (new_completed, pending, new_completed if pending else None,
                 "batch" if pending else None, "done" if finished else "running",
                 (start + done - 1) if broke else None, wall_s, now, name))
        return True

    def record_failure(self, name: str, error: dict[str, Any], *, paused: bool = False) -> None:
        """A batch or the setup failed: ``completed`` stays; the next try gets a new job id."""
        with self._tx() as db:
            db.execute(
                "UPDATE checkpoints SET attempt = attempt + 1, pending_job = NULL, "
                "pending_start = NULL, pending_kind = NULL, last_error = ?, status = ?, "
                "updated_at = ? WHERE name = ?",
                (json.dumps(error), "paused" if paused else "failed", time.time(), name))

    def delete(self, name: str) -> bool:
        with self._tx() as db:
            return _delete(db, name)


def _delete(db: sqlite3.Connection, name: str) -> bool:
    db.execute("DELETE FROM batches WHERE name = ?", (name,))
    db.execute("DELETE FROM collected WHERE name = ?", (name,))
    return db.execute("DELETE FROM checkpoints WHERE name = ?", (name,)).rowcount > 0


def _checkpoint(row: sqlite3.Row) -> Checkpoint:
    data = dict(row)
    data["inputs"] = json.loads(data["inputs"])
    data["last_error"] = json.loads(data["last_error"]) if data["last_error"] else None
    return Checkpoint(**data)
