"""A plain Jupyter Server (or a JupyterHub user server) as a runtime: the ``jupyter`` kind.

``JupyterBackend`` offers the same calls as ``RuntimeClient`` (see ``backend.py``), so
every tool works unchanged, but speaks only Jupyter Server's standard APIs: sessions
and kernels over REST, code over the kernel WebSocket, files through the contents
API (``files.py``).  Nothing of ours is installed on that side.

* A session ``NAME`` is the Jupyter session at path ``smartcolab-NAME`` (its kernel
  starts in the server's root directory); a bridge that restarts finds it again.
* Jobs run one at a time per session through the kernel's job agent
  (``kernelside/job_agent.py``, installed by the bridge, ``durable.py``): each job is one
  execute request, its output and status are also spilled to the runtime's disk, its
  deadline is enforced by the bridge (interrupt, then restart) and, with no bridge
  connected, by the agent's watchdog.  A new bridge re-attaches to a job from its files.
* The epoch is ``<kernel id>-<token>``: the token lives in the kernel's ``builtins``
  and is drawn again whenever it is missing, so a restart or crash (ours or not)
  changes the epoch and the tools report the state as lost.  It comes back with every
  job, as a user expression of the job's own execute request: a restart by someone
  else is announced on the WebSocket only after the fact, and a new kernel process has
  no agent, so it runs nothing and the bridge installs the agent and sends the job again.
* After a restart forced by a timeout the token must change within ``RESTART_VERIFY_S``
  (the old process, stuck with SIGINT blocked, may outlive the restart); if it does not,
  the Jupyter session is deleted (its kernel shut down) and created again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any, ClassVar, Literal

from smartcolab.client.backend import Capability, RuntimeBackend
from smartcolab.client.http.transfer import DownloadResult
from smartcolab.client.http.transfer_dir import ArchiveResult
from smartcolab.client.jupyter import dirs, durable
from smartcolab.client.jupyter import jobs as jobs_mod
from smartcolab.client.jupyter.durable import SpillReader
from smartcolab.client.jupyter.files import JupyterFiles
from smartcolab.client.jupyter.jobs import TRACKING_NOTE, JobRecord, run_cell, wake
from smartcolab.client.jupyter.kernel import JupyterRest, KernelChannel, RequestAuth
from smartcolab.client.jupyter.reattach import EarlierJobs
from smartcolab.client.local_files import ProgressFn
from smartcolab.client.retry import RetryPolicy
from smartcolab.shared import kernel_code as kc
from smartcolab.shared.errors import (
    InvalidInput,
    JobIdConflict,
    JobNotFound,
    KernelUnavailable,
    NotFound,
    RuntimeUnreachable,
    SessionBusy,
    SmartColabError,
)
from smartcolab.shared.protocol import (
    TERMINAL_STATUSES,
    CleanupReport,
    CleanupRequest,
    FileList,
    FileStat,
    Health,
    JobList,
    JobSubmit,
    JobView,
    OutputPage,
    PersistManifest,
    Probe,
    RestoreReport,
    RestoreRequest,
    SaveRequest,
    SessionList,
    SessionView,
    UploadResult,
    VariableInfo,
    VariableList,
)

log = logging.getLogger(__name__)

SESSION_PREFIX = "smartcolab-"
PERSIST_DIR = "smartcolab-persist"  # snapshots, under the server's root (the runtime's disk)
RESTART_VERIFY_S = 10.0
MAX_RESENDS = 20  # a job request nobody took is sent again (every jobs.UNTAKEN_S)  # a forced restart must show a new epoch token within this
BUSY_WAIT_S = 10.0
INTERNAL_TIMEOUT_S = 60.0
MAX_JOBS_KEPT = 2000
# A kernel that is still starting answers KernelUnavailable: one more try a second later.
_KERNEL_STARTING = RetryPolicy(attempts=2, initial_s=1.0, max_s=1.0, jitter_s=0.0)


class KernelSession:
    """One named session: its kernel, WebSocket, job queue and last known epoch."""

    def __init__(self, name: str, kernel_id: str, rest: JupyterRest, session_id: str) -> None:
        self.name, self.kernel_id, self._rest = name, kernel_id, rest
        self.session_id = session_id  # the Jupyter session's id
        self.forced_restarts = 0
        self.channel = KernelChannel(rest, kernel_id, on_lifecycle=self.lifecycle)
        self.stale = False
        self.lock = asyncio.Lock()
        self.queue: asyncio.Queue[JobRecord] = asyncio.Queue()
        self.epoch: str | None = None  # None: unknown until read again
        self.last_epoch: str | None = None  # the last one read, kept across restarts
        self.epoch_connects = -1  # channel.connects when the epoch was read
        self.running: JobRecord | None = None
        self.started_at = time.time()
        self.execution_count = 0
        self.worker: asyncio.Task[None] | None = None

    async def fresh_channel(self) -> KernelChannel:
        """After a restart, a new WebSocket: the old one may stay bound to the dead process."""
        if self.stale:
            self.stale = False
            old = self.channel
            self.channel = KernelChannel(self._rest, self.kernel_id,
                                         on_lifecycle=self.lifecycle)
            await old.aclose()
        return self.channel

    async def rebind(self, kernel_id: str, session_id: str) -> None:
        """Move to a new kernel (the old one was shut down): new WebSocket, epoch unknown."""
        old = self.channel
        self.kernel_id, self.session_id = kernel_id, session_id
        self.channel = KernelChannel(self._rest, kernel_id, on_lifecycle=self.lifecycle)
        self.stale, self.epoch, self.started_at = False, None, time.time()
        await old.aclose()

    def forced_restart(self) -> None:
        """``run_cell`` restarted the kernel (a cell ignored the interrupt)."""
        self.forced_restarts += 1
        self.lifecycle("restarted")

    def lifecycle(self, state: str) -> None:
        self.epoch = None  # the kernel's memory is gone: read the token again
        self.stale = True
        # The running cell decides what the event means for it (``jobs._lifecycle_ending``).
        if self.running is not None:
            wake(self.running, {"_sc_lifecycle": state})


class JupyterBackend(RuntimeBackend):
    """Drives one Jupyter Server through REST + WebSockets, with jobs tracked here."""

    kind_label: ClassVar[str] = "a Jupyter Server"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.FILES, Capability.PERSISTENCE, Capability.ARCHIVES})

    def __init__(self, url: str, token: str | None, *, kernel_name: str = "python3",
                 name: str | None = None, auth: RequestAuth | None = None) -> None:
        self.url = url.rstrip("/")
        self.name = name or self.url
        self.kernel_name = kernel_name
        self.last_epoch: str | None = None
        self.rest = JupyterRest(self.url, token, auth=auth)
        self.files = JupyterFiles(self.rest, self._sha256_in_kernel)
        self._sessions: dict[str, KernelSession] = {}
        self._jobs: dict[str, JobRecord] = {}
        self.spill = SpillReader(self.rest)
        self.earlier = EarlierJobs(self.rest, self.spill, self._kernel_of)
        self._open_lock = asyncio.Lock()
        self._version: str | None = None

    @property
    def tracking_note(self) -> str | None:
        return TRACKING_NOTE

    async def aclose(self) -> None:
        for sess in list(self._sessions.values()):
            if sess.worker is not None:
                sess.worker.cancel()
                with contextlib.suppress(BaseException):
                    await sess.worker
            await sess.channel.aclose()
        self._sessions.clear()
        await self.rest.aclose()

    # ------------------------------------------------------------ sessions
    async def _session(self, name: str) -> KernelSession:
        """The session ``name``, attaching to its Jupyter session or creating it."""
        sess = self._sessions.get(name)
        if sess is not None:
            return sess
        async with self._open_lock:
            sess = self._sessions.get(name)
            if sess is not None:
                return sess
            model = await self._open(name)
            sess = KernelSession(name, str(model["kernel"]["id"]), self.rest, str(model["id"]))
            sess.worker = asyncio.create_task(self._work(sess))
            self._sessions[name] = sess
            return sess

    async def _open(self, name: str) -> dict[str, Any]:
        # POST returns the existing session for a path, so this also re-attaches.
        model: dict[str, Any] = await self.rest.call("POST", "/api/sessions", json_body={
            "path": SESSION_PREFIX + name, "name": name, "type": "console",
            "kernel": {"name": self.kernel_name}}, timeout=120.0, what="start a kernel")
        return model

    async def _settle(self, sess: KernelSession, before: str | None) -> str:
        """After a restart we forced (lock held): the epoch of a kernel that really is new."""
        try:
            epoch = await asyncio.wait_for(self._epoch(sess), RESTART_VERIFY_S)
            if epoch != before:
                return epoch
            log.warning("session %s: the old kernel still answers after its restart", sess.name)
        except (asyncio.TimeoutError, SmartColabError) as exc:
            log.warning("session %s: no new kernel after the restart (%r)", sess.name, exc)
        with contextlib.suppress(NotFound):  # deleting the session shuts its kernel down
            await self.rest.call("DELETE", f"/api/sessions/{sess.session_id}", timeout=120.0,
                                 what="shut down the stuck kernel")
        model = await self._open(sess.name)
        await sess.rebind(str(model["kernel"]["id"]), str(model["id"]))
        return await self._epoch_retry(sess)

    async def _epoch_retry(self, sess: KernelSession) -> str:
        """``_epoch``, once more after a second if the kernel is still starting."""
        async for attempt in _KERNEL_STARTING.retrying(
                lambda exc: isinstance(exc, KernelUnavailable)):
            with attempt:
                return await self._epoch(sess)
        raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises

    async def _epoch(self, sess: KernelSession) -> str:
        """Read the kernel's token (lock held): ``<kernel id>-<token>``.

        The token comes back in the ``execute_reply`` (shell channel), not as output: after
        a restart by someone else, this WebSocket's IOPub may not be subscribed to the new
        process yet, and the read must not wait for output that never comes.  A changed
        token means exactly that restart, so the next cell gets a fresh WebSocket (Jupyter
        Server checks a new one's IOPub before it opens).
        """
        reused = not sess.stale  # else the read itself opens a fresh WebSocket
        rec, reply = await self._run_internal(sess, kc.call("epoch", "epoch"),
                                              user_expressions={"epoch": kc.EPOCH_EXPRESSION},
                                              until_reply=True)
        token = kc.expression_value(reply, "epoch")
        epoch = f"{sess.kernel_id[:8]}-{token if token is not None else kc.parse(rec.stdout)}"
        if reused and sess.last_epoch is not None and epoch != sess.last_epoch:
            sess.stale = True
        sess.epoch = sess.last_epoch = epoch
        sess.epoch_connects = sess.channel.connects
        self.last_epoch = sess.epoch
        return sess.epoch

    async def _run_internal(self, sess: KernelSession, code: str, *,
                            timeout: float = INTERNAL_TIMEOUT_S, until_reply: bool = False,
                            user_expressions: dict[str, str] | None = None,
                            ) -> tuple[JobRecord, dict[str, Any]]:
        """Run a helper cell silently (lock held); its record and reply, or an error."""
        rec = JobRecord(job_id="internal", session=sess.name, code=code, timeout=timeout,
                        client=None)
        reply = await run_cell(self.rest, await sess.fresh_channel(), rec, silent=True,
                               on_restart=sess.forced_restart, until_reply=until_reply,
                               user_expressions=user_expressions)
        if rec.status != "succeeded":
            detail = f"{rec.error.ename}: {rec.error.evalue}" if rec.error else rec.status
            raise KernelUnavailable(f"the kernel of session {sess.name!r} did not answer an "
                                    f"inspection request ({detail}).")
        return rec, reply

    async def _internal_locked(self, sess: KernelSession, code: str) -> str:
        rec, _ = await self._run_internal(sess, code)
        return rec.stdout

    async def _internal(self, name: str, code: str) -> tuple[KernelSession, str, str]:
        """Run an inspection snippet between jobs; (session, its stdout, epoch)."""
        sess = await self._session(name)
        try:
            await asyncio.wait_for(sess.lock.acquire(), BUSY_WAIT_S)
        except asyncio.TimeoutError:
            running = sess.running.job_id if sess.running else "a job"
            raise SessionBusy(f"session {name!r} is running {running}; try again when it has "
                              "ended (get_job), or use another session.",
                              details={"session": name}) from None
        try:
            epoch = await self._epoch(sess)
            return sess, await self._internal_locked(sess, code), epoch
        finally:
            sess.lock.release()

    def _view(self, sess: KernelSession) -> SessionView:
        status: Literal["busy", "idle", "starting"] = (
            "busy" if sess.running else ("idle" if sess.epoch else "starting"))
        return SessionView(name=sess.name, epoch=sess.epoch or "", status=status,
                           queued=sess.queue.qsize(),
                           running_job=sess.running.job_id if sess.running else None,
                           started_at=sess.started_at, execution_count=sess.execution_count)

    async def sessions(self) -> SessionList:
        main = await self._session("main")  # like the runtime server: "main" always exists
        if main.epoch is None and not main.lock.locked():
            async with main.lock:
                await self._epoch(main)
        return SessionList(sessions=[self._view(s) for s in self._sessions.values()])

    async def create_session(self, name: str) -> SessionView:
        sess = await self._session(name)
        async with sess.lock:
            await self._epoch(sess)
        return self._view(sess)

    async def restart_session(self, name: str) -> SessionView:
        sess = await self._session(name)
        await self.rest.call("POST", f"/api/kernels/{sess.kernel_id}/restart", json_body={},
                             timeout=120.0, what="restart the kernel")
        sess.lifecycle("restarted")
        async with sess.lock:
            await self._epoch(sess)
        return self._view(sess)

    async def delete_session(self, name: str) -> None:
        sess = self._sessions.pop(name, None)
        if sess is None:
            return
        if sess.worker is not None:
            sess.worker.cancel()
        await sess.channel.aclose()
        with contextlib.suppress(NotFound):
            await self.rest.call("DELETE", f"/api/kernels/{sess.kernel_id}", what="shut down")

    # ------------------------------------------------------------ jobs
    async def _work(self, sess: KernelSession) -> None:
        """Run the session's jobs one at a time, in order."""
        while True:
            rec = await sess.queue.get()
            if rec.status != "queued":
                continue  # cancelled while queued
            async with sess.lock:
                sess.running = rec
                rec.status, rec.started_at = "running", time.time()
                rec.touch()
                try:
                    rec.epoch = before = sess.epoch or ""
                    forced = sess.forced_restarts
                    await self._run_job(sess, rec)
                    before = before or rec.epoch
                    if rec.state_lost:
                        with contextlib.suppress(Exception):
                            rec.epoch = await (self._settle(sess, before)
                                               if sess.forced_restarts != forced
                                               else self._epoch(sess))
                except Exception as exc:  # the job must end, whatever broke
                    rec.status = "lost"
                    rec.message = await self._lost_note(exc)
                finally:
                    sess.running = None
                    if rec.execution_count:
                        sess.execution_count = rec.execution_count
                    rec.finish(rec.status)

    async def _run_job(self, sess: KernelSession, rec: JobRecord) -> None:
        """The job as one execute request through the agent (lock held); its epoch comes
        back in the same reply.  A kernel without the agent runs nothing: install, resend."""
        cell = durable.job_cell(rec.job_id, rec.code, rec.timeout, rec.session, rec.created_at)
        installs = resends = 0
        while True:
            reply = await run_cell(self.rest, await sess.fresh_channel(), rec, code=cell,
                                   on_restart=sess.forced_restart,
                                   user_expressions=durable.job_expressions(rec.job_id),
                                   done_at_reply=lambda r: not durable.agent_present(r),
                                   lost_request=lambda: self._kernel_not_busy(sess))
            if reply == jobs_mod.UNTAKEN and resends < MAX_RESENDS:
                # Sent to a process that died (e.g. killed by the agent's watchdog; its
                # restart gets new ports) or not taken at all: send it again on a fresh
                # WebSocket.  The agent never runs a job id twice (``_from_files``).
                sess.stale, rec.status, resends = True, "running", resends + 1
                continue
            if not reply or reply == jobs_mod.UNTAKEN:
                return  # ended by a kernel event; the caller settles the epoch
            token = kc.expression_value(reply, "epoch")
            if durable.agent_present(reply):
                rec.spilled = True
                rec.epoch = self._note_epoch(sess, token) if token else rec.epoch
                if durable.duplicate(reply):  # an earlier copy of this request ran it
                    await self._from_files(rec)
                return
            if installs:
                raise KernelUnavailable(f"the job agent did not start in the kernel of "
                                        f"session {sess.name!r}")
            if token is None and sess.last_epoch is not None:
                sess.stale = True  # a new process: its IOPub may not be bound to our socket yet
            rec.status, rec.error, rec.message = "running", None, None
            await self._install_agent(sess)
            installs += 1
            rec.epoch = sess.epoch or rec.epoch

    async def _from_files(self, rec: JobRecord) -> None:
        """Fill ``rec`` from the job's spill files, once the job (run by an earlier copy of
        its request, whose messages went to a closed WebSocket) has ended."""
        att = await self.earlier.attach(rec.job_id)
        view = await self.earlier.view(att, wait=0.0, since=None)
        while not att.ended:
            view = await self.earlier.view(att, wait=INTERNAL_TIMEOUT_S, since=att.total)
        text = await self.spill.page(rec.job_id, 0, att.total, att.total)
        rec.output, rec.dropped = text, 0
        result = view.result
        if result is not None:
            rec.stdout, rec.stderr = result.stdout.text, result.stderr.text
            rec.outputs, rec.error = list(result.outputs), result.error
            rec.execution_count, rec.state_lost = result.execution_count, result.state_lost
        rec.status = att.job_status
        rec.touch()

    async def _kernel_of(self, session: str) -> str:
        return (await self._session(session)).kernel_id

    async def _kernel_not_busy(self, sess: KernelSession) -> bool:
        """No process is working on anything: a request we sent and nobody took is lost."""
        model = await self.rest.call("GET", f"/api/kernels/{sess.kernel_id}", what="kernel")
        return bool(model) and model.get("execution_state") != "busy"

    async def _install_agent(self, sess: KernelSession) -> None:
        rec, _ = await self._run_internal(sess, durable.install_cell(
            jobs_mod.INTERRUPT_GRACE_S, jobs_mod.INTERRUPT_REPEAT_S))
        self._note_epoch(sess, str(kc.parse(rec.stdout)["epoch"]))

    def _note_epoch(self, sess: KernelSession, token: str) -> str:
        """Record the epoch read from the kernel; a changed one wants a fresh WebSocket."""
        epoch = f"{sess.kernel_id[:8]}-{token}"
        if sess.last_epoch is not None and epoch != sess.last_epoch:
            sess.stale = True
        sess.epoch = sess.last_epoch = self.last_epoch = epoch
        sess.epoch_connects = sess.channel.connects
        return epoch

    async def _lost_note(self, exc: Exception) -> str:
        """Why a job's end was not seen; a Jupyter Server that vanished is said plainly."""
        if isinstance(exc, (KernelUnavailable, RuntimeUnreachable)):
            try:
                await self.rest.call("GET", "/api/status", timeout=5.0, what="status")
            except SmartColabError:
                return (f"the Jupyter Server at {self.url} stopped answering while the job ran "
                        f"({exc}). The output seen until then is kept; whether the code "
                        "finished is unknown. If the server comes back, get_job reads the job "
                        "from its files; if it was replaced, re-run the job.")
        return f"the job could not run on the Jupyter Server: {exc}"

    def _record(self, job_id: str) -> JobRecord:
        rec = self._jobs.get(job_id)
        if rec is None:
            raise JobNotFound(f"job {job_id} is not known to this bridge. {TRACKING_NOTE}",
                              details={"job_id": job_id})
        return rec

    async def submit(self, job: JobSubmit, *, wait: float = 0.0) -> JobView:
        """Queue ``job`` in its session; the same job id is never run twice."""
        rec = self._jobs.get(job.job_id)
        if rec is not None and rec.code != job.code:
            raise JobIdConflict(f"job id {job.job_id} was used for different code",
                                details={"job_id": job.job_id})
        if rec is None:
            sess = await self._session(job.session)
            # A job that has ended is not "busy" while the worker still settles after it.
            running = sess.running if sess.running and sess.running.status not in \
                TERMINAL_STATUSES else None
            if job.if_idle and (running is not None or not sess.queue.empty()):
                raise SessionBusy(f"session {job.session!r} is busy; nothing was queued", details={
                    "session": job.session,
                    "running_job": running.job_id if running else None,
                    "running_for_s": round(time.time() - running.started_at, 1)
                    if running and running.started_at else None,
                    "queued": sess.queue.qsize()})
            rec = JobRecord(job_id=job.job_id, session=job.session, code=job.code,
                            timeout=job.timeout, client=job.client, epoch=sess.epoch or "")
            self._jobs[job.job_id] = rec
            self._trim()
            sess.queue.put_nowait(rec)
        # Like the runtime server: the first wait rides on the submission, until the end.
        deadline = time.monotonic() + max(0.0, wait)
        while rec.status not in TERMINAL_STATUSES and time.monotonic() < deadline:
            await rec.wait(deadline - time.monotonic())
        return rec.view()

    def _trim(self) -> None:
        if len(self._jobs) > MAX_JOBS_KEPT:
            done = [k for k, r in self._jobs.items() if r.status in TERMINAL_STATUSES]
            for key in done[: len(self._jobs) - MAX_JOBS_KEPT]:
                del self._jobs[key]

    async def get_job(self, job_id: str, *, wait: float = 0.0, since: int | None = None) -> JobView:
        """Wait up to ``wait`` s for the job to end or print something after ``since``."""
        if job_id not in self._jobs:
            return await self.earlier.view(await self.earlier.attach(job_id), wait=wait, since=since)
        rec = self._record(job_id)
        deadline = time.monotonic() + max(0.0, wait)
        while rec.status not in TERMINAL_STATUSES and rec.total_chars <= (since or 0):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await rec.wait(left)
        return rec.view(since)

    async def cancel_job(self, job_id: str) -> JobView:
        if job_id not in self._jobs:  # an earlier bridge's job: the kernel's watchdog stops it
            return await self.earlier.cancel(job_id, wait=INTERNAL_TIMEOUT_S)
        rec = self._record(job_id)
        if rec.status == "queued":
            rec.message = "cancelled before it started"
            rec.finish("cancelled")
        elif rec.status == "running" and not rec.cancel_requested:
            rec.cancel_requested = True
            wake(rec, {"_sc_wake": True})
            # Until the job ends (its output may change first), like the runtime server.
            deadline = time.monotonic() + INTERNAL_TIMEOUT_S
            while rec.status not in TERMINAL_STATUSES and time.monotonic() < deadline:
                await rec.wait(deadline - time.monotonic())
        return rec.view()

    async def list_jobs(self, *, limit: int = 50, session: str | None = None,
                        status: str | None = None) -> JobList:
        recs = [r for r in reversed(self._jobs.values())
                if (session is None or r.session == session)
                and (status is None or r.status == status)]
        return JobList(jobs=[r.view(r.total_chars) for r in recs[:limit]])

    async def job_output(self, job_id: str, *, offset: int = 0, limit: int = 65536) -> OutputPage:
        rec = self._jobs.get(job_id)
        if rec is not None and not (rec.spilled and offset < rec.dropped):
            return rec.page(offset, limit)
        if rec is not None:  # the front was dropped from memory: the spill files have it
            total = rec.total_chars
            text = await self.spill.page(job_id, offset, limit, total)
            nxt = offset + len(text)
            return OutputPage(job_id=job_id, offset=offset, next_offset=nxt, total_bytes=total,
                              text=text, complete=rec.status in TERMINAL_STATUSES and
                              nxt >= total)
        return await self.earlier.page(job_id, offset, limit)

    # ------------------------------------------------------------ inspection
    async def _server_version(self) -> str:
        if self._version is None:
            info = await self.rest.call("GET", "/api", what="the server version")
            self._version = f"jupyter_server {info.get('version', '?')}"
        return self._version

    async def health(self) -> Health:
        version = await self._server_version()
        await self.rest.call("GET", "/api/status", what="status")  # proves the token
        main = self._sessions.get("main")
        return Health(status="ok", version=version, epoch=(main.epoch if main else None) or "")

    async def probe(self) -> Probe:
        _, out, epoch = await self._internal("main", kc.call("probe", "probe"))
        return Probe(**kc.parse(out), epoch=epoch, version=await self._server_version(),
                     notes=["measured inside the kernel of session 'main' on a plain Jupyter "
                            "Server; server_uptime_s is that kernel's age"])

    async def variables(self, session: str = "main", *,
                        include_private: bool = False) -> VariableList:
        _, out, epoch = await self._internal(
            session, kc.call("variables", "variables", {"private": include_private}))
        return VariableList(session=session, epoch=epoch,
                            variables=[VariableInfo.model_validate(v) for v in kc.parse(out)])

    async def cleanup(self, session: str = "main",
                      request: CleanupRequest | None = None) -> CleanupReport:
        req = request or CleanupRequest()
        _, out, epoch = await self._internal(session, kc.call(
            "cleanup", "cleanup", {"reset": req.reset, "names": req.names}))
        return CleanupReport(session=session, epoch=epoch, **kc.parse(out))

    # ------------------------------------------------------------ persistence (runtime's disk)
    async def save_variables(self, session: str = "main",
                             request: SaveRequest | None = None) -> PersistManifest:
        """Pickle the session's variables into ``smartcolab-persist/<snapshot>/``."""
        req = request or SaveRequest()
        _check_names(req.names)
        sess = await self._session(session)
        _, out, _ = await self._internal(session, kc.call("persist", "save", {
            "directory": PERSIST_DIR, "snapshot": req.snapshot or session, "names": req.names,
            "session": session, "epoch": sess.epoch or sess.last_epoch or ""}))
        return PersistManifest.model_validate(kc.parse(out))

    async def restore_variables(self, session: str = "main",
                                request: RestoreRequest | None = None) -> RestoreReport:
        """Load a snapshot saved on this server into the session (e.g. after a restart)."""
        req = request or RestoreRequest()
        _check_names(req.names)
        snapshot = req.snapshot or session
        if await self.spill.json(f"{PERSIST_DIR}/{snapshot}/manifest.json") is None:
            raise NotFound(f"no snapshot {snapshot!r} under {PERSIST_DIR}/ on the Jupyter "
                           "Server; save_variables makes one",
                           details={"snapshot": snapshot})
        _, out, epoch = await self._internal(session, kc.call("persist", "restore", {
            "directory": PERSIST_DIR, "snapshot": snapshot, "names": req.names}))
        return RestoreReport(snapshot=snapshot, session=session, epoch=epoch, **kc.parse(out))

    async def _sha256_in_kernel(self, path: str) -> dict[str, Any]:
        """sha256 and size of a file, computed inside the kernel (relative to the root)."""
        _, out, _ = await self._internal("main", kc.call("files", "sha256", {"path": path}))
        result: dict[str, Any] = kc.parse(out)
        return result

    # ------------------------------------------------------------ files (contents API)
    async def list_files(self, path: str = "", *, recursive: bool = False,
                         pattern: str | None = None, limit: int = 1000) -> FileList:
        return await self.files.list_files(path, recursive=recursive, pattern=pattern,
                                           limit=limit)

    async def stat(self, path: str, *, with_hash: bool = True) -> FileStat:
        return await self.files.stat(path, with_hash=with_hash)

    async def download(self, remote_path: str, save_dir: str | os.PathLike[str],
                       local_name: str | None = None, *, overwrite: bool = False,
                       progress: ProgressFn | None = None,
                       compress: bool = False) -> DownloadResult:
        # The contents API has no compression: ``compress`` is ignored.
        return await self.files.download(remote_path, save_dir, local_name,
                                         overwrite=overwrite, progress=progress)

    async def download_dir(self, remote_dir: str, save_dir: str | os.PathLike[str],
                           local_name: str | None = None, *, overwrite: bool = False,
                           progress: ProgressFn | None = None) -> ArchiveResult:
        """Packed in the kernel of session 'main', fetched as one file (``dirs.py``)."""
        async def internal(code: str) -> str:
            return (await self._internal("main", code))[1]

        return await dirs.download_dir(self.files, internal, remote_dir, save_dir, local_name,
                                       overwrite=overwrite, progress=progress)

    async def upload(self, local_path: str | os.PathLike[str], remote_path: str, *,
                     overwrite: bool = False, progress: ProgressFn | None = None
                     ) -> UploadResult:
        return await self.files.upload(local_path, remote_path, overwrite=overwrite,
                                       progress=progress)


def _check_names(names: list[str]) -> None:
    bad = [n for n in names if not n.isidentifier()]
    if bad:
        raise InvalidInput(f"not Python variable names: {', '.join(map(repr, bad[:10]))}",
                           details={"names": bad[:50]})
