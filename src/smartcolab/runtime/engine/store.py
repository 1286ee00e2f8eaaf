"""The job store: one SQLite database (WAL) under the state directory.

It is the source of truth for finished jobs and for jobs of earlier server runs;
live jobs are also held in memory by ``jobs.py``.  Calls are short and made from
the event loop thread (one connection, WAL, ``synchronous=NORMAL``: a commit does
not wait for an fsync, a crash of the process loses nothing already committed).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from smartcolab.shared.protocol import JobResult
from smartcolab.shared.sqlite import open_db

log = logging.getLogger("smartcolab.runtime")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE,
    session TEXT NOT NULL,
    status TEXT NOT NULL,
    code TEXT NOT NULL,
    timeout REAL,
    client TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    epoch TEXT NOT NULL,
    result TEXT,
    output_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_session ON jobs(session, seq);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, seq);
"""

LOST_MESSAGE = ("the runtime server stopped while this job was {status}; it did not "
                "finish and the kernel's state is gone. Submit it again with a new job id.")


@dataclass
class JobRecord:
    """A job as stored; ``result`` is None until the job ends."""

    job_id: str
    session: str
    status: str
    code: str
    timeout: float | None
    client: str | None
    created_at: float
    epoch: str
    started_at: float | None = None
    finished_at: float | None = None
    result: JobResult | None = None
    output_bytes: int = 0


_COLUMNS = ("job_id, session, status, code, timeout, client, created_at, started_at, "
            "finished_at, epoch, result, output_bytes")


def quarantine(path: Path, exc: BaseException) -> Path:
    """Move an unreadable store (and its WAL files) aside, so the server can start afresh."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = path.with_name(path.name + suffix)
        if src.exists():
            src.replace(moved.with_name(moved.name + suffix))
    log.error("the job store %s could not be read (%s): moved it to %s and started a new, "
              "empty one. Jobs of earlier runs are in the moved file (sqlite3 can try to "
              "recover it: sqlite3 %s .recover)", path, exc, moved, moved)
    return moved


def _record(row: tuple[object, ...]) -> JobRecord:
    (job_id, session, status, code, timeout, client, created_at, started_at, finished_at,
     epoch, result, output_bytes) = row
    return JobRecord(
        job_id=str(job_id), session=str(session), status=str(status), code=str(code),
        timeout=None if timeout is None else float(str(timeout)),
        client=None if client is None else str(client), created_at=float(str(created_at)),
        started_at=None if started_at is None else float(str(started_at)),
        finished_at=None if finished_at is None else float(str(finished_at)),
        epoch=str(epoch),
        result=JobResult.model_validate_json(str(result)) if result else None,
        output_bytes=int(str(output_bytes or 0)),
    )


class JobStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        # Set when a corrupt store was moved aside at start (the way out of item 17).
        self.quarantined: Path | None = None
        try:
            self._db = self._open(path)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise
            self.quarantined = quarantine(path, exc)
            self._db = self._open(path)

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        db = open_db(path)
        try:
            db.executescript(SCHEMA)
            row = db.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no answer'}")
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        self._db.close()

    def mark_unfinished_lost(self, jobs_root: Path) -> int:
        """At start-up: jobs a previous process left queued or running are ``lost``.

        Their output so far stays pageable: its size is taken from the spill file.
        """
        rows = self._db.execute(
            "SELECT job_id, status FROM jobs WHERE status IN ('queued', 'running')").fetchall()
        now = time.time()
        with self._db:
            for job_id, status in rows:
                result = JobResult(message=LOST_MESSAGE.format(status=status), state_lost=True)
                spill = jobs_root / str(job_id) / "output.txt"
                size = spill.stat().st_size if spill.exists() else 0
                self._db.execute(
                    "UPDATE jobs SET status='lost', finished_at=?, result=?, output_bytes=? "
                    "WHERE job_id=?", (now, result.model_dump_json(), size, job_id))
        return len(rows)

    def insert(self, rec: JobRecord) -> None:
        self._db.execute(
            f"INSERT INTO jobs ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (rec.job_id, rec.session, rec.status, rec.code, rec.timeout, rec.client,
             rec.created_at, rec.started_at, rec.finished_at, rec.epoch,
             rec.result.model_dump_json() if rec.result else None, rec.output_bytes))

    def update(self, rec: JobRecord) -> None:
        self._db.execute(
            "UPDATE jobs SET status=?, started_at=?, finished_at=?, epoch=?, result=?, "
            "output_bytes=? WHERE job_id=?",
            (rec.status, rec.started_at, rec.finished_at, rec.epoch,
             rec.result.model_dump_json() if rec.result else None, rec.output_bytes,
             rec.job_id))

    def get(self, job_id: str) -> JobRecord | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return _record(row) if row else None

    def list(self, *, limit: int = 50, session: str | None = None,
             status: str | None = None) -> list[JobRecord]:
        """Most recent first."""
        where, args = [], []
        if session is not None:
            where.append("session=?")
            args.append(session)
        if status is not None:
            where.append("status=?")
            args.append(status)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM jobs {clause} ORDER BY seq DESC LIMIT ?",
            (*args, limit)).fetchall()
        return [_record(r) for r in rows]
