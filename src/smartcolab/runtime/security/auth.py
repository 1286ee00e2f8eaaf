"""Request authentication: HMAC-signed requests or a bearer token.

A signed request carries ``X-SC-Timestamp``, ``X-SC-Nonce``, ``X-SC-Content-SHA256``
and ``X-SC-Signature`` = HMAC-SHA256(secret, canonical_request(...)).  The timestamp
must be within ±5 minutes and a nonce is accepted once inside that window, so a
captured request cannot be replayed.  ``Authorization: Bearer <secret>`` is accepted
too, for curl and browsers.  All comparisons are constant-time.

Verification happens in ``gate.AuthGate`` before any body is read: the headers
carry everything but the body digest, which is checked while the body streams in.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from fastapi import Request
from starlette.datastructures import Headers
from starlette.types import Scope

from smartcolab.runtime.security.audit import STATE_AUTH
from smartcolab.shared.errors import Unauthorized
from smartcolab.shared.protocol import (
    EMPTY_SHA256,
    H_CONTENT_SHA256,
    H_NONCE,
    H_SIGNATURE,
    H_TIMESTAMP,
    SIGNATURE_WINDOW_S,
    canonical_request,
    sign,
)

MAX_NONCES = 200_000
# Our client sends lowercase hex and uppercase methods; anything else is refused
# rather than normalised, so no two different byte strings carry one signature.
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HELP = "send 'Authorization: Bearer <secret>' or a signed request (see README, 'Authentication')"


class NonceCache:
    """Nonces seen inside the signature window; bounded, oldest evicted first."""

    def __init__(self, window_s: float = SIGNATURE_WINDOW_S, max_size: int = MAX_NONCES) -> None:
        self.window_s = window_s
        self.max_size = max_size
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, nonce: str, now: float) -> bool:
        """Record ``nonce``; False if it was already seen inside the window."""
        with self._lock:
            horizon = now - 2 * self.window_s
            while self._seen and next(iter(self._seen.values())) < horizon:
                self._seen.popitem(last=False)
            if nonce in self._seen:
                return False
            while len(self._seen) >= self.max_size:
                self._seen.popitem(last=False)
            self._seen[nonce] = now
            return True


@dataclass(frozen=True)
class Credential:
    """A credential whose headers verified: how, and (signed) the body digest it declares."""

    kind: Literal["bearer", "hmac"]
    declared_sha256: str | None = None


def presents_credential(headers: Headers) -> bool:
    """True when a request carries a credential at all (right or wrong).

    Only such requests count towards the lockout: an ``<img>`` tag on a web page
    can make the browser send requests, but never with these headers.
    """
    return "authorization" in headers or H_SIGNATURE in headers


class Authenticator:
    """Verifies the credential of every request but the public ones (``security/gate.py``)."""

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self.nonces = NonceCache()

    def rotate(self, new_secret: str) -> None:
        """Replace the secret: requests signed with the old one fail from now on."""
        self._secret = new_secret

    async def require(self, request: Request) -> None:
        """Verify a whole request (headers, then body): the verifier in one call."""
        cred = self.verify_headers(request.method, request.scope, request.headers)
        if cred.kind == "hmac":
            self.verify_body(cred, hashlib.sha256(await request.body()).hexdigest())

    @staticmethod
    def verify_body(cred: Credential, digest: str) -> None:
        """A signed request's body must hash to the digest its signature covers."""
        if cred.kind == "hmac" and not hmac.compare_digest(digest, cred.declared_sha256 or ""):
            raise Unauthorized(f"body does not match its signed {H_CONTENT_SHA256} header")

    def verify_headers(self, method: str, scope: Scope, headers: Headers) -> Credential:
        """Check the credential carried in the headers; no body is read.

        For a signed request the nonce is spent here, before the body arrives: a
        request is authenticated (or refused) before the server reads a byte of it.
        """
        authz = headers.get("authorization")
        if authz is not None:
            scheme, _, token = authz.partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(
                token.strip().encode(), self._secret.encode()
            ):
                return Credential("bearer")
            raise Unauthorized(f"the bearer token is wrong; {_HELP}")
        sig = headers.get(H_SIGNATURE)
        if sig is None:
            raise Unauthorized(f"this endpoint needs the runtime's secret; {_HELP}")
        ts = headers.get(H_TIMESTAMP, "")
        nonce = headers.get(H_NONCE, "")
        declared = headers.get(H_CONTENT_SHA256, EMPTY_SHA256)
        if not _HEX64.fullmatch(declared):
            raise Unauthorized(f"{H_CONTENT_SHA256} must be 64 lowercase hex digits")
        if method != method.upper():
            raise Unauthorized("signed requests must use an uppercase HTTP method")
        if not nonce or len(nonce) > 128:
            raise Unauthorized("signed request without a valid nonce")
        try:
            ts_value = float(ts)
        except ValueError:
            ts_value = math.nan
        if not math.isfinite(ts_value):  # NaN would pass any window comparison
            raise Unauthorized("signed request without a valid timestamp")
        now = time.time()
        if abs(now - ts_value) > SIGNATURE_WINDOW_S:
            raise Unauthorized(
                f"request timestamp is {now - ts_value:+.0f} s off the runtime's clock "
                f"(allowed ±{SIGNATURE_WINDOW_S:.0f} s): fix the clock or retry"
            )
        raw_path = scope.get("raw_path", b"").decode("latin-1") or scope.get("path", "")
        raw_query = scope.get("query_string", b"").decode("latin-1")
        expected = sign(self._secret,
                        canonical_request(method, raw_path, raw_query, declared, ts, nonce))
        if not hmac.compare_digest(expected.encode(), sig.encode("latin-1")):
            raise Unauthorized(f"request signature does not match; {_HELP}")
        if not self.nonces.add(nonce, now):
            raise Unauthorized("nonce already used: a replayed request is refused")
        return Credential("hmac", declared)


async def require_gate(request: Request) -> None:
    """Route dependency: the request passed ``AuthGate`` (defence in depth).

    ``async`` so that FastAPI calls it on the event loop: a plain ``def`` dependency is
    run in a worker thread, a thread hop on every request (~0.3 ms on a loaded machine).
    """
    if request.scope.get("state", {}).get(STATE_AUTH) is None:
        raise Unauthorized(f"this endpoint needs the runtime's secret; {_HELP}")
