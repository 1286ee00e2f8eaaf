"""Authentication as ASGI middleware: every request is judged before its body is read.

``AuthGate`` sits inside the abuse limits (``limits.py``) and the audit log.  For
every path but the public ones (``/health``, the static ``/ui`` page) it

1. verifies the credential in the headers (bearer, or the HMAC headers, nonce spent);
2. applies the lockout, which counts only requests that *present* a credential and
   fail: requests without one (an ``<img>`` tag on any web page, ``/ui``'s first
   probe) are answered 401 and never counted, and a valid credential always passes,
   however many failures others made from the same address;
3. checks a signed body against its declared digest while it streams in (the body
   is bounded by the limits middleware): only a body that matches reaches the app,
   so even a route that never reads its body cannot act on a forged request.  (The streamed upload checks its digest itself, before
   anything reaches its destination, and answers 422 ``checksum_mismatch``.)
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smartcolab.runtime.security.audit import STATE_AUTH, STATE_CLIENT, AuditLog
from smartcolab.runtime.security.auth import Authenticator, Credential, presents_credential
from smartcolab.shared import routes
from smartcolab.shared.errors import Unauthorized, error_body

PUBLIC_PATHS = frozenset({routes.HEALTH, "/ui", "/ui/"})
PUBLIC_PREFIXES = ("/ui/",)
# (method, path) of routes that stream their body and verify its digest themselves.
SELF_VERIFIED_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {("PUT", routes.FILES_CONTENT), ("PUT", routes.FILES_UPLOAD_PART)})


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


@dataclass
class _Failures:
    times: list[float] = field(default_factory=list)
    locked_until: float = 0.0


class AuthLockout:
    """Counts failed credentials per client; too many inside a window lock the client out."""

    def __init__(self, failures: int, window_s: float, lockout_s: float,
                 max_clients: int) -> None:
        self.failures = failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.max_clients = max_clients
        self._clients: OrderedDict[str, _Failures] = OrderedDict()

    def remaining(self, client: str, now: float) -> float:
        """Seconds left in this client's lockout; 0 when it is not locked out."""
        entry = self._clients.get(client)
        return max(0.0, entry.locked_until - now) if entry else 0.0

    def failure(self, client: str, now: float) -> bool:
        """Record one failed authentication; True if it starts a lockout."""
        if self.failures <= 0:
            return False
        entry = self._clients.pop(client, None) or _Failures()
        entry.times = [t for t in entry.times if now - t < self.window_s]
        entry.times.append(now)
        started = False
        if len(entry.times) >= self.failures and entry.locked_until <= now:
            entry.locked_until = now + self.lockout_s
            entry.times.clear()
            started = True
        self._clients[client] = entry
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        return started

    def success(self, client: str, now: float) -> None:
        """A valid credential clears the failure count, but not a running lockout."""
        entry = self._clients.get(client)
        if entry is not None and entry.locked_until <= now:
            self._clients.pop(client, None)


def refusal(status: int, code: str, message: str, *, retry_after: float | None = None,
            details: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON error answer in the one error shape, for the middlewares."""
    extra = dict(details or {})
    out = dict(headers or {})
    if retry_after is not None:
        seconds = max(1, math.ceil(retry_after))
        extra["retry_after"] = seconds
        out["Retry-After"] = str(seconds)
    return JSONResponse(error_body(code, message, extra), status_code=status,
                        headers=out or None)


def _unauthorized(exc: Unauthorized) -> JSONResponse:
    return refusal(401, exc.code, exc.message, headers={"WWW-Authenticate": "Bearer"})


class AuthGate:
    """The authentication middleware of one runtime app (see the module docstring)."""

    def __init__(self, app: ASGIApp, auth: Authenticator, lockout: AuthLockout,
                 audit: AuditLog | None = None, clock: Any = time.monotonic) -> None:
        self.app = app
        self.auth = auth
        self.lockout = lockout
        self.audit = audit
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        client = str(state.get(STATE_CLIENT, "unknown"))
        headers = Headers(scope=scope)
        presented = presents_credential(headers)
        try:
            cred = self.auth.verify_headers(scope.get("method", ""), scope, headers)
        except Unauthorized as exc:
            answer = self._failed(scope, client, exc) if presented else _unauthorized(exc)
            await answer(scope, receive, send)
            return
        self.lockout.success(client, self.clock())
        state[STATE_AUTH] = cred.kind
        if cred.kind == "hmac" and \
                (scope.get("method"), scope.get("path")) not in SELF_VERIFIED_ROUTES:
            await self._with_digest(scope, receive, send, client, cred)
        else:
            await self.app(scope, receive, send)

    def _failed(self, scope: Scope, client: str, exc: Unauthorized) -> JSONResponse:
        """A presented credential failed: counted, and refused 429 while locked out."""
        now = self.clock()
        locked = self.lockout.remaining(client, now)
        if locked > 0:
            return refusal(429, "rate_limited", "too many failed authentications from this "
                           f"address; try again in {math.ceil(locked)} s with the right secret",
                           retry_after=locked, details={"reason": "auth_lockout"})
        if self.lockout.failure(client, now) and self.audit is not None:
            self.audit.event("lockout", client=client, seconds=self.lockout.lockout_s,
                             path=scope.get("path", ""))
        return _unauthorized(exc)

    async def _with_digest(self, scope: Scope, receive: Receive, send: Send, client: str,
                           cred: Credential) -> None:
        """Read the (size-limited) body, hashing as it streams in; the app sees it only if
        it matches, so even a route that never reads its body cannot act on a forged one."""
        digest = hashlib.sha256()
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left, or the body limit already answered 413
            body = message.get("body", b"")
            digest.update(body)
            chunks.append(body)
            if not message.get("more_body", False):
                break
        try:
            self.auth.verify_body(cred, digest.hexdigest())
        except Unauthorized as exc:
            scope["state"].pop(STATE_AUTH, None)
            await self._failed(scope, client, exc)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
