"""One Jupyter kernel: start, execute with a deadline, interrupt, restart, detect death.

Code never runs in the server process.  ``Kernel.run`` sends one ``execute_request``
and follows its iopub messages until the kernel goes idle, while watching three
things: the deadline (interrupt, then restart after a grace period: C-level loops
ignore SIGINT), a stop request from outside (cancel, session restart, shutdown), and
the kernel process itself (``os._exit``, a segfault or the OOM killer end it).

Output whose parent is not the running request (a thread started by an earlier cell;
kernelside/prepare.py makes threads keep their cell's parent header) goes to
``on_other``, during a run and between runs (``listen_idle``), instead of being dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Any

import zmq
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager

from smartcolab.runtime.engine.wire import next_message
from smartcolab.shared import env as env_names
from smartcolab.shared.errors import KernelUnavailable
from smartcolab.shared.kernel_code import call, parse
from smartcolab.shared.stop import EndingKind, StopPolicy, StopReason

log = logging.getLogger(__name__)

# How often a quiet run checks its deadline, stop requests and the kernel process.
POLL_S = 0.05
READY_TIMEOUT_S = 60.0
REPLY_TIMEOUT_S = 2.0
IDLE_POLL_S = 60.0
IDLE_START_S = 0.02
SECRET_ENV_NAMES = (env_names.SECRET,)
# History of a server-driven kernel is of no use and its SQLite file is shared by kernels.
KERNEL_ARGS = ["--HistoryManager.hist_file=:memory:"]

# Run in every new kernel, leaving no names behind: kernelside/prepare.py bounds the size
# of stream messages (a flush every STREAM_FLUSH_BYTES characters) and sets XPUB_NODROP
# on the kernel's IOPub socket, so a print loop slows to the server's pace instead of
# dropping output.  The server reads iopub through a short queue (IOPUB_HWM, set before
# connecting: lowering a high-water mark on a live zmq pipe can stall it); a kernel whose
# socket stays lossy (an older ipykernel) gets the default queue.  Without this the
# server's SUB socket queued up to 1,000 messages: +250-375 MB of server RSS while a job
# printed 500 MB on a loaded machine.
STREAM_FLUSH_BYTES = 256 * 1024
IOPUB_HWM = 8
PREPARE_CODE = call("prepare", "prepare", {"flush_bytes": STREAM_FLUSH_BYTES})


async def _next_msg(kc: AsyncKernelClient, timeout: float) -> dict[str, Any]:
    """The next iopub message, or ``Empty`` after ``timeout`` seconds (``wire.py``)."""
    sock = kc.iopub_channel.socket
    assert sock is not None
    return await next_message(sock, kc.session, timeout)


OnMessage = Callable[[str, dict[str, Any]], None]
# (parent msg_id, msg_type, content) of output that is not the running request's.
OnOther = Callable[[str, str, dict[str, Any]], None]


@dataclass
class RunControl:
    """Shared between a run and the outside world: the deadline and stop requests."""

    deadline: float | None = None  # time.monotonic() value
    stop: StopReason | None = None
    msg_id: str | None = None  # the execute request's, once sent
    # "restart" and "shutdown" skip the interrupt: the kernel is restarted at once.


@dataclass
class RunOutcome:
    """How a run ended.

    ``completed``: the kernel went idle on its own (``reply_status`` ok/error/aborted);
    ``interrupted``: stopped by SIGINT for ``reason``, state kept;
    ``restarted``: stopped by a kernel restart for ``reason``, state lost;
    ``died``: the kernel process ended (``exit_code``), restarted, state lost.
    """

    kind: EndingKind
    reason: StopReason | None = None
    reply_status: str | None = None
    execution_count: int | None = None
    exit_code: int | None = None
    stop_latency_s: float | None = None


def kernel_env(secret: str) -> dict[str, str]:
    """The server's environment minus anything that would reveal the runtime's secret."""
    env = {k: v for k, v in os.environ.items()
           if k not in SECRET_ENV_NAMES and not (secret and v == secret)}
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    return env


def describe_exit(code: int | None) -> str:
    """A likely cause for a kernel's exit status, for the job's error message."""
    if code is None:
        return "the kernel process ended (exit status unknown)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code == signal.SIGKILL:
            return (f"the kernel was killed by {name}: most likely out of memory (the OS "
                    "OOM killer); use less memory or smaller batches")
        if -code == signal.SIGSEGV:
            return f"the kernel crashed with {name} (segmentation fault in native code)"
        if -code == signal.SIGABRT:
            return f"the kernel aborted ({name}), usually a failed assertion in native code"
        return f"the kernel was ended by {name}"
    return f"the kernel process exited with status {code} (os._exit, sys.exit in a thread, ...)"


class Kernel:
    """A kernel process and a client connected to it over ipc sockets."""

    def __init__(self, *, kernel_name: str, cwd: Path, secret: str) -> None:
        self.kernel_name = kernel_name
        self.cwd = cwd
        self.secret = secret
        # ipc socket paths must fit in sun_path (~107 bytes): a short dir under /tmp.
        self._ipc_dir = Path(tempfile.mkdtemp(prefix="sc-", dir="/tmp" if os.path.isdir("/tmp") else None))
        self.km: AsyncKernelManager | None = None
        self.kc: AsyncKernelClient | None = None
        self.flow_control = False
        self.on_other: OnOther | None = None
        self._idle: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        prov = self.km.provisioner if self.km else None
        proc = getattr(prov, "process", None)
        pid = getattr(proc, "pid", None)
        return pid if isinstance(pid, int) else None

    async def start(self) -> None:
        km = AsyncKernelManager(kernel_name=self.kernel_name, transport="ipc",
                                ip=str(self._ipc_dir / "k"),
                                connection_file=str(self._ipc_dir / "kernel.json"))
        self.km = km
        await km.start_kernel(env=kernel_env(self.secret), cwd=str(self.cwd),
                              extra_arguments=list(KERNEL_ARGS))
        await self._connect()

    async def _client(self, *, short_queue: bool) -> AsyncKernelClient:
        assert self.km is not None
        kc = self.km.client()
        if short_queue:
            # Options of a context apply to the sockets it creates next: only iopub here.
            kc.context.setsockopt(zmq.RCVHWM, IOPUB_HWM)
            try:
                kc.iopub_channel  # noqa: B018 - creates and connects the iopub socket
            finally:
                kc.context.sockopts.pop(zmq.RCVHWM, None)
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=READY_TIMEOUT_S)
        except RuntimeError as exc:
            kc.stop_channels()
            raise KernelUnavailable(f"the kernel did not become ready: {exc}") from exc
        return kc

    async def _connect(self) -> None:
        await self.stop_idle()
        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None
        self.kc = await self._client(short_queue=True)
        said: list[str] = []

        def listen(msg_type: str, content: dict[str, Any]) -> None:
            if msg_type == "stream":
                said.append(str(content.get("text", "")))

        outcome = await self.run(PREPARE_CODE, listen, RunControl(deadline=None),
                                 grace_s=5, store_history=False)
        if outcome.kind != "completed" or outcome.reply_status != "ok":
            raise KernelUnavailable(f"the kernel failed its set-up ({outcome.kind})")
        self.flow_control = parse("".join(said)) is True
        if not self.flow_control:
            # A kernel that drops output when its queue is full needs our long queue too.
            await self.stop_idle()
            self.kc.stop_channels()
            self.kc = await self._client(short_queue=False)

    async def restart(self) -> None:
        """Kill and start the kernel again; a fresh client leaves stale messages behind."""
        assert self.km is not None
        await self.stop_idle()
        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None
        await self.km.restart_kernel(now=True)
        await self._connect()

    async def interrupt(self) -> None:
        if self.km is not None:
            with contextlib.suppress(Exception):
                await self.km.interrupt_kernel()

    async def alive(self) -> bool:
        return self.km is not None and bool(await self.km.is_alive())

    async def exit_code(self) -> int | None:
        if self.km is None or self.km.provisioner is None:
            return None
        code = await self.km.provisioner.poll()
        return code if isinstance(code, int) else None

    async def shutdown(self) -> None:
        await self.stop_idle()
        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None
        if self.km is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.km.shutdown_kernel(now=True), 10)
            self.km = None
        shutil.rmtree(self._ipc_dir, ignore_errors=True)

    async def run(self, code: str, on_message: OnMessage, control: RunControl, *,
                  grace_s: float, store_history: bool = True,
                  on_sent: Callable[[], None] | None = None) -> RunOutcome:
        """Execute ``code``, passing each output message to ``on_message``.

        ``on_sent`` is called once the request is on its way: bookkeeping done there
        overlaps with the kernel receiving it instead of delaying it.  Between runs,
        other requests' output still reaches ``on_other``.
        """
        try:
            return await self._run(code, on_message, control, grace_s=grace_s,
                                   store_history=store_history, on_sent=on_sent)
        finally:
            self.listen_idle()

    async def _run(self, code: str, on_message: OnMessage, control: RunControl, *,
                   grace_s: float, store_history: bool,
                   on_sent: Callable[[], None] | None) -> RunOutcome:
        kc = self.kc
        if kc is None:
            raise KernelUnavailable("the kernel is not running; restart the session")
        msg_id = kc.execute(code, store_history=store_history, allow_stdin=False,
                            stop_on_error=False)
        control.msg_id = msg_id
        if on_sent is not None:
            on_sent()
        # The idle reader is stopped after the request went out, not before: its end
        # takes a few loop turns, now spent while the kernel takes the request in.  It
        # is cancelled before this task first yields, so it never runs again and never
        # takes a message of this request (it is only ever suspended at a poll or a sleep).
        await self.stop_idle()
        policy = StopPolicy(grace_s=grace_s, deadline=control.deadline)
        execution_count: int | None = None
        while True:
            action = policy.next_action(control.stop)
            if action == "interrupt":
                await self.interrupt()
            elif action != "wait":
                await (self.shutdown() if action == "shutdown" else self.restart())
                return RunOutcome("restarted", policy.reason, execution_count=execution_count,
                                  stop_latency_s=policy.latency())
            try:
                msg = await _next_msg(kc, policy.wait_s(POLL_S) or 0.0)
            except Empty:
                if not await self.alive():
                    exit_code = await self.exit_code()
                    await self.restart()
                    return RunOutcome("died", policy.reason, exit_code=exit_code,
                                      execution_count=execution_count)
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                self._other(msg)
                continue
            msg_type, content = msg["msg_type"], msg["content"]
            if msg_type == "status":
                if content.get("execution_state") == "idle":
                    break
                policy.cell_started()
            elif msg_type == "execute_input":
                policy.cell_started()
                execution_count = content.get("execution_count")
            else:
                if msg_type == "error":
                    policy.cell_ending()
                on_message(msg_type, content)
        reply_status = await self._reply_status(kc, msg_id)
        if policy.stopping:
            return RunOutcome("interrupted", policy.reason, reply_status, execution_count,
                              stop_latency_s=policy.latency())
        return RunOutcome("completed", None, reply_status, execution_count)

    def _other(self, msg: dict[str, Any]) -> None:
        parent = (msg.get("parent_header") or {}).get("msg_id")
        if self.on_other is not None and parent and msg.get("msg_type") != "status":
            self.on_other(str(parent), str(msg.get("msg_type")), msg.get("content") or {})

    def listen_idle(self) -> None:
        """Between runs, pass output to ``on_other`` as it comes (threads of ended cells)."""
        if self._idle is not None and self._idle.done():
            self._idle = None
        if self.kc is not None and self.on_other is not None and self._idle is None:
            self._idle = asyncio.create_task(self._idle_loop(self.kc), name="kernel-idle")

    async def _idle_loop(self, kc: AsyncKernelClient) -> None:
        # Not in the loop turn that ends a run: the job's answer goes out first (what
        # comes meanwhile waits in the socket's queue), and a job that follows at once
        # cancels a sleep instead of a poll just set up.
        await asyncio.sleep(IDLE_START_S)
        while True:
            try:
                # Cancelled only at the poll: a message is never half taken.
                self._other(await _next_msg(kc, IDLE_POLL_S))
            except Empty:
                continue
            except Exception as exc:  # a broken channel: the next run or restart will say
                log.debug("idle iopub reader stopped: %s", exc)
                return

    async def stop_idle(self) -> None:
        task, self._idle = self._idle, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})  # (a cancellation of the caller still propagates)

    async def _reply_status(self, kc: AsyncKernelClient, msg_id: str) -> str | None:
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            sock = kc.shell_channel.socket
            assert sock is not None
            try:
                reply = await next_message(sock, kc.session, left)
            except Empty:
                return None
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                status = reply.get("content", {}).get("status")
                return str(status) if status is not None else None
        return None
