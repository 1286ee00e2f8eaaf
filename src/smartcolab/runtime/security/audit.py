"""The audit trail: every authenticated request and every job, as JSON lines.

Written to ``state_dir/audit.log`` and rotated by size (``audit.log.1`` ... as
``logging.handlers.RotatingFileHandler`` names them).  A request line holds the method, path
(no query: it may carry file names, not secrets, but it is noise), client address,
how it authenticated, status and duration; a job line holds the job id, client,
session, SHA-256 digest of the code (never the code itself), status and duration.
Failed authentications and lockouts are recorded too.  Every line goes through the
redactor, so a secret cannot land here even by mistake.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smartcolab.runtime.security.redact import Redactor

AUDIT_FILE = "audit.log"
STATE_AUTH = "sc_auth"  # set by gate.AuthGate: "bearer" or "hmac"
STATE_CLIENT = "sc_client"  # set by limits.LimitsMiddleware


def code_digest(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


class _RotatingLines:
    """Appends lines to a file, rotated by size as ``RotatingFileHandler`` rotates
    (``audit.log`` -> ``audit.log.1`` ... ``.{backups}``), without the logging machinery:
    two lines per job went through a LogRecord, the caller's frame lookup, two formats
    and two stats each, about two thirds of an audit line's cost.  A write that fails
    (a full disk) drops its line and says so on stderr once per 30 s, not per line.
    """

    REPORT_EVERY_S = 30.0

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._size = 0
        self._last_error = float("-inf")
        self._fh: TextIO | None = self._open()  # created at start, as before

    def _open(self) -> TextIO:
        fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._size = fh.tell()
        return fh

    def _rotate(self) -> None:
        self.close()
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
            if self.path.exists():
                self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)

    def write(self, line: str) -> None:
        data = line + "\n"
        size = len(data.encode("utf-8"))
        try:
            if self._fh is None:
                self._fh = self._open()
            if self.max_bytes > 0 and self._size > 0 and self._size + size > self.max_bytes:
                self._rotate()
                self._fh = self._open()
            self._fh.write(data)
            self._fh.flush()
            self._size += size
        except OSError as exc:
            now = time.monotonic()
            if now - self._last_error >= self.REPORT_EVERY_S:
                self._last_error = now
                sys.stderr.write(f"smartcolab: the audit log could not be written ({exc}); "
                                 "lines are dropped until it can (reported every 30 s)\n")

    def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            with contextlib.suppress(OSError):
                fh.close()


class AuditLog:
    """An append-only JSON-lines file with size-based rotation."""

    def __init__(self, state_dir: Path, *, max_bytes: int, backups: int,
                 redactor: Redactor | None = None) -> None:
        self.path = state_dir / AUDIT_FILE
        self.redactor = redactor or Redactor()
        state_dir.mkdir(parents=True, exist_ok=True)
        # A file of our own per log: two runtimes in one process (tests, notebooks)
        # never share one.
        self._lines = _RotatingLines(self.path, max_bytes=max_bytes, backups=backups)

    def event(self, kind: str, **fields: Any) -> None:
        """Append one line ``{"ts", "event", **fields}``."""
        line = json.dumps({"ts": round(time.time(), 3), "event": kind, **fields},
                          default=str, ensure_ascii=False)
        self._lines.write(self.redactor.redact(line))

    def job(self, *, job_id: str, client: str | None, session: str, code: str, status: str,
            duration_s: float | None) -> None:
        """A job reached a final status."""
        self.event("job", job_id=job_id, client=client, session=session,
                   code_sha256=code_digest(code), status=status,
                   duration_s=None if duration_s is None else round(duration_s, 3))

    def close(self) -> None:
        self._lines.close()


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
