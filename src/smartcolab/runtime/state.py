"""What one running runtime server holds: config, authenticator, sessions, job store."""

from __future__ import annotations

import asyncio
import errno
import logging
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from smartcolab.runtime.config import RuntimeConfig
from smartcolab.runtime.engine.jobs import Job, job_dir, log_finished, make_view
from smartcolab.runtime.engine.sessions import KernelSession, busy, new_record
from smartcolab.runtime.engine.store import JobRecord, JobStore
from smartcolab.runtime.files.uploads import UploadLedger
from smartcolab.runtime.host import resources
from smartcolab.runtime.security.audit import AuditLog
from smartcolab.runtime.security.auth import Authenticator
from smartcolab.runtime.security.clientaddr import ClientResolver
from smartcolab.runtime.security.connections import QuietErrors
from smartcolab.runtime.security.hosts import HostPolicy
from smartcolab.runtime.security.redact import Redactor
from smartcolab.shared.errors import (
    Forbidden,
    InsufficientStorage,
    JobIdConflict,
    JobNotFound,
    KernelUnavailable,
    LowMemory,
    QueueFull,
    SessionExists,
    SessionNotFound,
    ShuttingDown,
    SmartColabError,
)
from smartcolab.shared.protocol import JobSubmit, JobView

log = logging.getLogger("smartcolab.runtime")
MAIN_SESSION = "main"
FLUSH_RETRY_S = 2.0


def storage_error(exc: BaseException, state_dir: Path, outcome: str) -> SmartColabError:
    """507 when the runtime's disk is full, with what to do; other failures stay 500."""
    full = (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or \
        (isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower())
    if not full:
        return SmartColabError(f"the runtime could not write its job store ({exc}); {outcome}")
    try:
        free = shutil.disk_usage(state_dir).free
    except OSError:
        free = -1
    return InsufficientStorage(
        f"the runtime's disk is full ({free} bytes free under {state_dir}): {outcome}. Free "
        "space on the runtime (delete large files or old outputs) and retry.",
        details={"state_dir": str(state_dir), "free_bytes": free}, retry_after=10.0)


class SessionManager:
    """Named sessions, live jobs, and the job store behind them."""

    def __init__(self, config: RuntimeConfig, boot_id: str, *, audit: AuditLog | None = None,
                 redactor: Redactor | None = None) -> None:
        self.config = config
        self.boot_id = boot_id
        self.audit = audit
        self.redactor = redactor or Redactor()
        self.store = JobStore(config.state_dir / "jobs.sqlite3")
        self.sessions: dict[str, KernelSession] = {}
        self.live: dict[str, Job] = {}
        self.losses = 0
        self.closing = False
        self.with_gpu = shutil.which("nvidia-smi") is not None
        self.unsaved: dict[str, Job] = {}
        self._quiet = QuietErrors()
        self._flusher: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ sessions
    async def start(self) -> None:
        lost = self.store.mark_unfinished_lost(self.config.state_dir / "jobs")
        if lost:
            log.warning("%d job(s) of a previous run were left unfinished: marked lost", lost)
            if self.audit is not None:
                self.audit.event("jobs_lost", count=lost)
        self._flusher = asyncio.create_task(self._flush_loop(), name="job-store-retry")
        if self.config.start_main_session:
            await self.create(MAIN_SESSION)

    def _state_lost(self) -> None:
        self.losses += 1

    async def create(self, name: str) -> KernelSession:
        if self.closing:
            raise ShuttingDown("the runtime is shutting down")
        if name in self.sessions:
            raise SessionExists(f"session {name!r} already exists; use it, or restart it")
        if len(self.sessions) >= self.config.max_sessions:
            raise Forbidden(f"this runtime allows at most {self.config.max_sessions} sessions; "
                            "delete one (DELETE /sessions/{name}) first",
                            details={"max_sessions": self.config.max_sessions})
        session = KernelSession(name, self.config, boot_id=self.boot_id, with_gpu=self.with_gpu,
                                record=self.record, on_state_lost=self._state_lost)
        self.sessions[name] = session
        try:
            await session.start()
        except Exception as exc:
            self.sessions.pop(name, None)
            await session.kernel.shutdown()
            raise KernelUnavailable(f"could not start a kernel for session {name!r}: {exc}") from exc
        return session

    def session(self, name: str) -> KernelSession:
        found = self.sessions.get(name)
        if found is None:
            known = ", ".join(sorted(self.sessions)) or "none"
            raise SessionNotFound(f"no session named {name!r} (sessions: {known}); create it "
                                  "with POST /sessions", details={"session": name})
        return found

    async def delete(self, name: str) -> None:
        if name == MAIN_SESSION:
            raise Forbidden("the main session cannot be deleted; restart it instead "
                            "(POST /sessions/main/restart)")
        session = self.session(name)
        del self.sessions[name]
        await session.stop()
        self._state_lost()

    # ------------------------------------------------------------ jobs
    def _write(self, job: Job) -> None:
        """Write a job's record, or keep it in memory until the store takes it again.

        Never raises: a full disk must not kill a session's worker.  Unsaved records
        are retried by every later write and by ``_flush_loop``; until then ``find``
        serves them from memory, so a client still sees the job's final status.
        """
        self.unsaved[job.rec.job_id] = job
        for job_id, pending in list(self.unsaved.items()):
            try:
                self.store.update(pending.rec)
            except (sqlite3.Error, OSError) as exc:
                if self._quiet.allow("store")[0]:
                    log.error("the job store could not be written (%s); %d record(s) are "
                              "kept in memory and retried", exc, len(self.unsaved))
                return
            self.unsaved.pop(job_id, None)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_RETRY_S)
            if self.unsaved:
                first = next(iter(self.unsaved.values()))
                self._write(first)

    def record(self, job: Job) -> None:
        """Write a job's current record; a terminal job leaves memory and wakes its waiters."""
        self._write(job)
        # Popping once makes the log lines once per job, however often it is recorded.
        first_end = job.terminal and self.live.pop(job.rec.job_id, None) is not None
        if job.terminal:
            job.done.set()
        job.notify()
        if first_end:
            # The record is durable already: the log lines are written after the woken
            # waiters had their turn of the event loop, not before.
            try:
                asyncio.get_running_loop().call_soon(self._log_finished, job)
            except RuntimeError:
                self._log_finished(job)

    def _log_finished(self, job: Job) -> None:
        log_finished(job)
        if self.audit is not None:
            rec = job.rec
            self.audit.job(job_id=rec.job_id, client=job.client_addr, session=rec.session,
                           code=rec.code, status=rec.status,
                           duration_s=(rec.finished_at - rec.started_at)
                           if rec.finished_at and rec.started_at else None)

    def submit(self, req: JobSubmit, client_addr: str | None) -> tuple[JobRecord, Job | None, bool]:
        """Queue a job unless its id exists; returns ``(record, live job, created)``.

        A new id is not looked up in the store first: the insert's UNIQUE constraint
        finds a stored one (one SQLite statement less on a new job's way to its
        kernel).  A job id already used is answered as before, whatever the refusals
        a new job would meet (a full queue, a busy session, low memory, shutdown).
        """
        live = self.live.get(req.job_id) or self.unsaved.get(req.job_id)
        if live is not None:
            return self._known(req, live.rec), live, False
        try:
            session, ram = self._admit(req)
        except SmartColabError:
            stored = self.store.get(req.job_id)
            if stored is None:
                raise
            return self._known(req, stored), None, False
        rec = new_record(req.job_id, session, req.code, req.timeout, req.client)
        try:
            self.store.insert(rec)
        except sqlite3.IntegrityError as exc:
            stored = self.store.get(req.job_id)
            if stored is None:
                raise storage_error(exc, self.config.state_dir, "nothing was queued") from exc
            return self._known(req, stored), None, False
        except (sqlite3.Error, OSError) as exc:
            raise storage_error(exc, self.config.state_dir, "nothing was queued; resubmit "
                                "the job (same job id) once there is space") from exc
        job = Job(rec, self.config, client_addr)
        job.submit_ram = ram
        self.live[rec.job_id] = job
        session.enqueue(job)
        return rec, job, True

    @staticmethod
    def _known(req: JobSubmit, existing: JobRecord) -> JobRecord:
        """The job of an id used before: returned, never rerun, if it is the same job."""
        if existing.code != req.code or existing.session != req.session:
            raise JobIdConflict(
                f"job id {req.job_id!r} was already used for different code or session; "
                "pick a new job id", details={"job_id": req.job_id})
        return existing

    def _admit(self, req: JobSubmit) -> tuple[KernelSession, resources.RamSnapshot]:
        """The session a new job queues on, and the RAM read for it; raises the refusal."""
        if self.closing:
            raise ShuttingDown("the runtime is shutting down; no new jobs are accepted")
        session = self.session(req.session)
        if req.if_idle and (session.running is not None or session.queue):
            raise busy(session)
        if len(session.queue) >= self.config.max_queued_per_session:
            raise QueueFull(f"session {req.session!r} already has {len(session.queue)} queued "
                            "jobs; wait for some to finish", retry_after=5.0)
        ram = resources.ram()
        if ram.available < self.config.min_free_ram_bytes and not req.force:
            raise LowMemory(
                f"only {ram.available / 2**20:.0f} MiB of RAM available (floor "
                f"{self.config.min_free_ram_bytes / 2**20:.0f} MiB): free memory (cleanup, "
                "del big variables) or resubmit with force=true",
                details={"ram_available_bytes": ram.available})
        return session, ram

    def find(self, job_id: str, *, missing_ok: bool = False,
             ) -> tuple[JobRecord | None, Job | None]:
        live = self.live.get(job_id) or self.unsaved.get(job_id)
        if live is not None:
            return live.rec, live
        rec = self.store.get(job_id)
        if rec is None and not missing_ok:
            raise JobNotFound(f"no job with id {job_id!r} on this runtime",
                              details={"job_id": job_id})
        return rec, None

    def _view(self, rec: JobRecord, live: Job | None, since: int | None) -> JobView:
        session = self.sessions.get(rec.session)
        if live is not None:  # its spill file's path is built already, its content maybe held
            spill, memo, size = live.out.spill.path, live.out.spill.memo, live.output_bytes
        else:
            spill, memo, size = job_dir(self.config, rec.job_id) / "output.txt", None, \
                rec.output_bytes
        return make_view(rec, session_epoch=session.epoch if session else None,
                         output_bytes=size, spill=spill, since=since,
                         text_limit=self.config.response_text_bytes, memo=memo)

    def view(self, rec: JobRecord, live: Job | None, since: int | None = None) -> JobView:
        # A job that echoes the environment or a file must not hand out the secret.
        return self.redactor.redact_model(self._view(rec, live, since))

    def view_json(self, rec: JobRecord, live: Job | None, since: int | None = None) -> bytes:
        """``view`` as the JSON answer itself: serialised once, here, and redacted as
        text, instead of dumped to redact, validated again and dumped again by FastAPI."""
        return self.redactor.redact(self._view(rec, live, since).model_dump_json()).encode()

    def cancel(self, job_id: str) -> Job | None:
        rec, live = self.find(job_id)
        if live is None or rec is None:
            return None
        session = self.sessions.get(rec.session)
        if session is not None:
            session.cancel(live)
        return live

    # ------------------------------------------------------------ lifecycle
    async def stop(self) -> None:
        self.closing = True
        await asyncio.gather(*(s.stop() for s in self.sessions.values()),
                             return_exceptions=True)
        self.sessions.clear()
        if self._flusher is not None:
            self._flusher.cancel()
        if self.unsaved:
            self._write(next(iter(self.unsaved.values())))
        self.store.close()


class RuntimeState:
    """Created by ``create_app``; started and stopped by the app's lifespan."""

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config
        self.auth = Authenticator(config.secret)
        self.hosts = HostPolicy(bind_host=config.host, allowed_hosts=config.allowed_hosts,
                                allowed_origins=config.allowed_origins)
        self.resolver = ClientResolver(config.trusted_proxies, config.allow_cidrs)
        self.redactor = Redactor(config.secret)
        self.audit = AuditLog(config.state_dir, max_bytes=config.audit_max_bytes,
                              backups=config.audit_backups, redactor=self.redactor)
        self.started_at = time.time()
        # A new boot id on every start: a server restart always changes the epoch.
        self.boot_id = uuid.uuid4().hex[:12]
        self.shutdown_requested = asyncio.Event()
        self._manager: SessionManager | None = None
        self.uploads = UploadLedger(config.state_dir)
        self._sweeper: asyncio.Task[None] | None = None
        # Called with the new secret before a rotation answers (the local daemon
        # rewrites its runtime file, so the next reader never holds a dead secret).
        self.secret_listeners: list[Callable[[str], None]] = []

    @property
    def manager(self) -> SessionManager:
        if self._manager is None:
            raise ShuttingDown("the runtime is not running")
        return self._manager

    async def start(self) -> None:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self.uploads.sweep, all_inactive=True)
        self._sweeper = asyncio.create_task(self.uploads.sweep_forever(), name="upload-sweep")
        self._manager = SessionManager(self.config, self.boot_id, audit=self.audit,
                                       redactor=self.redactor)
        await self._manager.start()

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._manager is not None:
            await self._manager.stop()
        self.audit.close()

    def trust_tunnel(self, public_url: str, agent_pid: int | None) -> None:
        """A tunnel opened: answer to its hostname, believe its agent's forwarded addresses."""
        self.hosts.allow_url(public_url)
        if agent_pid is not None:
            self.resolver.trust_agent(agent_pid)

    def rotate_secret(self, new_secret: str) -> None:
        """Switch to a new secret; kernels keep running, old outputs stay redacted."""
        self.redactor.add(new_secret)
        self.auth.rotate(new_secret)
        self.config.secret = new_secret
        for listener in self.secret_listeners:
            listener(new_secret)

    def epoch(self) -> str:
        """The runtime epoch: changes whenever any kernel's state is lost."""
        losses = self._manager.losses if self._manager is not None else 0
        return f"{self.boot_id}.{losses}"
