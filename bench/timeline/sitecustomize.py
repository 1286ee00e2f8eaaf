"""Timeline stamps for ``bench/bench_timeline.py``; measurement only, never shipped.

Every Python process started with this folder on ``PYTHONPATH`` and ``TL_DIR`` set (the
MCP client, the bridge, the runtime, its kernel) appends ``<CLOCK_MONOTONIC ns> <tag>``
lines to ``$TL_DIR/<pid>.tl``.  The clock is one for all processes on a machine, so the
lines of all of them merge into one timeline of each call.  Functions are wrapped once
their modules are imported (a thread looks every 50 ms for the first 10 minutes): stamps on
entry (``name>``) and return (``name<``), or one stamp for the milestones below.  A
stamp costs a few microseconds (one ``write``).
"""

from __future__ import annotations

import inspect
import os
import sys
import threading
import time
from typing import Any

_DIR = os.environ.get("TL_DIR")
_fd = -1


def stamp(tag: str) -> None:
    if _fd >= 0:
        os.write(_fd, f"{time.monotonic_ns()} {tag}\n".encode())


def _msg_type(message: Any) -> str:
    if isinstance(message, str):
        return message
    if isinstance(message, dict):
        return str(message.get("msg_type") or message.get("header", {}).get("msg_type", "?"))
    return "?"


# (module, class or None for a module function, function, how): "both" stamps entry and
# return as Class.fn> / Class.fn<; a tag stamps once on entry; "!tag" once on return.
POINTS: list[tuple[str, str | None, str, str]] = [
    # the bridge
    ("smartcolab.mcp.transports.stdio", "_Lines", "data_received", "br_in"),
    ("smartcolab.mcp.transports.stdio", "_Writer", "write", "br_out"),
    ("mcp.shared.jsonrpc_dispatcher", "JSONRPCDispatcher", "_handle_request", "both"),
    ("mcp.server.runner", "ServerRunner", "_on_request", "both"),
    ("mcp.server.runner", "ServerRunner", "_serialize", "both"),
    ("smartcolab.client.journal", "Journal", "record_submit", "both"),
    ("smartcolab.client.http.connection", "RuntimeConnection", "request", "both"),
    ("smartcolab.client.http.lane", "_Connection", "data_received", "br_http_recv"),
    ("httpcore2._backends.anyio", "AnyIOStream", "read", "!br_http_recv"),
    # the runtime
    ("smartcolab.runtime.security.connections", "GuardedH11Protocol", "data_received",
     "rt_recv"),
    ("smartcolab.runtime.security.httptools_protocol", "GuardedHttpToolsProtocol",
     "data_received", "rt_recv"),
    ("smartcolab.runtime.security.connections", "CoalescingTransport", "flush", "rt_flush"),
    ("smartcolab.runtime.security.limits", "LimitsMiddleware", "__call__", "both"),
    ("smartcolab.runtime.state", "SessionManager", "submit", "both"),
    ("smartcolab.runtime.engine.store", "JobStore", "update", "both"),
]


def _wrap(owner: Any, name: str, how: str) -> None:
    orig = getattr(owner, name)
    label = f"{getattr(owner, '__name__', owner)}.{name}"
    before = label + ">" if how == "both" else (None if how.startswith("!") else how)
    after = label + "<" if how == "both" else (how[1:] if how.startswith("!") else None)
    if inspect.iscoroutinefunction(orig):
        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            if before:
                stamp(before)
            result = await orig(*args, **kwargs)
            if after:
                stamp(after)
            return result
    else:
        def wrapped(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            if before:
                stamp(before)
            result = orig(*args, **kwargs)
            if after:
                stamp(after)
            return result
    setattr(owner, name, wrapped)


def _wrap_session(session_cls: Any) -> None:
    """Every Jupyter message sent (``send:<type>``) and read (``deser:<type>``), in the
    runtime and the kernel alike; the runtime's own decoder too (``rt_dec:<type>``)."""
    send, deserialize = session_cls.send, session_cls.deserialize

    def sending(self: Any, stream: Any, msg_or_type: Any, *args: Any, **kwargs: Any) -> Any:
        stamp("send:" + _msg_type(msg_or_type))
        return send(self, stream, msg_or_type, *args, **kwargs)

    def reading(self: Any, *args: Any, **kwargs: Any) -> Any:
        message = deserialize(self, *args, **kwargs)
        stamp("deser:" + _msg_type(message))
        return message

    session_cls.send, session_cls.deserialize = sending, reading


def _patch(done: set[str]) -> None:
    modules = sys.modules
    for module, cls, name, how in POINTS:
        key = f"{module}:{cls}.{name}"
        owner = getattr(modules.get(module), cls or "", None) if cls else modules.get(module)
        if key not in done and owner is not None and hasattr(owner, name):
            done.add(key)
            _wrap(owner, name, how)
    session = getattr(modules.get("jupyter_client.session"), "Session", None)
    if "session" not in done and session is not None and hasattr(session, "deserialize"):
        done.add("session")
        _wrap_session(session)
    wire = modules.get("smartcolab.runtime.engine.wire")
    if "wire" not in done and wire is not None and hasattr(wire, "decode"):
        done.add("wire")
        decode = wire.decode

        def decoding(*args: Any, **kwargs: Any) -> Any:
            message = decode(*args, **kwargs)
            stamp("rt_dec:" + _msg_type(message))
            return message

        wire.decode = decoding


def _watch() -> None:
    done: set[str] = set()
    for _ in range(12_000):
        try:
            _patch(done)
        except Exception as exc:  # a module mid-import: try again on the next round
            stamp(f"patch-error {type(exc).__name__}")
        time.sleep(0.05)


if _DIR:
    _fd = os.open(os.path.join(_DIR, f"{os.getpid()}.tl"),
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    stamp("argv " + " ".join(sys.argv)[:100])
    threading.Thread(target=_watch, name="timeline-stamps", daemon=True).start()
