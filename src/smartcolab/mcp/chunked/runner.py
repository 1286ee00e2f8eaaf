"""Drive a chunked operation against one runtime: setup per epoch, one job per batch, checkpoints.

Every remote job gets an id derived from the checkpoint (name, a random run id drawn
when the checkpoint is created, the batch start, the attempt), and the id is written
to the checkpoint *before* the job is submitted.  So when the bridge is killed between
submitting a batch and recording it, the next call finds that id, asks the runtime
for the job and uses its result (waiting if it still runs) instead of running it
again; if the runtime never got it, the same id is submitted, which the runtime runs
at most once.  A batch is recorded only if it starts where the checkpoint stands.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from smartcolab.client.backend import RuntimeBackend
from smartcolab.client.follow import Follower
from smartcolab.mcp.chunked.build import (
    BatchReport,
    ChunkSpec,
    build_batch,
    marker_for,
    parse_report,
)
from smartcolab.mcp.chunked.checkpoints import Checkpoint, CheckpointStore
from smartcolab.shared.errors import Conflict, JobNotFound, SessionNotFound
from smartcolab.shared.protocol import TERMINAL_STATUSES, JobSubmit, JobView

__all__ = ["ChunkedRunner", "Outcome", "ProgressFn"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], Awaitable[None]]
DEFAULT_BATCH_TIMEOUT_S = 300.0
POLL_WAIT_S = 25.0
CANCEL_TIMEOUT_S = 10.0
ERROR_OUTPUT_CHARS = 4000
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Operations running in this process, by (database, name): one driver per checkpoint.
_ACTIVE: set[tuple[str, str]] = set()


@dataclass
class Outcome:
    """How a call ended: ``done``, ``failed`` or ``paused`` (cancelled), with notes."""

    status: Literal["done", "failed", "paused"]
    checkpoint: Checkpoint
    notes: list[str] = field(default_factory=list)
    setup_ran: bool = False


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: str | None) -> bool:
    if not owner or owner == owner_id():
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine: we cannot tell, and a stale claim must not block
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def batch_job_id(cp: Checkpoint, start: int, *, attempt: int | None = None) -> str:
    """The job id of the batch starting at ``start``: the same on every retry of a submit."""
    return f"ck-{cp.name}-{cp.run_id}-b{start}a{cp.attempt if attempt is None else attempt}"


def describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    changed = [k for k in sorted(set(old) | set(new))
               if k != "checkpoint_name" and old.get(k) != new.get(k)]
    return ", ".join(changed) or "the inputs"


class ChunkedRunner:
    """Runs one chunked operation on one runtime session, recording it in ``store``."""

    def __init__(self, store: CheckpointStore, client: RuntimeBackend, *, runtime: str,
                 session: str = "main", batch_timeout: float | None = DEFAULT_BATCH_TIMEOUT_S,
                 poll_wait: float = POLL_WAIT_S) -> None:
        self.store, self.client, self.runtime, self.session = store, client, runtime, session
        self.batch_timeout, self.poll_wait = batch_timeout, poll_wait

    # ------------------------------------------------------------ entry point
    def prepare(self, spec: ChunkSpec, *, restart: bool = False) -> tuple[Checkpoint, list[str]]:
        """Create, reuse or (``restart``) replace the checkpoint; refuse changed inputs."""
        notes: list[str] = []
        cp = self.store.get(spec.checkpoint_name)
        if cp is not None and cp.status == "running" and _owner_alive(cp.owner):
            raise Conflict(f"checkpoint {spec.checkpoint_name!r} is being run by another bridge "
                           f"process ({cp.owner}); call get_checkpoint to follow it.",
                           details={"checkpoint": spec.checkpoint_name, "owner": cp.owner})
        if cp is not None and not restart and cp.fingerprint != spec.fingerprint:
            raise Conflict(
                f"checkpoint {spec.checkpoint_name!r} was made with different inputs "
                f"({describe_difference(cp.inputs, spec.inputs())} changed) and stands at "
                f"{cp.completed}/{cp.total}. Call again with the same inputs to resume, with "
                "restart=true to discard it and start from 0, or use another checkpoint_name.",
                details={"checkpoint": spec.checkpoint_name, "completed": cp.completed,
                         "changed": describe_difference(cp.inputs, spec.inputs())})
        if cp is None or restart:
            if cp is not None:
                notes.append(f"restart=true: the previous checkpoint ({cp.completed}/{cp.total}) "
                             "was discarded")
            cp = self.store.create(
                spec.checkpoint_name, fingerprint=spec.fingerprint, inputs=spec.inputs(),
                run_id=secrets.token_hex(4), total=spec.n_iterations,
                batch_size=spec.batch_size, runtime=self.runtime, session=self.session,
                owner=owner_id(), replace=True)
        elif cp.status != "done":
            if cp.completed:
                notes.append(f"resuming after iteration {cp.completed - 1} "
                             f"({cp.completed}/{cp.total} done earlier)")
            if cp.runtime != self.runtime or cp.session != self.session:
                notes.append(f"the operation moves from {cp.runtime}/{cp.session} to "
                             f"{self.runtime}/{self.session}")
            self.store.update(spec.checkpoint_name, owner=owner_id(), status="running",
                              runtime=self.runtime, session=self.session)
            cp = self.store.require(spec.checkpoint_name)
        if cp.total == 0 and cp.status != "done":
            self.store.update(spec.checkpoint_name, status="done")
            cp = self.store.require(spec.checkpoint_name)
        return cp, notes

    async def run(self, spec: ChunkSpec, *, restart: bool = False,
                  progress: ProgressFn | None = None,
                  prepared: tuple[Checkpoint, list[str]] | None = None) -> Outcome:
        """Run (or resume) the operation until it is done, a batch fails, or it is cancelled.

        ``prepared`` is what an earlier ``prepare`` returned, for callers that check the
        inputs before starting the run in the background.
        """
        key = (str(self.store.path), spec.checkpoint_name)
        if key in _ACTIVE:
            raise Conflict(f"checkpoint {spec.checkpoint_name!r} is already running in this "
                           "bridge; call get_checkpoint to follow it.",
                           details={"checkpoint": spec.checkpoint_name})
        _ACTIVE.add(key)
        try:
            cp, notes = prepared or self.prepare(spec, restart=restart)
            if cp.status == "done":
                return Outcome("done", cp, [*notes, "nothing to do: the operation is complete"
                                            if cp.total else "0 iterations: nothing to run"])
            try:
                return await self._drive(spec, cp, notes, progress)
            except anyio.get_cancelled_exc_class():
                self.store.update(spec.checkpoint_name, status="paused")
                raise
        finally:
            _ACTIVE.discard(key)

    # ------------------------------------------------------------ the loop
    async def _drive(self, spec: ChunkSpec, cp: Checkpoint, notes: list[str],
                     progress: ProgressFn | None) -> Outcome:
        name = spec.checkpoint_name
        setup_ran = False
        if cp.pending_job:
            failed = await self._reconcile(spec, cp, notes)
            if failed is not None:
                return failed
            cp = self.store.require(name)
        epoch = await self._session_epoch()
        while cp.completed < cp.total and cp.status == "running":
            if cp.setup_epoch != epoch:
                failed = await self._setup(spec, cp, epoch, notes)
                if failed is not None:
                    return failed
                setup_ran = True
                cp = self.store.require(name)
            start = cp.completed
            stop = min(start + cp.batch_size, cp.total)
            job_id = batch_job_id(cp, start)
            if cp.pending_job != job_id:  # usually recorded with the previous batch already
                self.store.update(name, pending_job=job_id, pending_start=start,
                                  pending_kind="batch")
            view, wall = await self._run_job(job_id, build_batch(
                spec, start, stop, marker=marker_for(job_id)))
            failed = await self._batch_done(spec, view, start, stop, wall, notes)
            if failed is not None:
                return failed
            epoch = view.epoch
            cp = self.store.require(name)
            if progress is not None:
                await progress(cp.completed, cp.total,
                               f"{cp.completed}/{cp.total} iterations ({name})")
        out = Outcome("done" if cp.status == "done" else "failed", cp, notes, setup_ran)
        if cp.broke_at is not None:
            notes.append(f"the loop body ran 'break' at index {cp.broke_at}: the operation "
                         "ended there")
        return out

    async def _session_epoch(self) -> str:
        views = (await self.client.sessions()).sessions
        for view in views:
            if view.name == self.session:
                return view.epoch
        if self.session == "main":
            raise SessionNotFound("the runtime has no 'main' session")
        return (await self.client.create_session(self.session)).epoch

    async def _setup(self, spec: ChunkSpec, cp: Checkpoint, epoch: str,
                     notes: list[str]) -> Outcome | None:
        if cp.setup_epoch is not None:
            notes.append(f"the session's state was lost since setup (epoch {cp.setup_epoch} -> "
                         f"{epoch}: restart, kernel death or another runtime): setup_code ran "
                         "again before continuing")
        if not spec.setup_code.strip():
            self.store.update(cp.name, setup_epoch=epoch)
            return None
        job_id = f"ck-{cp.name}-{cp.run_id}-s{cp.setup_runs}a{cp.attempt}"
        self.store.update(cp.name, pending_job=job_id, pending_start=None, pending_kind="setup")
        view, _ = await self._run_job(job_id, spec.setup_code)
        return self._setup_done(cp.name, view, notes)

    def _setup_done(self, name: str, view: JobView, notes: list[str]) -> Outcome | None:
        if view.status == "succeeded":
            cp = self.store.require(name)
            self.store.update(name, setup_epoch=view.epoch, setup_runs=cp.setup_runs + 1,
                              pending_job=None, pending_start=None, pending_kind=None)
            return None
        error = self._error(view, None, None, None, "setup_code")
        self.store.record_failure(name, error)
        return Outcome("failed", self.store.require(name),
                       [*notes, f"setup_code {view.status}: nothing of the loop ran this time"])

    async def _batch_done(self, spec: ChunkSpec, view: JobView, start: int, stop: int,
                          wall: float, notes: list[str]) -> Outcome | None:
        name = spec.checkpoint_name
        report, stdout = await self._report(view)
        result = view.result
        if view.status == "succeeded" and report is not None:
            stderr = result.stderr.text if result else ""
            output = stdout + (f"\n[stderr]\n{stderr}" if stderr else "")
            cp = self.store.require(name)
            recorded = self.store.record_batch(
                name, start=start, stop=stop, done=report.done, job_id=view.job_id,
                output=output, wall_s=wall, body_s=report.elapsed_s, broke=report.broke,
                values=[(i, _json(v), r) for i, v, r in report.values],
                next_job=batch_job_id(cp, start + report.done, attempt=0))
            if not recorded:  # pragma: no cover - only if two drivers raced
                notes.append(f"batch {start}-{stop - 1} was recorded already")
            return None
        if view.status == "succeeded":
            view.status = "failed"  # ran, but its report is missing: do not count it
        error = self._error(view, report, start, stop, "loop_code", stdout)
        self.store.record_failure(name, error, paused=view.status == "cancelled")
        where = (f"at index {error['failed_index']}" if error.get("failed_index") is not None
                 else f"in batch {start}-{stop - 1}")
        status: Literal["failed", "paused"] = "paused" if view.status == "cancelled" else "failed"
        return Outcome(status, self.store.require(name), [
            *notes, f"the loop {view.status} {where}; the checkpoint stays at {start}/"
            f"{spec.n_iterations}. Fix the cause (remote state or code), then call again with "
            "the same inputs to retry from there (or restart=true)"])

    async def _reconcile(self, spec: ChunkSpec, cp: Checkpoint,
                         notes: list[str]) -> Outcome | None:
        """A job was submitted but not recorded (the bridge stopped): use its real outcome."""
        job_id = cp.pending_job
        assert job_id is not None
        try:
            view = await self.client.get_job(job_id)
        except JobNotFound:
            notes.append(f"job {job_id} never reached the runtime; it is submitted now")
            self.store.update(cp.name, pending_job=None, pending_start=None, pending_kind=None)
            return None
        found = view.status
        started = time.monotonic()
        view = await self._follow(view)
        if view.status == "cancelled":
            # Cancelled with the call that submitted it: run it again under a new id.
            notes.append(f"found job {job_id} from an interrupted call: it was cancelled "
                         "with that call, so its part runs again now as a new job")
            self.store.update(cp.name, attempt=cp.attempt + 1, pending_job=None,
                              pending_start=None, pending_kind=None)
            return None
        waited = "" if found in TERMINAL_STATUSES else f" (it was {found}; waited for it)"
        notes.append(f"found job {job_id} from an interrupted call{waited}: it "
                     f"{view.status}, and that outcome is used; it was not run again")
        if cp.pending_kind == "setup":
            return self._setup_done(cp.name, view, notes)
        assert cp.pending_start is not None
        stop = min(cp.pending_start + cp.batch_size, cp.total)
        return await self._batch_done(spec, view, cp.pending_start, stop,
                                      time.monotonic() - started, notes)

    # ------------------------------------------------------------ jobs
    async def _run_job(self, job_id: str, code: str) -> tuple[JobView, float]:
        started = time.monotonic()
        view = await self._follower().submit(JobSubmit(
            job_id=job_id, code=code, session=self.session, timeout=self.batch_timeout,
            client="smartcolab-chunked"))
        view = await self._follow(view)
        return view, time.monotonic() - started

    async def _follow(self, view: JobView) -> JobView:
        """Until the job ends; a stopped operation stops its remote job too."""
        return await self._follower().follow(view)

    def _follower(self) -> Follower:
        return Follower(self.client, poll_s=self.poll_wait, cancel_grace_s=CANCEL_TIMEOUT_S)

    async def _report(self, view: JobView) -> tuple[BatchReport | None, str]:
        marker = marker_for(view.job_id)
        stdout = view.result.stdout if view.result else None
        report, cleaned = parse_report(stdout.text if stdout else "", marker)
        if report is None and stdout is not None and stdout.truncated:
            # The marker is the last line; a huge last line can fall out of the tail cap.
            total = view.output_bytes
            offset = max(0, total - 8 * 1024 * 1024)
            text = ""
            while True:
                page = await self.client.job_output(view.job_id, offset=offset, limit=4 << 20)
                text += page.text
                if page.next_offset >= page.total_bytes or page.next_offset <= offset:
                    break
                offset = page.next_offset
            report, _ = parse_report(text, marker)
        return report, cleaned

    def _error(self, view: JobView, report: BatchReport | None, start: int | None,
               stop: int | None, what: str, stdout: str | None = None) -> dict[str, Any]:
        result = view.result
        err = result.error if result else None
        traceback = "\n".join(_ANSI.sub("", line) for line in err.traceback) if err else ""
        if report is not None and report.traceback:
            traceback = report.traceback  # its line numbers are right; see chunked._TEMPLATE
        output = stdout if stdout is not None else (result.stdout.text if result else "")
        if result and result.stderr.text:
            output += f"\n[stderr]\n{result.stderr.text}"
        return {
            "what": what, "job_id": view.job_id, "status": view.status,
            "batch_start": start, "batch_stop": stop,
            "failed_index": report.failed if report else None,
            "iterations_run_in_batch": report.done if report else None,
            "ename": err.ename if err else None, "evalue": err.evalue if err else None,
            "traceback": traceback[-ERROR_OUTPUT_CHARS:],
            "output": output[-ERROR_OUTPUT_CHARS:],
            "message": (result.message if result else None)
            or ("the batch ended without its report" if view.status == "failed" and report is None
                and err is None else None),
            "state_lost": bool(result and result.state_lost),
        }


def _json(value: Any) -> str:
    return json.dumps(value)
