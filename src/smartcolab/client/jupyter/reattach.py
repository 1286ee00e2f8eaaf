"""Jobs an earlier bridge started on a Jupyter kernel, followed from their spill files alone.

``get_job`` polls the job's ``status.json`` (every ``durable.POLL_S`` while someone
waits) and reads the new text from its segments; ``job_output`` pages the segments;
``cancel_job`` writes ``stop.json``, which the kernel's watchdog acts on (interrupt, then
restart).  A job whose status says ``running`` while its kernel is idle was ended by a
restart or a crash that nobody recorded: it is reported ``lost``, with its output.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from smartcolab.client.jupyter import durable
from smartcolab.client.jupyter.durable import AttachedJob, SpillReader
from smartcolab.client.jupyter.jobs import INTERRUPT_GRACE_S
from smartcolab.client.jupyter.kernel import JupyterRest
from smartcolab.shared.errors import JobNotFound
from smartcolab.shared.protocol import JobView, OutputPage

KernelOf = Callable[[str], Awaitable[str]]  # session name -> its kernel id


class EarlierJobs:
    """The jobs of earlier bridges this bridge has been asked about."""

    def __init__(self, rest: JupyterRest, spill: SpillReader, kernel_of: KernelOf) -> None:
        self.rest, self.spill, self.kernel_of = rest, spill, kernel_of
        self.jobs: dict[str, AttachedJob] = {}

    async def attach(self, job_id: str) -> AttachedJob:
        att = self.jobs.get(job_id)
        if att is not None:
            return att
        status = await self.spill.status(job_id)
        if status is None:
            raise JobNotFound(f"job {job_id} is not known to this bridge, and the Jupyter "
                              f"Server has no record of it under {durable.JOBS_DIR}/.",
                              details={"job_id": job_id})
        kernel = await self.kernel_of(str(status.get("session") or "main"))
        att = AttachedJob(job_id=job_id, code=str(status.get("code") or ""), status=status,
                          epoch_prefix=kernel[:8])
        self.jobs[job_id] = att
        return att

    async def refresh(self, att: AttachedJob) -> None:
        if att.ended:
            return
        status = await self.spill.status(att.job_id) or att.status
        att.status = status
        if status.get("state") == "ended":
            att.judge(await self.spill.json(durable.result_path(att.job_id)),
                      status.get("timeout"), INTERRUPT_GRACE_S)
            return
        kernel_id = await self.kernel_of(str(status.get("session") or "main"))
        kernel = await self.rest.call("GET", f"/api/kernels/{kernel_id}", what="kernel")
        if (kernel or {}).get("execution_state") == "idle":
            again = await self.spill.status(att.job_id) or status
            att.status = again
            if again.get("state") == "ended":
                await self.refresh(att)
            else:  # the process that ran it is gone (restarted or died) without a word
                att.lose("the kernel that ran this job is no longer running it (it was "
                         "restarted or died before the job ended); the output it wrote "
                         "until then is kept, and the session's variables are gone")

    async def view(self, att: AttachedJob, *, wait: float, since: int | None) -> JobView:
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            await self.refresh(att)
            if att.ended or att.total > (since or 0) or time.monotonic() >= deadline:
                break
            await durable.sleep_until(deadline)
        start = max(since or 0, att.total - durable.MAX_VIEW_CHARS)
        return att.view(await self.spill.page(att.job_id, start, att.total - start, att.total))

    async def cancel(self, job_id: str, *, wait: float) -> JobView:
        att = await self.attach(job_id)
        await self.refresh(att)
        if not att.ended:
            await self.spill.stop(job_id, "cancelled")
        return await self.view(att, wait=wait, since=att.total + 1)

    async def page(self, job_id: str, offset: int, limit: int) -> OutputPage:
        att = await self.attach(job_id)
        await self.refresh(att)
        return att.page(await self.spill.page(job_id, offset, limit, att.total), offset)
