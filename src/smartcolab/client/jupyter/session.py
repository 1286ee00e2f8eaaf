"""The named sessions of a Jupyter Server backend: kernels, WebSockets and epochs.

``JupyterSessions`` is the part of ``JupyterBackend`` (``server.py``) that opens a
Jupyter session per name, reads the epoch token, runs inspection cells between jobs,
installs the job agent and restarts or replaces a kernel; the job loop
(``jobloop.py``) and persistence (``persistence.py``) build on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from typing import Any, Literal

from smartcolab.client.jupyter import durable
from smartcolab.client.jupyter import jobs as jobs_mod
from smartcolab.client.jupyter.durable import SpillReader
from smartcolab.client.jupyter.jobs import JobRecord, run_cell, wake
from smartcolab.client.jupyter.kernel import JupyterRest, KernelChannel
from smartcolab.client.retry import RetryPolicy
from smartcolab.shared import kernel_code as kc
from smartcolab.shared.errors import (
    KernelUnavailable,
    NotFound,
    SessionBusy,
    SmartColabError,
)
from smartcolab.shared.protocol import SessionList, SessionView

log = logging.getLogger(__name__)

SESSION_PREFIX = "smartcolab-"
RESTART_VERIFY_S = 10.0  # a forced restart must show a new epoch token within this
BUSY_WAIT_S = 10.0
INTERNAL_TIMEOUT_S = 60.0
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


class JupyterSessions(ABC):
    """Sessions by name, their epochs and inspection cells (``JupyterBackend``'s base)."""

    rest: JupyterRest
    kernel_name: str
    last_epoch: str | None
    spill: SpillReader
    _sessions: dict[str, KernelSession]
    _open_lock: asyncio.Lock

    @abstractmethod
    async def _work(self, sess: KernelSession) -> None:
        """Run the session's jobs (``jobloop.JupyterJobs``); started with the session."""

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

    async def _kernel_of(self, session: str) -> str:
        return (await self._session(session)).kernel_id


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

