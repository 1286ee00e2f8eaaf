"""The bridge's local journal: every job it submits, in SQLite (WAL) under CHECKPOINT_DIR.

Colab VMs disappear with their job store; the journal keeps what the bridge saw
(runtime, job id, code, status, output tail, timings) so ``get_job`` and
``list_jobs`` can still answer, and say so, when the runtime is unreachable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from smartcolab.shared.private import private_dir
from smartcolab.shared.protocol import TERMINAL_STATUSES, JobView
from smartcolab.shared.sqlite import open_db

JOURNAL_FILE = "bridge-journal.sqlite3"
OUTPUT_TAIL_CHARS = 4000
log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id       TEXT PRIMARY KEY,
    runtime      TEXT NOT NULL,
    url          TEXT NOT NULL,
    session      TEXT NOT NULL,
    code         TEXT NOT NULL,
    timeout      REAL,
    status       TEXT NOT NULL,
    epoch        TEXT,
    submitted_at REAL NOT NULL,
    updated_at   REAL NOT NULL,
    started_at   REAL,
    finished_at  REAL,
    duration_s   REAL,
    output_tail  TEXT NOT NULL DEFAULT '',
    error        TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_runtime ON jobs (runtime, submitted_at DESC);
CREATE TABLE IF NOT EXISTS epochs (
    observer   TEXT NOT NULL,
    runtime    TEXT NOT NULL,
    session    TEXT NOT NULL,
    epoch      TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (observer, runtime, session)
);
CREATE TABLE IF NOT EXISTS shown (
    observer   TEXT NOT NULL,
    client     TEXT NOT NULL,
    job_id     TEXT NOT NULL,
    cursor     INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (observer, client, job_id)
);
CREATE TABLE IF NOT EXISTS tasks (
    task_id    TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    tool       TEXT NOT NULL,
    arguments  TEXT NOT NULL,
    job_id     TEXT,
    status     TEXT NOT NULL,
    message    TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    ttl_ms     INTEGER,
    result     TEXT,
    error      TEXT
);
CREATE INDEX IF NOT EXISTS tasks_by_owner ON tasks (owner, created_at DESC);
CREATE TABLE IF NOT EXISTS artifacts (
    name       TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class TaskRow:
    """An MCP task (mcp/extensions/tasks.py): who asked, for what, and where it stands.

    ``result``/``error`` are JSON text (the final tool result, or a JSON-RPC error).
    """

    task_id: str
    owner: str
    tool: str
    arguments: str
    job_id: str | None
    status: str
    message: str | None
    created_at: float
    updated_at: float
    ttl_ms: int | None
    result: str | None
    error: str | None


@dataclass(frozen=True)
class JournalEntry:
    job_id: str
    runtime: str
    url: str
    session: str
    code: str
    timeout: float | None
    status: str
    epoch: str | None
    submitted_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    duration_s: float | None
    output_tail: str
    error: str | None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


class _InOrder:
    """The journal's lock, with writes that may be done after their caller moved on.

    ``later(write)`` queues a write for one thread of the journal's own; whoever takes
    the lock (every other read or write) first waits until the writes queued before
    are done, so everything happens in the order it was asked and a read sees every
    write before it.  A job's view and the output cursor shown, written after the
    runtime answered, so stay off the path of the answer to the MCP client (two
    SQLite commits: a tenth of a short call's time on the bridge's side).  ``close``
    waits for them; a bridge killed in the millisecond between an answer and its write
    loses that view, as it would lose any later one: the journal keeps the job as last
    written, and ``get_job`` asks the runtime.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._queue: deque[Callable[[], object]] = deque()
        self._busy = False
        self._worker: threading.Thread | None = None

    def later(self, write: Callable[[], object]) -> None:
        with self._cond:
            self._queue.append(write)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="journal-writes",
                                                daemon=True)
                self._worker.start()
            self._cond.notify_all()

    def drain(self) -> None:
        with self._cond:
            while self._queue or self._busy:
                self._cond.wait()

    def __enter__(self) -> None:
        self.drain()
        self._lock.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._lock.release()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                write = self._queue.popleft()
                self._busy = True
            try:
                with self._lock:
                    write()
            except Exception:  # the caller has moved on: the failure can only be logged
                log.warning("a journal write failed", exc_info=True)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


class Journal:
    """A small thread-safe SQLite store; every write is one short transaction."""

    def __init__(self, directory: Path) -> None:
        private_dir(directory)
        self.path = directory / JOURNAL_FILE
        self._lock = _InOrder()
        self._db = open_db(self.path)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record_submit(self, *, job_id: str, runtime: str, url: str, session: str, code: str,
                      timeout: float | None) -> None:
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO jobs (job_id, runtime, url, session, code, timeout, status,"
                " submitted_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'submitted', ?, ?)",
                (job_id, runtime, url, session, code, timeout, now, now))

    def record_view(self, view: JobView, *, output_tail: str | None = None) -> None:
        """Update a job from a runtime view; ``output_tail`` replaces the stored tail.
        Written after the caller moves on (``_InOrder``), before any later access."""
        error = None
        result = view.result
        if result is not None and result.error is not None:
            error = f"{result.error.ename}: {result.error.evalue}"
        elif result is not None and result.message and view.status != "succeeded":
            error = result.message
        if output_tail is None and result is not None:
            output_tail = result.stdout.text + result.stderr.text
        row = (view.status, view.epoch, time.time(), view.started_at, view.finished_at,
               view.duration_s, error,
               None if output_tail is None else output_tail[-OUTPUT_TAIL_CHARS:], view.job_id)
        self._lock.later(lambda: self._db.execute(
            "UPDATE jobs SET status=?, epoch=?, updated_at=?, started_at=?, finished_at=?,"
            " duration_s=?, error=COALESCE(?, error),"
            " output_tail=COALESCE(?, output_tail) WHERE job_id=?", row))

    def record_status(self, job_id: str, status: str, *, error: str | None = None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status=?, updated_at=?, error=COALESCE(?, error) WHERE job_id=?",
                (status, time.time(), error, job_id))

    def get(self, job_id: str) -> JournalEntry | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id=?",
                                   (job_id,)).fetchone()
        return JournalEntry(*row) if row else None

    def recent(self, *, runtime: str | None = None, limit: int = 50) -> list[JournalEntry]:
        query = f"SELECT {_COLUMNS} FROM jobs"
        args: tuple[object, ...] = ()
        if runtime is not None:
            query += " WHERE runtime=?"
            args = (runtime,)
        query += " ORDER BY submitted_at DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, (*args, limit)).fetchall()
        return [JournalEntry(*row) for row in rows]

    def succeeded_in_epoch(self, runtime: str, session: str, epoch: str,
                           limit: int = 20) -> list[JournalEntry]:
        """Jobs whose effects lived in a session epoch that is now gone (oldest first)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE runtime=? AND session=? AND epoch=?"
                " AND status='succeeded' ORDER BY submitted_at DESC LIMIT ?",
                (runtime, session, epoch, limit)).fetchall()
        return [JournalEntry(*row) for row in reversed(rows)]

    # ------------------------------------------------------------ epochs
    # The last session epoch each bridge (``observer``: its client lease) saw, so a
    # STATE LOST note is right after a bridge restart too.
    def load_epoch(self, observer: str, runtime: str, session: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT epoch FROM epochs WHERE observer=? AND runtime=? AND session=?",
                (observer, runtime, session)).fetchone()
        return str(row[0]) if row else None

    def save_epoch(self, observer: str, runtime: str, session: str, epoch: str | None) -> None:
        with self._lock:
            if epoch is None:
                self._db.execute(
                    "DELETE FROM epochs WHERE observer=? AND runtime=? AND session=?",
                    (observer, runtime, session))
            else:
                self._db.execute(
                    "INSERT INTO epochs (observer, runtime, session, epoch, updated_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (observer, runtime, session)"
                    " DO UPDATE SET epoch=excluded.epoch, updated_at=excluded.updated_at",
                    (observer, runtime, session, epoch, time.time()))

    def forget_epochs(self, observer: str, runtime: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM epochs WHERE observer=? AND runtime=?",
                             (observer, runtime))

    # ------------------------------------------------------------ shown output
    # How far each MCP client of a bridge (``observer``) has been shown a job's output,
    # so get_job after a bridge restart does not repeat it (mcp/cursors.py).
    def load_shown(self, observer: str, client: str, job_id: str) -> int | None:
        with self._lock:
            row = self._db.execute(
                "SELECT cursor FROM shown WHERE observer=? AND client=? AND job_id=?",
                (observer, client, job_id)).fetchone()
        return int(row[0]) if row else None

    def save_shown(self, observer: str, client: str, job_id: str, cursor: int) -> None:
        row = (observer, client, job_id, cursor, time.time())
        self._lock.later(lambda: self._db.execute(
            "INSERT INTO shown (observer, client, job_id, cursor, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (observer, client, job_id)"
            " DO UPDATE SET cursor=excluded.cursor, updated_at=excluded.updated_at", row))

    # ------------------------------------------------------------ tasks
    # The MCP task store: it lives here so tasks survive a bridge restart with the jobs.
    def put_task(self, row: TaskRow) -> None:
        with self._lock:
            self._db.execute(f"INSERT INTO tasks ({_TASK_COLUMNS}) VALUES"
                             " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", tuple(vars(row).values()))

    def update_task(self, task_id: str, status: str, *, message: str | None = None,
                    result: str | None = None, error: str | None = None,
                    job_id: str | None = None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE tasks SET status=?, updated_at=?, message=COALESCE(?, message),"
                " result=COALESCE(?, result), error=COALESCE(?, error),"
                " job_id=COALESCE(?, job_id) WHERE task_id=?",
                (status, time.time(), message, result, error, job_id, task_id))

    def get_task(self, task_id: str) -> TaskRow | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE task_id=?",
                                   (task_id,)).fetchone()
        return TaskRow(*row) if row else None

    def tasks_of(self, owner: str, *, before: float | None = None,
                 limit: int = 50) -> list[TaskRow]:
        """An owner's tasks, newest first (``before``: created before, for paging)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE owner=? AND created_at<?"
                " ORDER BY created_at DESC LIMIT ?",
                (owner, float("inf") if before is None else before, limit)).fetchall()
        return [TaskRow(*r) for r in rows]

    def purge_tasks(self, now: float) -> int:
        """Forget tasks whose time to live has passed."""
        with self._lock:
            cur = self._db.execute("DELETE FROM tasks WHERE ttl_ms IS NOT NULL"
                                   " AND created_at + ttl_ms / 1000.0 < ?", (now,))
        return cur.rowcount

    # ------------------------------------------------------------ artifacts
    # Names of files this bridge saved in its save directory (the only ones served
    # as resources).
    def record_artifact(self, name: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO artifacts (name, created_at)"
                             " VALUES (?, ?)", (name, time.time()))

    def artifacts(self, limit: int = 500) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT name FROM artifacts ORDER BY created_at DESC"
                                    " LIMIT ?", (limit,)).fetchall()
        return [str(r[0]) for r in rows]

    def has_artifact(self, name: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM artifacts WHERE name=?",
                                    (name,)).fetchone() is not None


_TASK_COLUMNS = ("task_id, owner, tool, arguments, job_id, status, message, created_at,"
                 " updated_at, ttl_ms, result, error")
_COLUMNS = ("job_id, runtime, url, session, code, timeout, status, epoch, submitted_at,"
            " updated_at, started_at, finished_at, duration_s, output_tail, error")
