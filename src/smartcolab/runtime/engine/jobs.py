"""Jobs: a live job's record, output and stop control; running one on a kernel; views.

A job's life: ``queued`` (in its session's FIFO) -> ``running`` -> one terminal
status.  ``run_job`` turns a kernel ``RunOutcome`` into that status and a result;
``make_view`` builds what a client sees, reading new output from the spill file
after the client's cursor.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smartcolab.runtime.config import RuntimeConfig
from smartcolab.runtime.engine.kernel import Kernel, RunControl, RunOutcome, describe_exit
from smartcolab.runtime.engine.output import JobOutput, read_capped
from smartcolab.runtime.engine.store import JobRecord
from smartcolab.runtime.host import resources
from smartcolab.shared.protocol import TERMINAL_STATUSES, JobResult, JobView, Resources
from smartcolab.shared.stop import Ending, verdict

log = logging.getLogger("smartcolab.runtime")
# Output that follows other output within this long is a burst: a long-poll lingers this
# long for more of it, so chatty jobs cost fewer requests.  The first output after a quiet
# spell is answered at once (a printed line reaches the client in one-way delay).
COALESCE_S = 0.2
# Output a thread prints after its job ended is kept up to this much: past it, a thread
# printing without end would cost a file write and a store write per message, and slow
# the jobs that run meanwhile.
LATE_OUTPUT_CAP = 1024 * 1024
# A RAM reading this recent stands for "before the job".
FRESH_RAM_S = 0.5


def job_dir(config: RuntimeConfig, job_id: str) -> Path:
    return config.state_dir / "jobs" / job_id


class Job:
    """A job of this server process, queued or running (or just finished)."""

    def __init__(self, rec: JobRecord, config: RuntimeConfig, client_addr: str | None) -> None:
        self.rec = rec
        self.client_addr = client_addr
        self.out = JobOutput(job_dir(config, rec.job_id), text_limit=config.response_text_bytes,
                             max_images=config.max_images_per_result,
                             max_image_bytes=config.max_image_bytes)
        self.control = RunControl()
        # The server's own write failure (a full disk): the job is stopped and fails with it.
        self.io_error: OSError | None = None
        self.done = asyncio.Event()
        # One future per waiting long-poll, resolved by ``notify`` (or by its own timer).
        self._waiters: set[asyncio.Future[bool]] = set()
        self._last_output = float("-inf")
        self._burst = False  # the latest output came within COALESCE_S of the one before
        self.late_bytes = 0  # output kept after the job ended (LATE_OUTPUT_CAP)
        self.created = time.monotonic()
        # RAM as read at submission, set by the session manager: the "before" figure of
        # a job that starts at once (one read of /proc/meminfo less per job).
        self.submit_ram: resources.RamSnapshot | None = None

    @property
    def terminal(self) -> bool:
        return self.rec.status in TERMINAL_STATUSES

    @property
    def output_bytes(self) -> int:
        return self.out.spill.size

    def notify(self) -> None:
        """Wake every long-poll waiting on this job."""
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            _wake(waiter)

    def on_message(self, msg_type: str, content: dict[str, Any]) -> None:
        now = time.monotonic()
        self._burst, self._last_output = now - self._last_output < COALESCE_S, now
        try:
            self.out.handle(msg_type, content)
        except OSError as exc:
            # Not the kernel's fault: stop this job with an interrupt (variables kept),
            # never a kernel restart, and say why when it ends.
            if self.io_error is None:
                self.io_error = exc
                log.error("job %s: writing its output failed (%s); stopping it",
                          self.rec.job_id, exc)
                if self.control.stop is None:
                    self.control.stop = "cancelled"
        self.notify()

    def on_late(self, msg_type: str, content: dict[str, Any]) -> bool:
        """Output that came after the job ended, from a thread it started: appended to its
        output and to its result's ordered record; True when the record changed."""
        if not self.terminal or msg_type not in ("stream", "display_data", "execute_result",
                                                 "error"):
            return False
        if self.late_bytes >= LATE_OUTPUT_CAP:
            return False
        self.late_bytes += len(str(content.get("text", ""))) or 1
        out = self.out
        out.after_end = True
        try:
            if msg_type == "error":  # a thread's error is not the job's: keep only its text
                tb = [str(f) for f in content.get("traceback", [])]
                msg_type, content = "stream", {"name": "stderr", "text": "\n".join(tb) + "\n"}
            out.handle(msg_type, content)
        except OSError as exc:
            log.warning("job %s: could not keep output after its end: %s", self.rec.job_id, exc)
        finally:
            out.spill.close()  # reopened by the next late write: no descriptor per old job
        self.rec.output_bytes = self.output_bytes
        if self.rec.result is not None:
            self.rec.result.flow = out.flow.items()
        self.notify()
        return True

    async def wait(self, *, since: int | None, wait_s: float) -> None:
        """Until terminal, or (when ``since`` is given) output past ``since``, or ``wait_s``."""
        deadline = time.monotonic() + wait_s
        lingering = False
        while not self.terminal:
            if since is not None and self.output_bytes > since and not lingering:
                lingering = True
                deadline = min(deadline, time.monotonic() + (COALESCE_S if self._burst else 0.0))
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if not await self._changed(left):
                return

    async def _changed(self, timeout: float) -> bool:
        """Until the next ``notify`` (true) or ``timeout`` seconds (false).

        The waiting task is woken by ``notify`` itself: ``asyncio.wait_for`` ran an
        extra task per wait and woke the waiter one loop turn later, after the job's
        log lines instead of before them.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.add(waiter)
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiters.discard(waiter)
        return waiter.result()


def _wake(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(True)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


@dataclass
class Snapshot:
    ram: resources.RamSnapshot
    gpu_mb: list[int] | None


async def snapshot(with_gpu: bool, ram: resources.RamSnapshot | None = None) -> Snapshot:
    gpu = await asyncio.to_thread(resources.gpu_memory_used_mb) if with_gpu else None
    return Snapshot(ram or resources.ram(), gpu)


def _resources(before: Snapshot, after: Snapshot, warn_pct: float) -> Resources:
    warnings = []
    if after.ram.percent >= warn_pct:
        warnings.append(f"RAM is {after.ram.percent:.0f}% used after this job (warning above "
                        f"{warn_pct:.0f}%): free memory (del big objects, cleanup) before "
                        "the kernel is killed for lack of it")
    return Resources(ram_total_bytes=after.ram.total, ram_available_before=before.ram.available,
                     ram_available_after=after.ram.available,
                     ram_percent_after=after.ram.percent,
                     gpu_memory_used_before=before.gpu_mb, gpu_memory_used_after=after.gpu_mb,
                     warnings=warnings)


def outcome_status(job: Job, outcome: RunOutcome, grace_s: float) -> tuple[str, JobResult]:
    """The terminal status and the result of a job from how its run ended (``shared.stop``)."""
    out = job.out
    result = JobResult(stdout=out.stdout.block(), stderr=out.stderr.block(), outputs=out.outputs,
                       error=out.error, execution_count=outcome.execution_count,
                       flow=out.flow.items())
    failed = outcome.reply_status not in (None, "ok") or out.error is not None
    cause = describe_exit(outcome.exit_code) if outcome.kind == "died" else None
    judged = verdict(Ending(outcome.kind, outcome.reason, failed=failed, cause=cause),
                     timeout=job.rec.timeout, grace_s=grace_s)
    notes = list(out.notes)
    if judged.note:
        notes.insert(0, judged.note)
    result.state_lost = judged.state_lost
    if judged.error is not None:
        result.error = judged.error
    status = judged.status
    if job.io_error is not None:
        status = "failed"
        notes = [io_failure(job.io_error), *(n for n in notes if not n.startswith("interrupted"))]
    result.message = "; ".join(notes) if notes else None
    return status, result


def io_failure(exc: OSError) -> str:
    """Why a job failed when the server could not write its output."""
    if exc.errno == errno.ENOSPC:
        return ("the runtime's disk is full: the server could not write this job's output "
                f"({exc}), so it stopped the job. Output up to that point is kept; free space "
                "on the runtime (delete large files, or old job outputs) and run it again. "
                "The kernel was interrupted, not restarted")
    return (f"the server could not write this job's output ({exc}), so it stopped the job; "
            "the kernel was interrupted, not restarted")


async def run_job(job: Job, kernel: Kernel, config: RuntimeConfig, *, with_gpu: bool,
                  epoch: str, on_start: Callable[[Job], None]) -> RunOutcome | None:
    """Run ``job`` on ``kernel``; mark it terminal (``None``: the kernel itself failed)."""
    rec = job.rec

    def started() -> None:
        on_start(job)
        try:
            job.out.spill.prepare()
        except OSError as exc:  # the first write meets it again, and stops the job
            log.debug("job %s: its output file could not be created yet: %s", rec.job_id, exc)

    # A job that starts right after its submission was read then (the free-RAM floor).
    fresh = job.submit_ram if time.monotonic() - job.created < FRESH_RAM_S else None
    before = await snapshot(with_gpu, fresh)
    rec.status, rec.started_at, rec.epoch = "running", time.time(), epoch
    if rec.timeout is not None:
        job.control.deadline = time.monotonic() + rec.timeout
    outcome: RunOutcome | None
    try:
        # The "running" record is written, and the output file created, while the
        # kernel takes the request in.
        outcome = await kernel.run(rec.code, job.on_message, job.control,
                                   grace_s=config.kill_grace_s, on_sent=started)
    except Exception as exc:
        log.exception("kernel failure while running job %s", rec.job_id)
        outcome = None
        job.out.notes.insert(0, f"the kernel failed while running this job ({exc}); "
                                "the session is being restarted and its state is lost")
    if outcome is None:
        status, result = "failed", JobResult(stdout=job.out.stdout.block(),
                                             stderr=job.out.stderr.block(), state_lost=True,
                                             message="; ".join(job.out.notes),
                                             flow=job.out.flow.items())
    else:
        status, result = outcome_status(job, outcome, config.kill_grace_s)
    after = await snapshot(with_gpu)
    result.resources = _resources(before, after, config.ram_warn_pct)
    finish(job, status, result)
    return outcome


def finish(job: Job, status: str, result: JobResult) -> None:
    """Mark a job terminal in memory; the caller records it in the store (and logs it)."""
    try:
        job.out.finish()
    except OSError as exc:  # closing the spill file flushes: a full disk shows up here too
        log.error("job %s: closing its output failed: %s", job.rec.job_id, exc)
    rec = job.rec
    rec.status, rec.result, rec.finished_at = status, result, time.time()
    rec.output_bytes = job.output_bytes


def log_finished(job: Job) -> None:
    """The structured log line of a job that reached its final status."""
    rec = job.rec
    duration = rec.finished_at - rec.started_at if rec.finished_at and rec.started_at else 0.0
    log.info("job %s %s", rec.job_id, rec.status, extra={
        "job_id": rec.job_id, "session": rec.session, "client": job.client_addr,
        "client_label": rec.client, "status": rec.status, "duration_s": round(duration, 4)})


def make_view(rec: JobRecord, *, session_epoch: str | None, output_bytes: int, spill: Path,
              since: int | None, text_limit: int,
              memo: bytes | bytearray | None = None) -> JobView:
    """What a client sees: status, new output after ``since`` (capped), the result when done.

    ``memo``: the spill file's content when a live job holds it in memory.
    """
    start = min(max(0, since or 0), output_bytes)
    text, truncated = read_capped(spill, start, output_bytes, text_limit, memo)
    duration = None
    if rec.started_at is not None and rec.finished_at is not None:
        duration = round(rec.finished_at - rec.started_at, 6)
    return JobView(
        job_id=rec.job_id, session=rec.session, status=rec.status,  # type: ignore[arg-type]
        code=rec.code, timeout=rec.timeout, client=rec.client, created_at=rec.created_at,
        started_at=rec.started_at, finished_at=rec.finished_at, duration_s=duration,
        epoch=session_epoch or rec.epoch, output=text, cursor=output_bytes,
        output_bytes=output_bytes, output_truncated=truncated,
        result=rec.result if rec.status in TERMINAL_STATUSES else None,
    )
