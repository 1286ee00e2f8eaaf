"""Durable jobs on a Jupyter kernel: the bridge's half of ``kernelside/job_agent.py``.

* ``job_cell``/``JOB_EXPRESSIONS``: a job is ONE execute request; its code calls the agent
  already in the kernel, and two user expressions in the same request bring back the
  kernel's epoch token and the agent's summary of the run (no separate epoch read).  A
  kernel without the agent (a new process) runs nothing and its reply says so; the
  bridge then installs the agent (``install_cell``) and sends the job again.
* ``SpillReader``: the job's files read through the contents API, which answers while
  the kernel is busy: status, result, and text pages from the bounded segments.
* ``AttachedJob``: a job this bridge did not start (it started in an earlier bridge),
  followed from its files alone: ``get_job`` polls its status, ``job_output`` pages its
  segments, ``cancel_job`` writes ``stop.json`` and the kernel's watchdog stops it.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from smartcolab.client.jupyter.kernel import JupyterRest
from smartcolab.kernelside.job_agent import NAME, RESULT, SEGMENT_CHARS, STATUS, STOP, segment_name
from smartcolab.shared import kernel_code as kc
from smartcolab.shared.errors import NotFound
from smartcolab.shared.protocol import (
    TERMINAL_STATUSES,
    ErrorInfo,
    JobResult,
    JobView,
    OutputPage,
    RichOutput,
    TextBlock,
)
from smartcolab.shared.stop import Ending, verdict

JOBS_DIR = "smartcolab-jobs"  # under the server's root: the contents API hides dot-folders
WATCHDOG_MARGIN_S = 2.0  # the kernel's watchdog acts this long after a connected bridge would
POLL_S = 0.5  # how often an attached job's status file is read while someone waits
MAX_VIEW_CHARS = 64_000
_AGENT = f"__import__('builtins').__dict__.get({NAME!r})"
JOB_EXPRESSIONS_AGENT = "agent"


def job_cell(job_id: str, code: str, timeout: float | None, session: str,
             created_at: float) -> str:
    """The one cell a job is: the agent runs ``code``; nothing runs if there is no agent."""
    args = ", ".join(repr(a) for a in (job_id, code, timeout, session, created_at))
    return f"{_AGENT} and {_AGENT}.run({args})"


def job_expressions(job_id: str) -> dict[str, str]:
    return {"epoch": kc.EPOCH_EXPRESSION,
            JOB_EXPRESSIONS_AGENT: f"{_AGENT}.summary({job_id!r})"}


def agent_present(reply: dict[str, Any]) -> bool:
    """False when the job's kernel had no agent (so the job's code did not run)."""
    found = (reply.get("user_expressions") or {}).get(JOB_EXPRESSIONS_AGENT) or {}
    return found.get("status") == "ok"


def duplicate(reply: dict[str, Any]) -> bool:
    """The agent refused to run the job again: an earlier copy of the request ran it."""
    summary = kc.expression_value(reply, JOB_EXPRESSIONS_AGENT)
    return isinstance(summary, dict) and bool(summary.get("duplicate"))


def install_cell(grace_s: float, repeat_s: float) -> str:
    return kc.call("job_agent", "install", {
        "root": JOBS_DIR, "source": kc.source("job_agent"), "grace_s": grace_s,
        "repeat_s": repeat_s, "margin_s": WATCHDOG_MARGIN_S})


def job_path(job_id: str, name: str) -> str:
    return f"{JOBS_DIR}/{job_id}/{name}"


def result_path(job_id: str) -> str:
    return job_path(job_id, RESULT)


class SpillReader:
    """Reads a job's files through the contents API (``GET /api/contents/PATH``)."""

    def __init__(self, rest: JupyterRest) -> None:
        self.rest = rest

    async def text(self, path: str) -> str | None:
        try:
            model = await self.rest.call(
                "GET", f"/api/contents/{quote(path)}",
                params={"content": "1", "format": "text", "type": "file"}, what=path)
        except NotFound:
            return None
        return str(model.get("content") or "")

    async def json(self, path: str) -> dict[str, Any] | None:
        raw = await self.text(path)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None  # written by hand, or half a file from an old agent
        return data if isinstance(data, dict) else None

    async def status(self, job_id: str) -> dict[str, Any] | None:
        return await self.json(job_path(job_id, STATUS))

    async def page(self, job_id: str, offset: int, limit: int, total: int) -> str:
        """Characters ``[offset, offset+limit)`` of the job's text, at most ``total``."""
        end = min(total, offset + limit)
        parts: list[str] = []
        index = offset // SEGMENT_CHARS
        while index * SEGMENT_CHARS < end:
            seg = await self.text(job_path(job_id, segment_name(index))) or ""
            base = index * SEGMENT_CHARS
            parts.append(seg[max(0, offset - base):max(0, end - base)])
            index += 1
        return "".join(parts)

    async def stop(self, job_id: str, reason: str) -> None:
        """Ask the kernel's watchdog to stop the job (interrupt, then restart)."""
        await self.rest.call("PUT", f"/api/contents/{quote(job_path(job_id, STOP))}", json_body={
            "type": "file", "format": "text",
            "content": json.dumps({"reason": reason, "at": time.time()})}, what="stop a job")


def _block(data: Any) -> TextBlock:
    data = data if isinstance(data, dict) else {}
    return TextBlock(text=str(data.get("text", "")), total_chars=int(data.get("total_chars", 0)),
                     truncated=bool(data.get("truncated", False)))


def _outputs(items: Any) -> list[RichOutput]:
    from smartcolab.client.jupyter.jobs import rich_output  # one way to shape outputs

    return [rich_output(str(o.get("type", "display_data")), {"data": o.get("data") or {}})
            for o in items or [] if isinstance(o, dict)]


@dataclass
class AttachedJob:
    """A job known only from its files (started by an earlier bridge)."""

    job_id: str
    code: str
    status: dict[str, Any]
    epoch_prefix: str = ""
    result: JobResult | None = None
    job_status: str = "running"
    lost_note: str | None = None
    seen: float = field(default_factory=time.time)

    @property
    def total(self) -> int:
        return int(self.status.get("total_chars") or 0)

    def judge(self, result: dict[str, Any] | None, timeout: float | None,
              grace_s: float) -> None:
        """The job's status and result from its ended status file (``shared.stop``)."""
        end = self.status.get("ending") or {}
        ending = Ending(kind=end.get("kind", "completed"), reason=end.get("reason"),
                        failed=bool(end.get("failed")))
        judged = verdict(ending, timeout=timeout, grace_s=grace_s)
        data = result or {}
        err = data.get("error")
        error = judged.error or (ErrorInfo(ename=str(err.get("ename", "")),
                                           evalue=str(err.get("evalue", "")),
                                           traceback=[str(t) for t in err.get("traceback", [])])
                                 if isinstance(err, dict) else None)
        self.job_status = judged.status
        self.result = JobResult(stdout=_block(data.get("stdout")), stderr=_block(data.get("stderr")),
                                outputs=_outputs(data.get("outputs")), error=error,
                                execution_count=data.get("execution_count"),
                                message=judged.note, state_lost=judged.state_lost)

    def lose(self, note: str) -> None:
        self.job_status, self.lost_note = "lost", note
        self.result = JobResult(stdout=TextBlock(text="", total_chars=0),
                                stderr=TextBlock(text="", total_chars=0), message=note,
                                state_lost=True)

    @property
    def ended(self) -> bool:
        return self.job_status in TERMINAL_STATUSES

    def view(self, text: str) -> JobView:
        st = self.status
        started, finished = st.get("started_at"), st.get("finished_at")
        return JobView(
            job_id=self.job_id, session=str(st.get("session") or "main"),
            status=self.job_status,  # type: ignore[arg-type]
            code=self.code, timeout=st.get("timeout"), client=None,
            created_at=float(st.get("created_at") or started or 0.0), started_at=started,
            finished_at=finished if self.ended else None,
            duration_s=(finished - started) if self.ended and finished and started else None,
            epoch=f"{self.epoch_prefix}-{st.get('epoch', '')}", output=text[-MAX_VIEW_CHARS:],
            cursor=self.total, output_bytes=self.total,
            output_truncated=len(text) > MAX_VIEW_CHARS, result=self.result if self.ended else None)

    def page(self, text: str, offset: int) -> OutputPage:
        nxt = offset + len(text)
        return OutputPage(job_id=self.job_id, offset=offset, next_offset=nxt,
                          total_bytes=self.total, text=text,
                          complete=self.ended and nxt >= self.total)


async def sleep_until(deadline: float) -> None:
    await asyncio.sleep(max(0.0, min(POLL_S, deadline - time.monotonic())))
