"""Jobs on a plain Jupyter Server, tracked by the bridge (Jupyter Server has no job store).

A ``JobRecord`` lives in this bridge process: status, the output as it streams in,
the result, the epoch.  ``run_cell`` executes one cell over the kernel WebSocket
and enforces the job's timeout where the bridge can: at the deadline it interrupts
the kernel (``POST /api/kernels/{id}/interrupt``, repeated while the cell runs); if the
cell has not ended ``INTERRUPT_GRACE_S`` later (C-level loops ignore SIGINT) it restarts
the kernel (``POST /api/kernels/{id}/restart``) and says that the state is gone.  The
policy and the status it leads to are ``shared/stop.py``'s, as on our runtime server.  A job's
record here does not survive the bridge process, but the kernel's job agent keeps the job's
output and status on the runtime's disk (``durable.py``), where a new bridge finds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from smartcolab.client.jupyter.kernel import JupyterRest, KernelChannel, message
from smartcolab.shared.output.display import choose
from smartcolab.shared.output.flow import FlowRecord
from smartcolab.shared.protocol import (
    TERMINAL_STATUSES,
    ErrorInfo,
    JobResult,
    JobView,
    OutputAttachment,
    OutputPage,
    RichOutput,
    TextBlock,
)
from smartcolab.shared.stop import Ending, StopPolicy, verdict

INTERRUPT_GRACE_S = 5.0
IDLE_AFTER_REPLY_S = 10.0
UNTAKEN_S = 3.0  # a request no kernel has begun is checked this often (``run_cell``)
UNTAKEN: dict[str, Any] = {"_sc_untaken": True}
# Each repeat is an HTTP request, and the kernel's answer to the first comes back through
# the server's relay: repeating faster would often hit a cell that is already stopping.
INTERRUPT_REPEAT_S = 1.0
MAX_TEXT_CHARS = 200_000  # per stream in a result (head + tail); the full text stays pageable
MAX_VIEW_CHARS = 64_000  # new output in one view
MAX_KEPT_CHARS = 32_000_000  # output kept per job for get_job_output
TRACKING_NOTE = ("This runtime is a plain Jupyter Server: it has no job store of its own, so "
                 "the job agent in its kernel records the job on the runtime's disk "
                 "(smartcolab-jobs/). If the bridge restarts, get_job re-attaches to it there.")


def _cap(text: str, limit: int = MAX_TEXT_CHARS) -> TextBlock:
    if len(text) <= limit:
        return TextBlock(text=text, total_chars=len(text))
    head = limit // 2
    return TextBlock(text=text[:head] + "\n... [output truncated] ...\n" + text[-(limit - head):],
                     total_chars=len(text), truncated=True)


@dataclass
class JobRecord:
    """One job as this bridge knows it; ``changed`` wakes long-polls."""

    job_id: str
    session: str
    code: str
    timeout: float | None
    client: str | None
    epoch: str = ""
    status: str = "queued"
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    output: str = ""
    dropped: int = 0  # characters dropped from the front of ``output`` (kept size cap)
    stdout: str = ""
    stderr: str = ""
    outputs: list[RichOutput] = field(default_factory=list)
    # The output in the order it happened, positioned in characters of ``output``.
    flow: FlowRecord = field(default_factory=lambda: FlowRecord(2 * MAX_TEXT_CHARS, len))
    error: ErrorInfo | None = None
    execution_count: int | None = None
    message: str | None = None
    state_lost: bool = False
    cancel_requested: bool = False
    spilled: bool = False  # the kernel's job agent ran it: its whole output is on disk
    wake: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    # The running cell's message queue, so cancel and kernel deaths can wake it.
    inbox: asyncio.Queue[dict[str, Any] | None] | None = field(default=None, repr=False)

    def touch(self) -> None:
        self.wake.set()
        self.wake = asyncio.Event()

    def append(self, text: str) -> None:
        self.output += text
        if len(self.output) > MAX_KEPT_CHARS:
            cut = len(self.output) - MAX_KEPT_CHARS
            self.output = self.output[cut:]
            self.dropped += cut
        self.touch()

    @property
    def total_chars(self) -> int:
        return self.dropped + len(self.output)

    def finish(self, status: str) -> None:
        self.status = status
        self.finished_at = time.time()
        self.touch()

    def view(self, since: int | None = None) -> JobView:
        start = max(0, (since or 0) - self.dropped)
        new = self.output[start:]
        truncated = len(new) > MAX_VIEW_CHARS
        result = None
        if self.status in TERMINAL_STATUSES:
            result = JobResult(stdout=_cap(self.stdout), stderr=_cap(self.stderr),
                               outputs=self.outputs, error=self.error,
                               execution_count=self.execution_count, message=self.message,
                               state_lost=self.state_lost, flow=self.flow.items())
        duration = (self.finished_at or time.time()) - self.started_at if self.started_at else None
        return JobView(
            job_id=self.job_id, session=self.session, status=self.status,  # type: ignore[arg-type]
            code=self.code, timeout=self.timeout, client=self.client, created_at=self.created_at,
            started_at=self.started_at, finished_at=self.finished_at,
            duration_s=duration if self.status in TERMINAL_STATUSES else None,
            epoch=self.epoch, output=new[-MAX_VIEW_CHARS:], cursor=self.total_chars,
            output_bytes=self.total_chars, output_truncated=truncated, result=result)

    def page(self, offset: int, limit: int) -> OutputPage:
        start = max(offset, self.dropped)
        text = self.output[start - self.dropped:start - self.dropped + limit]
        nxt = start + len(text)
        return OutputPage(job_id=self.job_id, offset=start, next_offset=nxt,
                          total_bytes=self.total_chars, text=text,
                          complete=self.status in TERMINAL_STATUSES and nxt >= self.total_chars)

    async def wait(self, seconds: float) -> None:
        """Until the record changes or ``seconds`` pass."""
        if seconds > 0 and self.status not in TERMINAL_STATUSES:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), seconds)


def rich_output(msg_type: str, content: dict[str, Any]) -> RichOutput:
    shown = choose(content.get("data") or {})
    image = shown.image_base64
    return RichOutput(type=msg_type,  # type: ignore[arg-type]
                      text=shown.text, text_mime=shown.text_mime,
                      image_mime=shown.image_mime, image_base64=image,
                      image_bytes=len(image) * 3 // 4 if image is not None else None,
                      attachments=[OutputAttachment(mime=a.mime, data=a.data,
                                                    size=len(a.data.encode("utf-8")))
                                   for a in shown.attachments],
                      execution_count=content.get("execution_count"))


def _collect(rec: JobRecord, msg: dict[str, Any]) -> bool:
    """Fold one message into ``rec``; True when it is the cell's ``execute_reply``."""
    kind = msg.get("msg_type") or (msg.get("header") or {}).get("msg_type")
    content = msg.get("content") or {}
    if kind == "stream":
        text = str(content.get("text", ""))
        err = content.get("name") == "stderr"
        if err:
            rec.stderr += text
        else:
            rec.stdout += text
        at = rec.total_chars
        rec.append(text)
        rec.flow.add("stderr" if err else "stdout", text, at=at, end=rec.total_chars)
    elif kind in ("display_data", "execute_result"):
        out = rich_output(kind, content)
        at = rec.total_chars
        rec.outputs.append(out)
        if out.text:
            rec.append(out.text + "\n")
        else:
            rec.touch()
        rec.flow.add("result" if kind == "execute_result" else "display", out.text or "",
                     at=at, end=rec.total_chars, output=len(rec.outputs) - 1)
    elif kind == "error":
        rec.error = ErrorInfo(ename=str(content.get("ename", "")),
                              evalue=str(content.get("evalue", "")),
                              traceback=[str(t) for t in content.get("traceback", [])])
        rec.flow.add("error", "", at=rec.total_chars, end=rec.total_chars)
    elif kind == "execute_reply":
        rec.execution_count = content.get("execution_count")
        return True
    return False


# The Jupyter Server's restarter announces these when a kernel died under a job.
DEATH_STATES = ("restarting", "autorestarting", "dead")


def _lifecycle_ending(state: str, policy: StopPolicy, taken: bool) -> Ending | None:
    """How a kernel lifecycle event ends the running cell (None: it does not); ``taken``:
    a kernel process has begun handling the cell (its ``busy`` status came)."""
    if state == "restarted":  # restart_session, by this bridge
        return Ending("restarted", "restart")
    if state == "starting":
        # A new kernel process says "starting" before anything else on IOPub, so once our
        # cell had started, someone restarted the kernel under it (JupyterLab's button, a
        # hub's culler).  Before that, our request is queued for the new process.
        return Ending("restarted", "restart") if taken else None
    if state in DEATH_STATES:
        return Ending("died", policy.reason, cause=(
            f"the Jupyter Server reported the kernel {state}: most often out of memory or a "
            "crash in native code"))
    return None


async def run_cell(rest: JupyterRest, channel: KernelChannel, rec: JobRecord, *,
                   silent: bool = False, on_restart: Any = None, code: str | None = None,
                   user_expressions: dict[str, str] | None = None,
                   until_reply: bool = False,
                   done_at_reply: Callable[[dict[str, Any]], bool] | None = None,
                   lost_request: Callable[[], Awaitable[bool]] | None = None,
                   ) -> dict[str, Any]:
    """Execute ``rec.code``, collecting output into ``rec``; enforce timeout and cancel
    (``shared.stop``).  Returns the ``execute_reply`` content ({} when there was none).

    Leaves ``rec.status`` as the outcome (``succeeded``/``failed``/``timed_out``/
    ``cancelled``/``lost``) but does not call ``finish``: the caller does.
    ``until_reply``: return at the reply without waiting for IOPub's ``idle`` (the
    caller needs only the reply, e.g. ``user_expressions``); ``done_at_reply``: the same,
    decided by the reply's content (a job cell that found no agent ran nothing).  After
    the reply, IOPub's ``idle`` is awaited at most ``IDLE_AFTER_REPLY_S``: a WebSocket
    whose IOPub is not yet bound to a restarted kernel never brings it.
    ``lost_request``: asked every ``UNTAKEN_S`` while no kernel has begun the request; True
    (e.g. the kernel is idle: the request went to a process that died) returns
    ``UNTAKEN`` at once, so the caller can send it again.
    """
    msg = message("execute_request", {
        "code": rec.code if code is None else code, "silent": silent,
        "store_history": not silent and code is None,  # a job cell: the agent's run_cell stores it
        "user_expressions": user_expressions or {}, "allow_stdin": False,
        "stop_on_error": True}, session=channel.session_id)
    msg_id = msg["header"]["msg_id"]
    queue = await channel.send(msg)
    rec.inbox = queue
    policy = StopPolicy(grace_s=INTERRUPT_GRACE_S, repeat_s=INTERRUPT_REPEAT_S,
                        deadline=None if rec.timeout is None else time.monotonic() + rec.timeout)
    kernel = f"/api/kernels/{channel.kernel_id}"
    ending: Ending | None = None
    reply: dict[str, Any] = {}
    idle = taken = False
    reply_at: float | None = None
    checked_at = time.monotonic()
    try:
        while not ((idle or until_reply) and reply):
            action = policy.next_action("cancelled" if rec.cancel_requested else None)
            if action == "interrupt":
                await rest.call("POST", f"{kernel}/interrupt", what="interrupt")
            elif action != "wait":  # restart: a Jupyter run is never asked to shut down
                await rest.call("POST", f"{kernel}/restart", json_body={}, timeout=120.0,
                                what="restart")
                if on_restart is not None:
                    on_restart()
                ending = Ending("restarted", policy.reason)
                break
            wait_s = policy.wait_s()
            if lost_request is not None and not taken and not reply:
                if time.monotonic() - checked_at >= UNTAKEN_S:
                    checked_at = time.monotonic()
                    if await lost_request():
                        return dict(UNTAKEN)
                wait_s = UNTAKEN_S if wait_s is None else min(wait_s, UNTAKEN_S)
            if reply_at is not None:
                left = reply_at + IDLE_AFTER_REPLY_S - time.monotonic()
                if left <= 0:
                    break
                wait_s = left if wait_s is None else min(wait_s, left)
            try:
                got = await asyncio.wait_for(queue.get(), wait_s)
            except asyncio.TimeoutError:
                continue
            if got is None:
                if channel.closed:
                    rec.status, rec.message = "lost", "the bridge closed the kernel connection"
                    return reply
                await channel.reconnect()  # the server replays what we missed
                continue
            if "_sc_wake" in got:
                continue
            if "_sc_lifecycle" in got:
                ending = _lifecycle_ending(str(got["_sc_lifecycle"]), policy, taken)
                if ending is not None:
                    break
                continue
            kind = got.get("msg_type")
            if kind == "status" and got.get("channel") == "iopub":
                state = (got.get("content") or {}).get("execution_state")
                idle = idle or state == "idle"
                taken = taken or state == "busy"
                if state == "busy" and silent:  # a silent cell has no execute_input
                    policy.cell_started()
                continue
            if kind == "execute_input":
                # Published once the kernel's SIGINT handler is in place ("busy" comes
                # before it, and a SIGINT then is ignored).
                policy.cell_started()
            elif kind in ("error", "execute_reply"):
                policy.cell_ending()
            if _collect(rec, got):
                reply = got.get("content") or {"status": None}
                reply_at = time.monotonic()
                if done_at_reply is not None and done_at_reply(reply):
                    break
    finally:
        channel.forget(msg_id)
        rec.inbox = None
    if ending is None:
        failed = rec.error is not None or reply.get("status") not in (None, "ok")
        ending = (Ending("interrupted", policy.reason) if policy.stopping
                  else Ending("completed", failed=failed))
    judged = verdict(ending, timeout=rec.timeout, grace_s=INTERRUPT_GRACE_S)
    rec.status = judged.status
    rec.state_lost = rec.state_lost or judged.state_lost
    rec.error = judged.error or rec.error
    rec.message = judged.note
    return reply


def wake(rec: JobRecord, item: dict[str, Any]) -> None:
    """Push a control item into the running cell's queue (cancel, kernel lifecycle)."""
    if rec.inbox is not None:
        rec.inbox.put_nowait(item)
