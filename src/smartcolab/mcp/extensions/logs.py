"""MCP logging: ``logging/setLevel``, and the bridge's events as ``notifications/message``.

What is sent (each with a logger name the client can filter on):

* ``smartcolab.jobs``: job lifecycle, read off every job tool result (info: submitted /
  still running / ended; warning when it failed, timed out or was lost);
* ``smartcolab.epochs``: a runtime session lost its state (warning);
* everything the bridge logs through Python ``logging`` under ``smartcolab`` at info
  or above while it serves a request (retries and reconnections to a runtime,
  warnings), and from the task runners that request started.

Levels: on 2025-11-25 and older the connection's ``logging/setLevel`` (default
``warning`` until the client sets one); on 2026-07-28 the SDK applies the request's
own ``io.modelcontextprotocol/logLevel`` (nothing unless the request opted in).
Sending is best effort: a log notification never fails a call.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import warnings
import weakref
from collections.abc import Mapping
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.types import INVALID_PARAMS, SetLevelRequestParams
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
DEFAULT_LEVEL = "warning"
_PY_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
              logging.ERROR: "error", logging.CRITICAL: "critical"}
BAD_JOB_STATUSES = ("failed", "timed_out", "lost")

# Where a record logged now goes: the session and the lowest level it wants.
_target: contextvars.ContextVar[tuple[ServerSession, str] | None] = contextvars.ContextVar(
    "smartcolab_mcp_log_target", default=None)
_pending: set[asyncio.Task[None]] = set()


def _connection_key(session: ServerSession) -> Any:
    # One level per client connection; the session object is per request.
    return getattr(session, "_connection", session)


class LogLevels:
    """The level each connection asked for with ``logging/setLevel``."""

    def __init__(self) -> None:
        self._levels: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()

    def set_level(self, ctx: ServerRequestContext[Any, Any]) -> None:
        try:
            params = SetLevelRequestParams.model_validate(ctx.params or {}, by_name=False)
        except ValidationError as exc:
            raise MCPError(INVALID_PARAMS, f"logging/setLevel: level must be one of "
                           f"{', '.join(LEVELS)}") from exc
        self._levels[_connection_key(ctx.session)] = params.level

    def threshold(self, ctx: ServerRequestContext[Any, Any]) -> str:
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return "debug"  # the SDK's per-request gate decides
        return self._levels.get(_connection_key(ctx.session), DEFAULT_LEVEL)


def wanted(level: str, threshold: str) -> bool:
    return LEVELS.index(level) >= LEVELS.index(threshold)


async def send(session: ServerSession, threshold: str, level: str, logger: str,
               data: Any) -> None:
    if not wanted(level, threshold):
        return
    try:
        await session.send_log_message(level, data, logger)  # type: ignore[arg-type]
    except Exception as exc:  # never fail a call over a log line
        logging.getLogger(__name__).debug("log notification not sent: %s", exc)


class ForwardHandler(logging.Handler):
    """Python log records of the bridge -> the MCP client of the current request."""

    def emit(self, record: logging.LogRecord) -> None:
        target = _target.get()
        if target is None or record.name.startswith(__name__):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a worker thread: no loop to send from
            return
        session, threshold = target
        level = _PY_LEVELS.get(record.levelno, "info")
        task = loop.create_task(send(session, threshold, level, record.name,
                                     self.format(record)))
        _pending.add(task)
        task.add_done_callback(_pending.discard)


def job_events(result: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(level, logger, text) for the job events a tool result shows."""
    data = result.get("structuredContent")
    if not isinstance(data, Mapping):
        return []
    events: list[tuple[str, str, str]] = []
    job_id, status = data.get("job_id"), data.get("status")
    if isinstance(job_id, str) and isinstance(status, str):
        level = "warning" if status in BAD_JOB_STATUSES else "info"
        events.append((level, "smartcolab.jobs",
                       f"job {job_id} on runtime {data.get('runtime')!r}: {status}"))
    notes = data.get("notes")
    for note in notes if isinstance(notes, list) else []:
        if isinstance(note, str) and note.startswith("STATE LOST"):
            events.append(("warning", "smartcolab.epochs", note))
    if data.get("state_lost") is True:
        events.append(("warning", "smartcolab.epochs",
                       f"job {job_id}: the kernel restarted or died; its variables are gone"))
    return events


class LogForwarder:
    """Middleware: ``logging/setLevel`` and the capability on the handshake wires; where
    log records go during a request; job events after a tool call.

    (``logging/setLevel`` is served here, not as a registered handler: the SDK would
    then also route it on 2026-07-28, where the method no longer exists.)
    """

    def __init__(self, levels: LogLevels) -> None:
        self.levels = levels

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
                       ) -> HandlerResult:
        if ctx.request_id is None:
            return await call_next(ctx)
        if ctx.method == "initialize":
            result = await call_next(ctx)
            if isinstance(result, dict):
                result["capabilities"]["logging"] = {}
            return result
        if ctx.method == "logging/setLevel" and ctx.protocol_version not in \
                MODERN_PROTOCOL_VERSIONS:
            self.levels.set_level(ctx)
            return {}
        threshold = self.levels.threshold(ctx)
        token = _target.set((ctx.session, threshold))
        try:
            result = await call_next(ctx)
        finally:
            _target.reset(token)
        if ctx.method == "tools/call" and isinstance(result, Mapping):
            for level, logger, text in job_events(result):
                await send(ctx.session, threshold, level, logger, text)
        return result


def install(levels: LogLevels) -> None:
    """Forward the ``smartcolab`` loggers' info-and-above records (once per process)."""
    # Deprecated at 2026-07-28 only; for older clients it is the way to send logs.
    warnings.filterwarnings("ignore", category=MCPDeprecationWarning, module=__name__)
    root = logging.getLogger("smartcolab")
    if not any(isinstance(h, ForwardHandler) for h in root.handlers):
        handler = ForwardHandler(logging.INFO)
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
