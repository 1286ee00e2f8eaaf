"""Abuse limits in front of the runtime app: one small pure-ASGI middleware.

In the order they are checked, for every HTTP request:

0. ``Host`` and ``Origin`` (403): names this runtime answers to (``hosts.py``), the
   defence against DNS rebinding and cross-origin pages;
1. the client address: the TCP peer, or, when the peer is a trusted local proxy
   (an ngrok or cloudflared agent on loopback), the first untrusted hop of
   ``X-Forwarded-For`` / ``Forwarded`` read from the right (``clientaddr.py``);
2. the IP allowlist (403), when CIDRs are configured;
3. the per-client rate limit, a token bucket (429 + ``Retry-After``);
4. header and query size limits (431 / 413) and the body size limit (413), checked
   on ``Content-Length`` and again on the bytes actually received.  The streamed
   upload route has its own, larger limit and is exempt from the body limit here.

The resolved client address is left in ``scope["state"]["sc_client"]`` for the
audit log and the authentication gate (``gate.py``, with the lockout), which runs
inside this middleware.  Responses made here use the one error shape of ``errors.error_body``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smartcolab.runtime.config import RuntimeConfig
from smartcolab.runtime.security.audit import STATE_CLIENT
from smartcolab.runtime.security.clientaddr import ClientResolver
from smartcolab.runtime.security.gate import refusal
from smartcolab.runtime.security.hosts import HostPolicy
from smartcolab.shared import routes

# (method, path) of routes that stream large bodies and enforce their own limit.
STREAMED_BODY_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {("PUT", routes.FILES_CONTENT), ("PUT", routes.FILES_UPLOAD_PART)})


class RateLimiter:
    """Token buckets per client, bounded in memory (least recently seen evicted)."""

    def __init__(self, rate_per_s: float, burst: int, max_clients: int) -> None:
        self.rate = rate_per_s
        self.burst = float(max(1, burst))
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def acquire(self, client: str, now: float) -> float:
        """Take one token; return 0 if allowed, else the seconds until one is free."""
        if self.rate <= 0:
            return 0.0
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


_refusal = refusal


class LimitsMiddleware:
    """The abuse limits of one runtime app (see the module docstring)."""

    def __init__(self, app: ASGIApp, config: RuntimeConfig, hosts: HostPolicy,
                 resolver: ClientResolver | None = None, clock: Any = time.monotonic) -> None:
        self.app = app
        self.config = config
        self.clock = clock
        self.resolver = resolver or ClientResolver(config.trusted_proxies, config.allow_cidrs)
        self.rate = RateLimiter(config.rate_limit_per_s, config.rate_burst,
                                config.max_tracked_clients)
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bad_name = self._foreign(scope)
        if bad_name is not None:
            await bad_name(scope, receive, send)
            return
        client = self.resolver.client(scope)
        scope.setdefault("state", {})[STATE_CLIENT] = client
        refusal = self._refuse(scope, client)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self._forward(scope, receive, send)

    def _foreign(self, scope: Scope) -> JSONResponse | None:
        """403 for a Host or Origin this runtime does not answer to (``hosts.py``)."""
        headers = Headers(scope=scope)
        host = headers.get("host")
        if not self.hosts.host_ok(host):
            return _refusal(403, "host_not_allowed", f"this runtime does not answer to the "
                            f"name {str(host)[:100]!r}; use its address, or start it with "
                            "--allow-host NAME (see SECURITY.md, DNS rebinding)")
        origin = headers.get("origin")
        if origin is not None and not self.hosts.origin_ok(origin, host,
                                                           scope.get("scheme", "http")):
            return _refusal(403, "origin_not_allowed", f"requests from pages at "
                            f"{origin[:100]!r} are refused; start the runtime with "
                            "--allow-origin ORIGIN to allow that site")
        return None

    def _refuse(self, scope: Scope, client: str) -> JSONResponse | None:
        cfg = self.config
        if not self.resolver.allowed(client):
            return _refusal(403, "forbidden", f"address {client} is not in this runtime's "
                            "allowlist (--allow-cidr); ask its owner to add it")
        now = self.clock()
        wait = self.rate.acquire(client, now)
        if wait > 0:
            return _refusal(429, "rate_limited", f"more than {cfg.rate_limit_per_s:g} requests/s "
                            "from this address; slow down and retry after the given delay",
                            retry_after=wait, details={"reason": "rate_limit"})
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        size = sum(len(k) + len(v) for k, v in headers)
        if size > cfg.max_header_bytes or len(headers) > cfg.max_headers:
            return _refusal(431, "headers_too_large", f"request headers are too large ({size} "
                            f"bytes in {len(headers)} headers; at most {cfg.max_header_bytes} "
                            f"bytes in {cfg.max_headers} headers)")
        query = len(scope.get("query_string", b""))
        if query > cfg.max_query_bytes:
            return _refusal(413, "payload_too_large", f"query string is {query} bytes; at most "
                            f"{cfg.max_query_bytes}: send large values in the body")
        if self._body_limited(scope):
            declared = Headers(scope=scope).get("content-length", "")
            if declared.isdigit() and int(declared) > cfg.max_body_bytes:
                return _body_refusal(cfg.max_body_bytes)
        return None

    def _body_limited(self, scope: Scope) -> bool:
        return (scope.get("method", ""), scope.get("path", "")) not in STREAMED_BODY_ROUTES

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.config.max_body_bytes if self._body_limited(scope) else None
        received = 0
        started = False
        refused = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if limit is not None and message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Answer 413 ourselves and tell the app the client went away:
                    # an exception raised here would surface from the app's task
                    # groups as an ExceptionGroup, i.e. a 500.
                    refused = True
                    if not started:
                        await _body_refusal(limit)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # our 413 is the answer; the app's own is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except Exception:
            if not refused:
                raise
            # The app failed on the body we cut off; the client already has its 413.


def _body_message(limit: int) -> str:
    return (f"request body is larger than {limit} bytes; upload large files with "
            "PUT /files/content (streamed) instead")


def _body_refusal(limit: int) -> JSONResponse:
    return _refusal(413, "payload_too_large", _body_message(limit))
