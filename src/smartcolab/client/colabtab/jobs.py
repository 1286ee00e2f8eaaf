"""Jobs on a Colab tab: a visible job cell starts each one in a kernel thread, control-cell
polls follow it.

The job agent in the page's kernel (``kernelside/tab/agent.py``) owns the job: its spill
files, its status, its deadline and stops.  This side keeps only what it learned
(``AttachedJob`` of ``client/jupyter/durable.py``: the same status files, the same
``verdict``), so a page reload, or a new bridge, simply polls again.
"""

from __future__ import annotations

import time
from typing import Any

from smartcolab.client.colabtab import cells
from smartcolab.client.colabtab.control import Control, errors_of, stdout_of
from smartcolab.client.jupyter.durable import AttachedJob
from smartcolab.shared.errors import (
    JobNotFound,
    RuntimeMisbehaved,
    SessionBusy,
    Unsupported,
)
from smartcolab.shared.protocol import JobSubmit, JobView, OutputPage

LAUNCH_TIMEOUT_S = 60.0
POLL_WAIT_S = 4.0  # the longest wait inside one control-cell run (the kernel is held)
EPOCH_PREFIX = "tab"
MAX_TEXT = 64_000


def _check_session(session: str) -> None:
    if session != "main":
        raise Unsupported(f"session {session!r}: a Colab tab has one kernel, the notebook's; "
                          "use session 'main'", details={"session": session})


def _refuse_if_busy(hello: dict[str, Any]) -> None:
    """``SessionBusy`` naming the running job when the kernel's agent has one (or queued)."""
    jobs = [j for j in hello.get("jobs") or [] if isinstance(j, dict)]
    running = [j for j in jobs if j.get("state") == "running"]
    queued = [j for j in jobs if j.get("state") == "queued"]
    if not running and not queued:
        return
    first = running[0] if running else None
    started = first.get("started_at") if first else None
    raise SessionBusy("session 'main' of the Colab tab is busy", details={
        "session": "main", "running_job": first.get("job_id") if first else None,
        "running_for_s": time.time() - started if isinstance(started, (int, float)) else None,
        "running_code": str(first.get("code") or "") if first else None,
        "queued": len(queued), "queued_jobs": [j.get("job_id") for j in queued]})


class TabJobs:
    """Submit, follow, cancel and page jobs through the page's cells."""

    def __init__(self, control: Control) -> None:
        self.control = control
        self.known: dict[str, AttachedJob] = {}

    def _record(self, job_id: str, answer: dict[str, Any]) -> AttachedJob:
        status = answer.get("status")
        if not answer.get("found") or not isinstance(status, dict):
            raise JobNotFound(f"job {job_id!r} is not known to the Colab page's kernel (a "
                              "restarted kernel forgets the jobs of the one before)",
                              details={"job_id": job_id})
        rec = self.known.get(job_id)
        code = rec.code if rec is not None else str(status.get("code") or "")
        rec = self.known[job_id] = AttachedJob(job_id, code, status, EPOCH_PREFIX)
        if status.get("state") == "queued":
            rec.job_status = "queued"
        elif status.get("state") == "ended":
            result = answer.get("result")
            rec.judge(result if isinstance(result, dict) else None,
                      status.get("timeout"), cells.GRACE_S)
        return rec

    def _view(self, rec: AttachedJob, answer: dict[str, Any], since: int) -> JobView:
        text = answer.get("text")
        text = text if isinstance(text, str) else ""
        offset = answer.get("offset")
        view = rec.view(text[-MAX_TEXT:])
        skipped = isinstance(offset, int) and offset > since
        return view.model_copy(update={"output_truncated": skipped or len(text) > MAX_TEXT})

    async def submit(self, job: JobSubmit, *, wait: float = 0.0) -> JobView:
        _check_session(job.session)
        if job.job_id in self.known:  # a retried submission: never run twice
            return await self.get_job(job.job_id, wait=wait)
        hello = await self.control.ensure_agent()
        if job.if_idle:
            _refuse_if_busy(hello)
        page = await self.control.page()
        source = cells.job_cell(job.job_id, job.code, job.timeout, job.session)
        cell_id = await page.add_code_cell(source, await self.control.index_before_control(page))
        done = await self.control.run_visible(page, cell_id, LAUNCH_TIMEOUT_S, "job's cell")
        errors = errors_of(done)
        if errors and any("smartcolab_job" in e for e in errors):
            # The kernel lost the agent between the check and the launch: once more.
            await self.control.ensure_agent()
            done = await self.control.run_visible(page, cell_id, LAUNCH_TIMEOUT_S, "job's cell")
            errors = errors_of(done)
        if errors or job.job_id not in stdout_of(done):
            raise RuntimeMisbehaved(f"the job's cell did not start job {job.job_id!r}: "
                                    + ("; ".join(errors) or stdout_of(done)[-300:] or
                                       "no output")[:500], details={"job_id": job.job_id})
        return await self.get_job(job.job_id, wait=wait)

    async def get_job(self, job_id: str, *, wait: float = 0.0,
                      since: int | None = None, until_end: bool = False) -> JobView:
        """The job from ``since``; waits up to ``wait`` for new output or its end (only
        its end with ``until_end``)."""
        since = since or 0
        watch = since
        end = time.monotonic() + max(0.0, wait)
        while True:
            left = max(0.0, end - time.monotonic())
            answer = await self.control.ask({"op": "poll", "job_id": job_id, "since": watch,
                                             "wait": min(left, POLL_WAIT_S),
                                             "limit": MAX_TEXT})
            if answer.get("agent", 1) is None:  # a new kernel process: install, ask again
                await self.control.ensure_agent()
                continue
            rec = self._record(job_id, answer)
            if rec.ended or (rec.total > watch and not until_end) or time.monotonic() >= end:
                if watch != since:  # the text from ``since``, not from the last look
                    answer = await self.control.ask({"op": "poll", "job_id": job_id,
                                                     "since": since, "limit": MAX_TEXT})
                    rec = self._record(job_id, answer)
                return self._view(rec, answer, since)
            if until_end:
                watch = rec.total

    async def cancel_job(self, job_id: str) -> JobView:
        answer = await self.control.ask({"op": "stop", "job_id": job_id, "reason": "cancelled"})
        rec = self._record(job_id, answer)
        if rec.ended:
            return self._view(rec, answer, 0)
        # The agent interrupts within a moment (a thread blocked in native code: a restart
        # after the grace); past this the caller follows the rest.
        return await self.get_job(job_id, wait=cells.GRACE_S + 2.0, until_end=True)

    async def job_output(self, job_id: str, *, offset: int = 0,
                         limit: int = 65536) -> OutputPage:
        answer = await self.control.ask({"op": "page", "job_id": job_id, "offset": offset,
                                         "limit": min(limit, MAX_TEXT)})
        rec = self._record(job_id, answer)
        text = answer.get("text")
        return rec.page(text if isinstance(text, str) else "", offset)

    async def list_jobs(self, limit: int = 50) -> list[JobView]:
        hello = await self.control.ask({"op": "hello"})
        views = []
        for status in (hello.get("jobs") or [])[-limit:]:
            if isinstance(status, dict) and isinstance(status.get("job_id"), str):
                rec = self.known.get(status["job_id"])
                if rec is None or not rec.ended:
                    rec = self._record(status["job_id"], {"found": True, "status": status})
                views.append(rec.view(""))
        return views
