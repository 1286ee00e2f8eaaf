"""How far each MCP client has been shown each job's output.

A client is one stdio bridge (its one MCP session), or one MCP session of the HTTP
transport (its ``mcp-session-id``, on the handshake-era wire).  The 2026 HTTP wire has no
sessions and no other per-client identity (``clientInfo`` names the application, not the
instance): the clients of one HTTP bridge on that wire share one cursor, ``http``.  Whatever ``run_code_quick``, ``run_code_long`` or
``get_job`` returned counts as shown; the next ``get_job`` returns only what comes
after (``from_start=true`` repeats from the beginning).

The cursors are kept in the bridge's journal under the bridge's client lease, so a
stdio client whose bridge restarts (the same lease name comes back) is not shown the
same output twice.  An HTTP session id does not outlive the bridge: a new session is a
new client and starts from the beginning.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

STDIO = "stdio"


class ShownStore(Protocol):
    def load_shown(self, observer: str, client: str, job_id: str) -> int | None: ...
    def save_shown(self, observer: str, client: str, job_id: str, cursor: int) -> None: ...


def client_key(ctx: Any) -> str:
    """The MCP client a tool call comes from: ``stdio``, or ``http:<session id>``."""
    if ctx is None:
        return STDIO
    try:
        request = ctx.request_context.request
    except (AttributeError, ValueError):  # outside a request
        return STDIO
    if request is None:
        return STDIO
    headers = getattr(request, "headers", None)
    session = headers.get("mcp-session-id") if headers is not None else None
    return f"http:{session}" if session else "http"


class ShownCursors:
    """Per client and job, the output cursor up to which that client has been shown output."""

    def __init__(self, store: ShownStore | None = None,
                 observer: Callable[[], str] | None = None) -> None:
        self._store = store
        self._observer = observer or (lambda: "bridge")
        self._mem: dict[tuple[str, str], int] = {}

    def get(self, ctx: Any, job_id: str) -> int | None:
        key = (client_key(ctx), job_id)
        if key not in self._mem and self._store is not None:
            try:
                stored = self._store.load_shown(self._observer(), *key)
            except sqlite3.Error as exc:  # the cursor only saves repeats: never fail a call
                log.warning("could not read the shown-output cursor of %s: %s", job_id, exc)
                stored = None
            if stored is not None:
                self._mem[key] = stored
        return self._mem.get(key)

    def put(self, ctx: Any, job_id: str, cursor: int) -> None:
        key = (client_key(ctx), job_id)
        if self._mem.get(key) == cursor:
            return
        self._mem[key] = cursor
        if self._store is not None:
            try:
                self._store.save_shown(self._observer(), *key, cursor)
            except sqlite3.Error as exc:
                log.warning("could not save the shown-output cursor of %s: %s", job_id, exc)
