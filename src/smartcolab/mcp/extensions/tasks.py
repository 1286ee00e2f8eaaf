"""MCP tasks for tool calls that can outlive a wait: create, follow, cancel, expire.

Wire-neutral: ``mcp/extensions/tasks_wire.py`` speaks the 2025-11-25 methods and the 2026-07-28
extension on top of this.  Decisions:

* The store is the bridge's journal (``tasks`` table): a task survives a bridge
  restart.  ``run_code_long``'s task id is its job id; other tools get ``task-<hex>``.
* ``run_code_long`` is submitted at once (``background=true``), so the id exists before
  the answer; a runner then polls the runtime directly (never ``get_job``, whose
  cancellation would cancel the job when the bridge stops) and renders the final
  result with ``get_job(wait=0)``.  After a restart a task still ``working`` has no
  runner: the first look at it starts one again.
* Other tools run whole in the background; ``run_chunked_operation`` is re-run after a
  restart (it resumes from its checkpoint), a transfer interrupted by one is failed
  with a note that calling again resumes it.
* Tasks belong to their creator (``owner``: the bearer token's digest on HTTP, plus
  the client's name); a task of another owner does not exist for the caller.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
from mcp.types import CallToolResult, TextContent

from smartcolab.client.journal import Journal, TaskRow
from smartcolab.shared.errors import SmartColabError
from smartcolab.shared.protocol import MAX_WAIT_S, TERMINAL_STATUSES

log = logging.getLogger(__name__)

# Tools a client may run as a task, and how: "job" = a runtime job followed here,
# "call" = the whole tool call in the background.
TASK_TOOLS: dict[str, str] = {
    "run_code_long": "job",
    "run_chunked_operation": "call",
    "download_from_colab": "call",
    "upload_to_colab": "call",
}
RESUMABLE = frozenset({"run_chunked_operation"})
DEFAULT_TTL_MS = 24 * 3600 * 1000
MAX_TTL_MS = 7 * 24 * 3600 * 1000
POLL_INTERVAL_MS = 2000
TERMINAL = frozenset({"completed", "failed", "cancelled"})

# (tool name, arguments) -> the tool's result as a wire dict
CallTool = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class TaskNotFound(LookupError):
    """No such task for this owner (or it expired)."""


def job_state(status: str) -> str:
    """A job status as a task status (a failed job is a completed call with isError)."""
    if status == "cancelled":
        return "cancelled"
    return "completed" if status in TERMINAL_STATUSES or status == "not_submitted" else "working"


def error_result(text: str) -> dict[str, Any]:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True
                          ).model_dump(by_alias=True, mode="json", exclude_none=True)


@dataclass
class _Live:
    scope: anyio.CancelScope
    done: anyio.Event


class TaskManager:
    """The tasks of one bridge: rows in the journal, runners in a task group."""

    def __init__(self) -> None:
        self._journal: Journal | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._live: dict[str, _Live] = {}
        self.poll_s = 1.0

    def attach(self, journal: Journal, tg: anyio.abc.TaskGroup) -> None:
        self._journal, self._tg = journal, tg
        self._live.clear()

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            raise RuntimeError("the task manager is used outside the bridge's lifespan")
        return self._journal

    # ------------------------------------------------------------------ create
    async def create(self, owner: str, tool: str, arguments: dict[str, Any],
                     ttl_ms: int | None, call: CallTool) -> TaskRow:
        """Start ``tool`` as a task; the row exists (durably) before this returns."""
        ttl = DEFAULT_TTL_MS if ttl_ms is None else max(1000, min(int(ttl_ms), MAX_TTL_MS))
        now = time.time()
        self.journal.purge_tasks(now)
        if TASK_TOOLS[tool] == "job":
            submitted = await call(tool, {**arguments, "background": True})
            job_id = (submitted.get("structuredContent") or {}).get("job_id")
            if not isinstance(job_id, str) or submitted.get("isError"):
                row = TaskRow(f"task-{secrets.token_hex(8)}", owner, tool, json.dumps(arguments),
                              None, "completed", "the job could not be submitted", now, now, ttl,
                              json.dumps(submitted), None)
                self.journal.put_task(row)
                return row
            row = TaskRow(job_id, owner, tool, json.dumps(arguments), job_id, "working",
                          "submitted", now, now, ttl, None, None)
        else:
            row = TaskRow(f"task-{secrets.token_hex(8)}", owner, tool, json.dumps(arguments),
                          None, "working", "started", now, now, ttl, None, None)
        self.journal.put_task(row)
        self._start(row, call)
        return row

    # ------------------------------------------------------------------ look
    def get(self, owner: str, task_id: str, call: CallTool | None = None) -> TaskRow:
        """The task as stored; a working task with no runner here gets one (after a restart)."""
        row = self.journal.get_task(task_id)
        if row is None or row.owner != owner:
            raise TaskNotFound(task_id)
        if row.ttl_ms is not None and row.created_at + row.ttl_ms / 1000 < time.time():
            self.journal.purge_tasks(time.time())
            raise TaskNotFound(task_id)
        if row.status not in TERMINAL and task_id not in self._live and call is not None:
            self._resume(row, call)
            row = self.journal.get_task(task_id) or row
        return row

    def list(self, owner: str, *, before: float | None = None, limit: int = 50) -> list[TaskRow]:
        self.journal.purge_tasks(time.time())
        return self.journal.tasks_of(owner, before=before, limit=limit)

    async def wait(self, owner: str, task_id: str, call: CallTool) -> TaskRow:
        """Block until the task is over (``tasks/result``)."""
        while True:
            row = self.get(owner, task_id, call)
            if row.status in TERMINAL:
                return row
            live = self._live.get(task_id)
            if live is not None:
                with anyio.move_on_after(self.poll_s * 5):
                    await live.done.wait()
            else:
                await anyio.sleep(self.poll_s)

    # ------------------------------------------------------------------ cancel
    async def cancel(self, owner: str, task_id: str, call: CallTool) -> TaskRow:
        row = self.get(owner, task_id)
        if row.status in TERMINAL:
            return row
        live = self._live.pop(task_id, None)
        if live is not None:
            live.scope.cancel()
        result: dict[str, Any] | None = None
        if row.job_id is not None:
            try:
                result = await call("cancel_job", {"job_id": row.job_id})
            except Exception as exc:  # the task is cancelled here whatever the runtime says
                log.warning("task %s: cancelling job %s failed: %s", task_id, row.job_id, exc)
        self.journal.update_task(task_id, "cancelled", message="cancelled by the client",
                                 result=json.dumps(result) if result else None)
        if live is not None:
            live.done.set()
        return self.get(owner, task_id)

    # ------------------------------------------------------------------ runners
    def _start(self, row: TaskRow, call: CallTool, *, resumed: bool = False) -> None:
        if self._tg is None:
            raise RuntimeError("the task manager has no task group")
        live = _Live(anyio.CancelScope(), anyio.Event())
        self._live[row.task_id] = live
        self._tg.start_soon(self._run, row, call, live, resumed)

    def _resume(self, row: TaskRow, call: CallTool) -> None:
        if row.job_id is not None or row.tool in RESUMABLE:
            log.info("task %s: following it again after a bridge restart", row.task_id)
            self._start(row, call, resumed=True)
            return
        self.journal.update_task(
            row.task_id, "failed", message="the bridge restarted while this ran",
            result=json.dumps(error_result(
                f"The bridge restarted while {row.tool} ran as task {row.task_id}; call "
                f"{row.tool} again with the same arguments (transfers resume where they were).")))

    async def _run(self, row: TaskRow, call: CallTool, live: _Live, resumed: bool) -> None:
        try:
            with live.scope:
                if row.job_id is not None:
                    result = await self._follow_job(row.job_id, call)
                else:
                    result = await self._run_call(row, call, resumed)
                final = self._final_state(row, result)
                log.info("task %s (%s): %s", row.task_id, row.tool, final)
                self.journal.update_task(row.task_id, final, message=_summary(result),
                                         result=json.dumps(result))
        except Exception as exc:
            log.warning("task %s failed: %s", row.task_id, exc)
            message = exc.message if isinstance(exc, SmartColabError) else str(exc)
            self.journal.update_task(row.task_id, "failed", message=message[:500],
                                     error=json.dumps({"code": -32603, "message": message[:500]}))
        finally:
            if self._live.get(row.task_id) is live:
                del self._live[row.task_id]
            live.done.set()

    @staticmethod
    def _final_state(row: TaskRow, result: dict[str, Any]) -> str:
        status = (result.get("structuredContent") or {}).get("status")
        if row.job_id is not None and isinstance(status, str):
            return "completed" if job_state(status) == "working" else job_state(status)
        return "completed"

    async def _run_call(self, row: TaskRow, call: CallTool, resumed: bool) -> dict[str, Any]:
        args = json.loads(row.arguments)
        if row.tool == "run_chunked_operation":
            # A resumed run must not discard the checkpoint its first run built.
            args = {**args, "wait": 3600, **({"restart": False} if resumed else {})}
            while True:
                result = await call(row.tool, args)
                if (result.get("structuredContent") or {}).get("status") != "running":
                    return result
                args = {**args, "restart": False}
        return await call(row.tool, args)

    async def _follow_job(self, job_id: str, call: CallTool) -> dict[str, Any]:
        """Poll until the job ends (``get_job`` with a short wait, which never cancels it)."""
        while True:
            with anyio.CancelScope(shield=True):
                # Shielded: cancelling the runner (bridge stopping) must not cancel the job.
                # from_start: the task's result is the whole job's, not what this poll
                # has not shown yet (get_job returns only unseen output per client).
                result = await call("get_job", {"job_id": job_id, "wait": 0,
                                                "from_start": True})
            status = (result.get("structuredContent") or {}).get("status")
            if result.get("isError") and not isinstance(status, str):
                return result
            if isinstance(status, str) and job_state(status) != "working":
                return result
            if isinstance(status, str):
                self.journal.update_task(job_id, "working", message=status)
            await anyio.sleep(min(self.poll_s, MAX_WAIT_S))


def _summary(result: dict[str, Any]) -> str:
    for item in result.get("content") or []:
        if item.get("type") == "text":
            return str(item.get("text", "")).split("\n", 1)[0][:300]
    return ""


Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


def with_tasks(lifespan: Lifespan, manager: TaskManager) -> Lifespan:
    """``lifespan`` plus the task runners' group (closed before the bridge itself)."""
    @asynccontextmanager
    async def wrapped(server: Any) -> AsyncIterator[Any]:
        async with lifespan(server) as deps, anyio.create_task_group() as tg:
            manager.attach(deps.journal, tg)
            try:
                yield deps
            finally:
                tg.cancel_scope.cancel()
    return wrapped
