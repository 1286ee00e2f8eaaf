"""Tasks on the wire: the 2025-11-25 methods and the 2026-07-28 extension.

The SDK (mcp 2.3) has the 2025-11-25 task types but serves no ``tasks/*``.  Here:

* 2025-11-25 (``initialize`` handshake): :class:`LegacyTasks` middleware adds
  ``capabilities.tasks`` to the initialize result and ``execution.taskSupport`` to
  the task tools in ``tools/list``, and answers a ``tools/call`` carrying
  ``params.task`` with the ``CreateTaskResult`` itself (it runs before the SDK's
  result check, which would refuse that shape for ``tools/call``).
* 2026-07-28 (``io.modelcontextprotocol/tasks``): :class:`TasksExtension`, through the
  SDK's Extension API: its ``intercept_tool_call`` answers ``resultType: "task"`` when
  the request declares the extension (the SDK leaves non-core result types alone on
  that wire).
* ``tasks/get`` and ``tasks/cancel`` (both generations, each in its own shape),
  ``tasks/result`` and ``tasks/list`` (2025-11-25 only) and ``tasks/update`` (2026 only)
  are the extension's methods; one handler serves both generations.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    CallToolRequestParams,
    CallToolResult,
    RequestParams,
    TextContent,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from smartcolab.client.journal import TaskRow
from smartcolab.mcp.deps import BridgeDeps
from smartcolab.mcp.extensions.resources import add_links
from smartcolab.mcp.extensions.tasks import (
    POLL_INTERVAL_MS,
    TASK_TOOLS,
    CallTool,
    TaskManager,
    TaskNotFound,
)

EXTENSION_ID = "io.modelcontextprotocol/tasks"
LEGACY_VERSION = "2025-11-25"
RELATED_TASK = "io.modelcontextprotocol/related-task"
LEGACY_CAPABILITY: dict[str, Any] = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
PAGE = 50


class TaskIdParams(RequestParams):
    task_id: str


class ListParams(RequestParams):
    cursor: str | None = None


class UpdateParams(RequestParams):
    task_id: str
    input_responses: dict[str, Any] | None = None


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _is_error(row: TaskRow) -> bool:
    return bool(row.result and json.loads(row.result).get("isError"))


def legacy_task(row: TaskRow) -> dict[str, Any]:
    """A 2025-11-25 ``Task``: a call that ended with isError is ``failed`` there."""
    status = "failed" if row.status == "completed" and _is_error(row) else row.status
    task: dict[str, Any] = {"taskId": row.task_id, "status": status,
                            "createdAt": _iso(row.created_at),
                            "lastUpdatedAt": _iso(row.updated_at), "ttl": row.ttl_ms,
                            "pollInterval": POLL_INTERVAL_MS}
    if row.message:
        task["statusMessage"] = row.message
    return task


def modern_task(row: TaskRow, *, detailed: bool) -> dict[str, Any]:
    """A 2026-07-28 ``Task`` (``DetailedTask`` for tasks/get: result or error inline)."""
    task: dict[str, Any] = {"taskId": row.task_id, "status": row.status,
                            "createdAt": _iso(row.created_at),
                            "lastUpdatedAt": _iso(row.updated_at), "ttlMs": row.ttl_ms,
                            "pollIntervalMs": POLL_INTERVAL_MS}
    if row.message:
        task["statusMessage"] = row.message
    if detailed and row.status == "completed" and row.result:
        task["result"] = json.loads(row.result)
    if detailed and row.status == "failed":
        task["error"] = json.loads(row.error) if row.error else {
            "code": -32603, "message": row.message or "the task failed"}
    return task


def owner_of(ctx: ServerRequestContext[Any, Any]) -> str:
    """Who a task belongs to: the bearer token (HTTP) and the client's name."""
    headers = getattr(ctx.request, "headers", None)
    auth = str(headers.get("authorization", "")) if headers is not None else "stdio"
    name = ""
    params = ctx.session.client_params
    if params is not None:
        name = params.client_info.name
    elif ctx.meta is not None:
        info = dict(ctx.meta).get("io.modelcontextprotocol/clientInfo")
        name = str(info.get("name", "")) if isinstance(info, Mapping) else ""
    return hashlib.sha256(f"{auth}\0{name}".encode()).hexdigest()[:32]


def tool_caller(server: MCPServer[Any], ctx: ServerRequestContext[Any, Any]) -> CallTool:
    """Call our own tools outside the request that started the task."""
    async def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        # No progress token: the request that could have carried progress is over.
        inner = replace(ctx, method="tools/call", meta=None,
                        params={"name": name, "arguments": arguments})
        try:
            result = await server.call_tool(name, arguments,
                                            Context(request_context=inner, mcp_server=server))
        except ToolError as exc:
            result = CallToolResult(content=[TextContent(type="text", text=str(exc))],
                                    is_error=True)
        dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        if isinstance(ctx.lifespan_context, BridgeDeps):
            add_links(ctx.lifespan_context, dumped)  # as a plain call's result would have
        return dumped
    return call


def _declared(ctx: ServerRequestContext[Any, Any]) -> bool:
    caps = ctx.session.client_capabilities
    return bool(caps and caps.extensions and EXTENSION_ID in caps.extensions)


class LegacyTasks:
    """2025-11-25 tasks: capability, tool-level support and task creation."""

    def __init__(self, manager: TaskManager, server: MCPServer[Any]) -> None:
        self.manager = manager
        self.server = server

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
                       ) -> HandlerResult:
        legacy = ctx.protocol_version == LEGACY_VERSION
        params = ctx.params if isinstance(ctx.params, Mapping) else {}
        if ctx.method == "tools/call" and legacy and "task" in params:
            name = params.get("name")
            if name not in TASK_TOOLS:
                raise MCPError(METHOD_NOT_FOUND, f"tool {name!r} cannot run as a task; "
                               f"these can: {', '.join(sorted(TASK_TOOLS))}")
            task = params.get("task")
            ttl = task.get("ttl") if isinstance(task, Mapping) else None
            arguments = params.get("arguments") or {}
            row = await self.manager.create(owner_of(ctx), str(name), dict(arguments),
                                            ttl if isinstance(ttl, int) else None,
                                            tool_caller(self.server, ctx))
            return {"task": legacy_task(row)}
        result = await call_next(ctx)
        if not isinstance(result, dict):
            return result
        if ctx.method == "initialize" and result.get("protocolVersion") == LEGACY_VERSION:
            result["capabilities"]["tasks"] = LEGACY_CAPABILITY
        elif ctx.method == "tools/list" and legacy:
            for tool in result.get("tools", []):
                if tool.get("name") in TASK_TOOLS:
                    tool["execution"] = {"taskSupport": "optional"}
        return result


class TasksExtension(Extension):
    """``io.modelcontextprotocol/tasks`` (2026-07-28), and the task methods of both wires."""

    identifier = EXTENSION_ID

    def __init__(self, manager: TaskManager) -> None:
        self.manager = manager
        self.server: MCPServer[Any] | None = None

    def methods(self) -> Sequence[MethodBinding]:
        legacy, modern = frozenset({LEGACY_VERSION}), frozenset(MODERN_PROTOCOL_VERSIONS)
        return (MethodBinding("tasks/get", TaskIdParams, self._get),
                MethodBinding("tasks/cancel", TaskIdParams, self._cancel),
                MethodBinding("tasks/result", TaskIdParams, self._result, legacy),
                MethodBinding("tasks/list", ListParams, self._list, legacy),
                MethodBinding("tasks/update", UpdateParams, self._update, modern))

    async def intercept_tool_call(self, params: CallToolRequestParams,
                                  ctx: ServerRequestContext[Any, Any],
                                  call_next: CallNext) -> HandlerResult:
        if (ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS or params.name not in TASK_TOOLS
                or not _declared(ctx)):
            return await call_next(ctx)
        row = await self.manager.create(owner_of(ctx), params.name, dict(params.arguments or {}),
                                        None, self._caller(ctx))
        return {"resultType": "task", **modern_task(row, detailed=False)}

    # ------------------------------------------------------------ methods
    def _caller(self, ctx: ServerRequestContext[Any, Any]) -> CallTool:
        assert self.server is not None, "TasksExtension.server is set by build_server"
        return tool_caller(self.server, ctx)

    def _row(self, ctx: ServerRequestContext[Any, Any], task_id: str) -> TaskRow:
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS and not _declared(ctx):
            raise MCPError(MISSING_REQUIRED_CLIENT_CAPABILITY, "Missing required client capability",
                           {"requiredCapabilities": {"extensions": {EXTENSION_ID: {}}}})
        try:
            return self.manager.get(owner_of(ctx), task_id, self._caller(ctx))
        except TaskNotFound:
            raise MCPError(INVALID_PARAMS, f"Failed to retrieve task: no task {task_id!r} "
                           "(unknown, expired, or made by another client)") from None

    def _shape(self, ctx: ServerRequestContext[Any, Any], row: TaskRow) -> dict[str, Any]:
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return modern_task(row, detailed=True)
        return legacy_task(row)

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> dict[str, Any]:
        return self._shape(ctx, self._row(ctx, params.task_id))

    async def _cancel(self, ctx: ServerRequestContext[Any, Any],
                      params: TaskIdParams) -> dict[str, Any]:
        row = self._row(ctx, params.task_id)
        modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        if row.status in ("completed", "failed", "cancelled") and not modern:
            raise MCPError(INVALID_PARAMS, f"task {row.task_id} is already {row.status}")
        row = await self.manager.cancel(owner_of(ctx), row.task_id, self._caller(ctx))
        return {} if modern else legacy_task(row)

    async def _result(self, ctx: ServerRequestContext[Any, Any],
                      params: TaskIdParams) -> dict[str, Any]:
        row = self._row(ctx, params.task_id)
        row = await self.manager.wait(owner_of(ctx), row.task_id, self._caller(ctx))
        if row.result is None:
            error: dict[str, Any] = json.loads(row.error) if row.error else {
                "code": -32603, "message": f"task {row.task_id} was {row.status}"}
            raise MCPError(int(error.get("code", -32603)), str(error.get("message")))
        result: dict[str, Any] = json.loads(row.result)
        result["_meta"] = {**result.get("_meta", {}), RELATED_TASK: {"taskId": row.task_id}}
        return result

    async def _list(self, ctx: ServerRequestContext[Any, Any], params: ListParams) -> dict[str, Any]:
        try:
            before = float(params.cursor) if params.cursor else None
        except ValueError:
            raise MCPError(INVALID_PARAMS, "invalid cursor") from None
        rows = self.manager.list(owner_of(ctx), before=before, limit=PAGE)
        answer: dict[str, Any] = {"tasks": [legacy_task(r) for r in rows]}
        if len(rows) == PAGE:
            answer["nextCursor"] = repr(rows[-1].created_at)
        return answer

    async def _update(self, ctx: ServerRequestContext[Any, Any],
                      params: UpdateParams) -> dict[str, Any]:
        self._row(ctx, params.task_id)  # our tasks never ask for input: nothing to deliver
        return {}
