"""Named kernel sessions, each running one job at a time from a FIFO queue.

A ``KernelSession`` owns one kernel and one worker task; different sessions run in
parallel.  Its epoch ``{boot}.{name}.{generation}`` changes whenever the kernel's
state is lost (restart, death), and every such loss also bumps the runtime-wide
counter behind ``RuntimeState.epoch()``.

Two promises hold whatever fails.  The worker never dies: an error of the server's
own (a full disk, a store that cannot be written) fails the job it hit, with the
reason, and the next job runs.  Kernel restarts are serialized by the session's
lock, and before a new kernel starts the old one's process is killed and reaped by
pid (``reap.py``): a failed restart never leaves a kernel behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, Literal

from smartcolab.runtime.config import RuntimeConfig
from smartcolab.runtime.engine import persist
from smartcolab.runtime.engine.jobs import Job, finish, run_job
from smartcolab.runtime.engine.kernel import Kernel, RunControl
from smartcolab.runtime.engine.output import HeadTail
from smartcolab.runtime.engine.reap import identify, kill_and_reap
from smartcolab.runtime.engine.store import JobRecord
from smartcolab.shared.errors import KernelUnavailable, SessionBusy
from smartcolab.shared.protocol import JobResult, SessionView

log = logging.getLogger("smartcolab.runtime")
INTROSPECT_TIMEOUT_S = 60.0
SHUTDOWN_INTERRUPT_S = 1.0
SHUTDOWN_WAIT_S = 10.0
# Threads of this many recent jobs keep their output with the job that started them.
REMEMBERED_REQUESTS = 64

Status = Literal["starting", "idle", "busy", "restarting", "dead"]


class KernelSession:
    def __init__(self, name: str, config: RuntimeConfig, *, boot_id: str, with_gpu: bool,
                 record: Callable[[Job], None], on_state_lost: Callable[[], None]) -> None:
        self.name = name
        self.config = config
        self.boot_id = boot_id
        self.with_gpu = with_gpu
        self._record = record
        self._on_state_lost = on_state_lost
        self.kernel = self._new_kernel()
        self.generation = 0
        self.started_at = time.time()
        self.execution_count = 0
        self.status: Status = "starting"
        self.queue: deque[Job] = deque()
        self.running: Job | None = None
        self.lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        # The last jobs' execute requests: where a thread's later output belongs.
        self._by_request: OrderedDict[str, Job] = OrderedDict()

    def _new_kernel(self) -> Kernel:
        kernel = Kernel(kernel_name=self.config.kernel_name, cwd=self.config.working_root,
                        secret=self.config.secret)
        kernel.on_other = self._late
        return kernel

    def _late(self, parent: str, msg_type: str, content: dict[str, Any]) -> None:
        """Output of a thread that an ended job started: kept with that job."""
        job = self._by_request.get(parent)
        if job is not None and job.on_late(msg_type, content):
            self._record(job)

    @property
    def epoch(self) -> str:
        return f"{self.boot_id}.{self.name}.{self.generation}"

    def view(self) -> SessionView:
        return SessionView(name=self.name, epoch=self.epoch, status=self.status,
                           queued=len(self.queue),
                           running_job=self.running.rec.job_id if self.running else None,
                           kernel_pid=self.kernel.pid, started_at=self.started_at,
                           execution_count=self.execution_count)

    async def start(self) -> None:
        await self._start_kernel()
        self.status = "idle"
        self._ensure_worker()

    def _ensure_worker(self) -> None:
        """(Re)start the worker task; a session can always be recovered by a restart."""
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name=f"session-{self.name}")

    async def _start_kernel(self) -> None:
        """Start ``self.kernel``; if that fails half-way, its process is killed and reaped."""
        try:
            await self.kernel.start()
        except BaseException:
            ident = identify(self.kernel.pid)
            await self.kernel.shutdown()
            await kill_and_reap(ident)
            raise

    async def _replace_kernel(self) -> None:
        """Kill and reap the old kernel by pid, then start a new one (caller holds the lock)."""
        ident = identify(self.kernel.pid)
        await self.kernel.shutdown()
        if not await kill_and_reap(ident):
            log.error("the old kernel of session %s (pid %s) would not die", self.name,
                      ident.pid if ident else None)
        self.kernel = self._new_kernel()
        await self._start_kernel()

    def enqueue(self, job: Job) -> None:
        self.queue.append(job)
        self._wake.set()

    def _lost_state(self) -> None:
        self.generation += 1
        self.started_at = time.time()
        self.execution_count = 0
        self._on_state_lost()

    async def _recover(self) -> None:
        """After a kernel failure: restart it, or start a new one; ``dead`` if neither works."""
        self.status = "restarting"
        try:
            await self.kernel.restart()
        except Exception:
            log.exception("restart of session %s failed; starting a new kernel", self.name)
            try:
                await self._replace_kernel()
            except Exception:
                log.exception("session %s has no kernel", self.name)
                self.status = "dead"
                return
        self.status = "idle"

    async def _work(self) -> None:
        while True:
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            job = self.queue.popleft()
            try:
                await self._run_one(job)
            except Exception as exc:  # the server's own failure: this job fails, says why
                log.exception("session %s: job %s failed in the server", self.name,
                              job.rec.job_id)
                self.running = None
                if self.status == "busy":
                    self.status = "idle"
                if not job.terminal:
                    finish(job, "failed", JobResult(message=server_failure(exc)))
                self._record(job)
                continue
            if self.config.autosave_after_s is not None:
                try:
                    await persist.maybe_autosave(self, job)
                except Exception:
                    log.exception("autosave after job %s failed", job.rec.job_id)

    async def _run_one(self, job: Job) -> None:
        async with self.lock:
            if self.status == "dead":
                await self._recover()
            if self.status == "dead":
                finish(job, "failed", JobResult(
                    message=f"session {self.name!r} has no working kernel; restart it "
                            "(POST /sessions/{name}/restart) or delete it", state_lost=True))
                self._record(job)
                return
            self.running, self.status = job, "busy"
            try:
                outcome = await run_job(job, self.kernel, self.config, with_gpu=self.with_gpu,
                                        epoch=self.epoch, on_start=self._record)
            finally:
                self.running = None
                self._remember(job)
            if outcome is None:
                await self._recover()
                self._lost_state()
            elif outcome.kind in ("restarted", "died"):
                self._lost_state()
            elif outcome.execution_count is not None:
                self.execution_count = outcome.execution_count
            if self.status == "busy":
                self.status = "idle"
            self._record(job)

    def _remember(self, job: Job) -> None:
        if job.control.msg_id is not None:
            self._by_request[job.control.msg_id] = job
            while len(self._by_request) > REMEMBERED_REQUESTS:
                self._by_request.popitem(last=False)

    def cancel(self, job: Job, message: str = "cancelled before it started") -> None:
        """Remove a queued job, or ask the running one to stop (interrupt, restart after grace)."""
        if job in self.queue:
            self.queue.remove(job)
            finish(job, "cancelled", JobResult(message=message))
            self._record(job)
        elif self.running is job:
            job.control.stop = "cancelled"

    def interrupt(self) -> None:
        if self.running is not None:
            self.running.control.stop = "cancelled"

    async def restart(self) -> None:
        """Restart the kernel (stopping a running job); queued jobs run afterwards."""
        generation = self.generation
        if self.running is not None:
            self.running.control.stop = "restart"
        async with self.lock:
            if self.generation == generation:
                self.status = "restarting"
                try:
                    await self.kernel.restart()
                    self.status = "idle"
                except Exception:
                    log.exception("restart of session %s failed; starting a new kernel",
                                  self.name)
                    try:
                        await self._replace_kernel()
                        self.status = "idle"
                    except Exception:
                        log.exception("session %s has no kernel", self.name)
                        self.status = "dead"
                self._lost_state()
        self._ensure_worker()

    async def introspect(self, code: str, timeout: float = INTROSPECT_TIMEOUT_S) -> str:
        """Run a helper snippet (no history, no names left behind); return its stdout."""
        busy = self.running
        if busy is not None or self.lock.locked():
            which = f"job {busy.rec.job_id!r}" if busy else "another request"
            raise SessionBusy(
                f"session {self.name!r} is busy running {which}; retry when it finishes "
                "(long-poll the job with GET /jobs/{id}?wait=55)",
                details={"running_job": busy.rec.job_id if busy else None}, retry_after=2.0)
        out = HeadTail(64 * 1024 * 1024)
        errors: list[str] = []

        def collect(msg_type: str, content: dict[str, object]) -> None:
            if msg_type == "stream" and content.get("name") == "stdout":
                out.append(str(content.get("text", "")))
            elif msg_type == "error":
                errors.append(f"{content.get('ename')}: {content.get('evalue')}")

        async with self.lock:
            control = RunControl(deadline=time.monotonic() + timeout)
            outcome = await self.kernel.run(code, collect, control,
                                            grace_s=self.config.kill_grace_s, store_history=False)
        if outcome.kind in ("restarted", "died"):
            self._lost_state()
        if outcome.kind != "completed" or errors:
            raise KernelUnavailable(f"inspecting session {self.name!r} failed: "
                                    f"{'; '.join(errors) or outcome.kind}")
        return out.text()

    async def stop(self) -> None:
        """Cancel queued jobs, stop the running one, shut the kernel down."""
        for job in list(self.queue):
            self.cancel(job, "the runtime server shut down before this job started")
        running = self.running
        if running is not None:
            running.control.stop = "cancelled"
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(running.done.wait(), SHUTDOWN_INTERRUPT_S)
            if not running.terminal:
                running.control.stop = "shutdown"
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(running.done.wait(), SHUTDOWN_WAIT_S)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
        if running is not None and not running.terminal:
            finish(running, "cancelled", JobResult(
                message="the runtime server shut down while this job ran", state_lost=True))
            self._record(running)
        await self.kernel.shutdown()
        self.status = "dead"


def server_failure(exc: BaseException) -> str:
    """A job's message when the server itself failed it (never the kernel's doing)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return ("the runtime's disk is full: the server could not record this job "
                f"({exc}). Free space on the runtime, then resubmit; the kernel and its "
                "variables were not touched")
    return (f"the server failed while handling this job ({type(exc).__name__}: {exc}); "
            "the kernel and its variables were not touched; resubmit it")


def new_record(job_id: str, session: KernelSession, code: str, timeout: float | None,
               client: str | None) -> JobRecord:
    return JobRecord(job_id=job_id, session=session.name, status="queued", code=code,
                     timeout=timeout, client=client, created_at=time.time(),
                     epoch=session.epoch)


def busy(session: KernelSession) -> SessionBusy:
    """The refusal of a job submitted with ``if_idle`` to a session that is not idle."""
    running = session.running
    started = running.rec.started_at if running else None
    details: dict[str, object] = {
        "session": session.name, "running_job": running.rec.job_id if running else None,
        "running_for_s": round(time.time() - started, 1) if started else None,
        "running_code": running.rec.code[:200] if running else None,
        "queued": len(session.queue), "queued_jobs": [j.rec.job_id for j in session.queue][:5]}
    which = f"job {running.rec.job_id!r}" if running else f"{len(session.queue)} queued job(s)"
    return SessionBusy(f"session {session.name!r} is busy with {which}; nothing was queued",
                       details=details)
