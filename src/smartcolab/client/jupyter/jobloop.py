"""The job loop of a Jupyter Server backend: one job at a time per session, tracked here.

Each job is one execute request through the kernel's job agent (``durable.py``); its
epoch comes back in the same reply.  A kernel without the agent runs nothing: the
loop installs the agent and sends the job again.  Jobs are kept in this bridge's
memory (``TRACKING_NOTE``); an earlier bridge's jobs are read from their spill files
(``reattach.py``).
"""

from __future__ import annotations

import logging
import time

from smartcolab.client.jupyter import durable
from smartcolab.client.jupyter import jobs as jobs_mod
from smartcolab.client.jupyter.jobs import TRACKING_NOTE, JobRecord, run_cell, wake
from smartcolab.client.jupyter.reattach import EarlierJobs
from smartcolab.client.jupyter.session import INTERNAL_TIMEOUT_S, JupyterSessions, KernelSession
from smartcolab.shared import kernel_code as kc
from smartcolab.shared.errors import (
    JobIdConflict,
    JobNotFound,
    KernelUnavailable,
    RuntimeUnreachable,
    SessionBusy,
    SmartColabError,
)
from smartcolab.shared.protocol import (
    TERMINAL_STATUSES,
    JobList,
    JobSubmit,
    JobView,
    OutputPage,
)

MAX_RESENDS = 20  # a job request nobody took is sent again (every jobs.UNTAKEN_S)
MAX_JOBS_KEPT = 2000

log = logging.getLogger(__name__)


class JupyterJobs(JupyterSessions):
    """Jobs queued per session and run by the session's worker task."""

    url: str
    earlier: EarlierJobs
    _jobs: dict[str, JobRecord]

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
                        try:
                            rec.epoch = await (self._settle(sess, before)
                                               if sess.forced_restarts != forced
                                               else self._epoch(sess))
                        except Exception as exc:  # the job's outcome stands; say why
                            log.warning("session %s: the kernel after job %s was not "
                                        "settled: %r", sess.name, rec.job_id, exc)
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

    async def _kernel_not_busy(self, sess: KernelSession) -> bool:
        """No process is working on anything: a request we sent and nobody took is lost."""
        model = await self.rest.call("GET", f"/api/kernels/{sess.kernel_id}", what="kernel")
        return bool(model) and model.get("execution_state") != "busy"


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
