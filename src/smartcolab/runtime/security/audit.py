"""The audit trail: every authenticated request and every job, as JSON lines.

Written to ``state_dir/audit.log`` and rotated by size
(``logging.handlers.RotatingFileHandler``).  A request line holds the method, path
(no query: it may carry file names, not secrets, but it is noise), client address,
how it authenticated, status and duration; a job line holds the job id, client,
session, SHA-256 digest of the code (never the code itself), status and duration.
Failed authentications and lockouts are recorded too.  Every line goes through the
redactor, so a secret cannot land here even by mistake.
"""

from __future__ import annotations

import hashlib
import json
import logging
import logging.handlers
import time
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smartcolab.runtime.security.redact import Redactor

AUDIT_FILE = "audit.log"
STATE_AUTH = "sc_auth"  # set by gate.AuthGate: "bearer" or "hmac"
STATE_CLIENT = "sc_client"  # set by limits.LimitsMiddleware


def code_digest(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


class _QuietRotatingHandler(logging.handlers.RotatingFileHandler):
    """A full disk must not print a traceback per audit line (logging's default)."""

    _last_error = 0.0

    def handleError(self, record: logging.LogRecord) -> None:
        now = time.monotonic()
        if now - self._last_error >= 30.0:
            self._last_error = now
            import sys

            exc = sys.exc_info()[1]
            sys.stderr.write(f"smartcolab: the audit log could not be written ({exc}); "
                             "lines are dropped until it can (reported every 30 s)\n")


class AuditLog:
    """An append-only JSON-lines file with size-based rotation."""

    def __init__(self, state_dir: Path, *, max_bytes: int, backups: int,
                 redactor: Redactor | None = None) -> None:
        self.path = state_dir / AUDIT_FILE
        self.redactor = redactor or Redactor()
        state_dir.mkdir(parents=True, exist_ok=True)
        self._handler = _QuietRotatingHandler(
            self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        # A logger of our own, outside the global registry: two runtimes in one
        # process (tests, notebooks) never share a file.
        self._logger = logging.Logger(f"smartcolab.audit.{id(self)}", logging.INFO)
        self._logger.addHandler(self._handler)
        self._logger.propagate = False

    def event(self, kind: str, **fields: Any) -> None:
        """Append one line ``{"ts", "event", **fields}``."""
        line = json.dumps({"ts": round(time.time(), 3), "event": kind, **fields},
                          default=str, ensure_ascii=False)
        self._logger.info(self.redactor.redact(line))

    def job(self, *, job_id: str, client: str | None, session: str, code: str, status: str,
            duration_s: float | None) -> None:
        """A job reached a final status."""
        self.event("job", job_id=job_id, client=client, session=session,
                   code_sha256=code_digest(code), status=status,
                   duration_s=None if duration_s is None else round(duration_s, 3))

    def close(self) -> None:
        self._logger.removeHandler(self._handler)
        self._handler.close()


class AuditMiddleware:
    """Records every authenticated request and every failed authentication."""

    def __init__(self, app: ASGIApp, audit: AuditLog) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500

        async def watched_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            state = scope.get("state", {})
            auth = state.get(STATE_AUTH)
            if auth is not None or status == 401:
                self.audit.event(
                    "request" if auth is not None else "auth_failed",
                    method=scope.get("method"), path=scope.get("path"),
                    client=state.get(STATE_CLIENT), auth=auth, status=status,
                    duration_ms=round((time.monotonic() - started) * 1000, 1))
