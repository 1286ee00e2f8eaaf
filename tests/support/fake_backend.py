"""A fake runtime backend: our ``RuntimeBackend`` interface over in-memory jobs, no processes.

Registered through the registry's factories (``factories={"fake": ...}``), it lets the
MCP tools and the follower be tested cheaply.  A job does what its code says:

* ``print:TEXT``   succeeds at once with TEXT on stdout;
* ``fail:MESSAGE`` fails at once with ``ValueError: MESSAGE``;
* ``steps:N``      prints ``step i`` on each poll and succeeds after N polls;
* anything else    runs until it is cancelled (long-polls wait their whole ``wait``).

Sessions other than ``main`` must be created first (``SessionNotFound`` otherwise), like
on our runtime.  Every call that changes something is recorded in ``calls``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from smartcolab.client.backend import Capability, RuntimeBackend
from smartcolab.client.registry import RuntimeSpec
from smartcolab.shared.errors import JobNotFound, SessionExists, SessionNotFound
from smartcolab.shared.protocol import (
    TERMINAL_STATUSES,
    CleanupReport,
    CleanupRequest,
    ErrorInfo,
    Health,
    JobList,
    JobResult,
    JobSubmit,
    JobView,
    OutputPage,
    Probe,
    SessionList,
    SessionView,
    TextBlock,
    VariableList,
)

EPOCH = "fake-epoch-1"


@dataclass
class FakeJob:
    job: JobSubmit
    status: str = "running"
    output: str = ""
    steps_left: int = 0
    error: ErrorInfo | None = None
    created_at: float = field(default_factory=time.time)
    changed: anyio.Event = field(default_factory=anyio.Event)

    def end(self, status: str) -> None:
        self.status = status
        self.changed.set()


class FakeBackend(RuntimeBackend):
    """In-memory jobs and sessions behind the real interface."""

    kind_label = "a fake runtime"

    def __init__(self, name: str = "fake", url: str = "http://fake.invalid", *,
                 capabilities: frozenset[Capability] = frozenset({Capability.JOB_STORE})
                 ) -> None:
        self.name, self.url = name, url
        self.last_epoch: str | None = None
        self.capabilities = capabilities  # type: ignore[misc]  # per instance, for tests
        self.session_names: set[str] = {"main"}
        self.jobs: dict[str, FakeJob] = {}
        self.calls: list[tuple[str, str]] = []
        self.submitted = anyio.Event()  # set when the first job arrives
        self.closed = False

    def factory(self) -> Callable[[RuntimeSpec], FakeBackend]:
        """A registry factory that hands out this backend (tests keep a handle on it)."""
        def make(spec: RuntimeSpec) -> FakeBackend:
            assert spec.url == self.url
            return self
        return make

    # ------------------------------------------------------------ jobs
    def _view(self, rec: FakeJob, since: int | None = None) -> JobView:
        start = min(since or 0, len(rec.output))
        result = None
        if rec.status in TERMINAL_STATUSES:
            result = JobResult(stdout=TextBlock(text=rec.output, total_chars=len(rec.output)),
                               error=rec.error)
        return JobView(job_id=rec.job.job_id, session=rec.job.session, status=rec.status,
                       code=rec.job.code, timeout=rec.job.timeout, client=rec.job.client,
                       created_at=rec.created_at, epoch=EPOCH, output=rec.output[start:],
                       cursor=len(rec.output), output_bytes=len(rec.output), result=result)

    def _job(self, job_id: str) -> FakeJob:
        rec = self.jobs.get(job_id)
        if rec is None:
            raise JobNotFound(f"no job with id {job_id!r} on this runtime")
        return rec

    async def submit(self, job: JobSubmit, *, wait: float = 0.0) -> JobView:
        if job.session not in self.session_names:
            raise SessionNotFound(f"no session named {job.session!r}")
        self.calls.append(("submit", job.job_id))
        rec = self.jobs.get(job.job_id)
        if rec is None:
            rec = self.jobs[job.job_id] = FakeJob(job)
            kind, _, arg = job.code.partition(":")
            if kind == "print":
                rec.output = arg
                rec.end("succeeded")
            elif kind == "fail":
                rec.error = ErrorInfo(ename="ValueError", evalue=arg)
                rec.end("failed")
            elif kind == "steps":
                rec.steps_left = int(arg)
            self.submitted.set()
        return await self.get_job(job.job_id, wait=wait)

    async def get_job(self, job_id: str, *, wait: float = 0.0,
                      since: int | None = None) -> JobView:
        rec = self._job(job_id)
        if rec.status not in TERMINAL_STATUSES:
            if rec.steps_left > 0:
                rec.output += f"step {rec.steps_left}\n"
                rec.steps_left -= 1
                if rec.steps_left == 0:
                    rec.end("succeeded")
            else:
                with anyio.move_on_after(wait):
                    await rec.changed.wait()
        return self._view(rec, since)

    async def cancel_job(self, job_id: str) -> JobView:
        rec = self._job(job_id)
        self.calls.append(("cancel", job_id))
        if rec.status not in TERMINAL_STATUSES:
            rec.end("cancelled")
        return self._view(rec)

    async def list_jobs(self, *, limit: int = 50, session: str | None = None,
                        status: str | None = None) -> JobList:
        views = [self._view(r) for r in reversed(self.jobs.values())
                 if (session is None or r.job.session == session)
                 and (status is None or r.status == status)]
        return JobList(jobs=views[:limit])

    async def job_output(self, job_id: str, *, offset: int = 0,
                         limit: int = 65536) -> OutputPage:
        rec = self._job(job_id)
        text = rec.output[offset:offset + limit]
        end = offset + len(text)
        return OutputPage(job_id=job_id, offset=offset, next_offset=end,
                          total_bytes=len(rec.output), text=text,
                          complete=rec.status in TERMINAL_STATUSES and end >= len(rec.output))

    # ------------------------------------------------------------ sessions
    def _session(self, name: str) -> SessionView:
        return SessionView(name=name, epoch=EPOCH, status="idle", queued=0,
                           started_at=0.0)

    async def sessions(self) -> SessionList:
        return SessionList(sessions=[self._session(n) for n in sorted(self.session_names)])

    async def create_session(self, name: str) -> SessionView:
        self.calls.append(("create_session", name))
        if name in self.session_names:
            raise SessionExists(f"session {name!r} exists")
        self.session_names.add(name)
        return self._session(name)

    async def restart_session(self, name: str) -> SessionView:
        return self._session(name)

    async def delete_session(self, name: str) -> None:
        self.session_names.discard(name)

    # ------------------------------------------------------------ the rest of the core
    async def aclose(self) -> None:
        self.closed = True

    async def health(self) -> Health:
        return Health(status="ok", version="fake 1", epoch=EPOCH)

    async def probe(self) -> Probe:
        return Probe(platform="local", accelerator="none", python="3", cpu_count=1,
                     load_avg=[0.0], ram_total_bytes=1, ram_available_bytes=1, disk_root="/",
                     disk_total_bytes=1, disk_free_bytes=1, gpus=[], packages={},
                     machine_uptime_s=0.0, server_uptime_s=0.0, epoch=EPOCH, version="fake 1")

    async def variables(self, session: str = "main", *,
                        include_private: bool = False) -> VariableList:
        return VariableList(session=session, epoch=EPOCH, variables=[])

    async def cleanup(self, session: str = "main",
                      request: CleanupRequest | None = None) -> CleanupReport:
        return CleanupReport(session=session, epoch=EPOCH, collected_objects=0)
