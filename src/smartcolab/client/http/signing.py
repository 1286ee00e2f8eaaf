"""How every request to our runtime is signed (``HmacAuth``, an httpx2 ``Auth``).

The signature is an HMAC of ``protocol.canonical_request``: method, path, query, the
body's sha256, a timestamp and a fresh nonce, so a retry is signed afresh.  A streamed
body is never read here: its sender declares its digest in ``X-SC-Content-SHA256``.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Generator

import httpx2

from smartcolab.shared.protocol import (
    EMPTY_SHA256,
    H_CONTENT_SHA256,
    H_NONCE,
    H_SIGNATURE,
    H_TIMESTAMP,
    canonical_request,
    sign,
)


class HmacAuth(httpx2.Auth):
    """Signs each request; a streamed body must declare its digest in a header."""

    # Never buffer a body here: a streamed upload (a file of gigabytes) declares its
    # digest in X-SC-Content-SHA256 instead; bytes and JSON bodies are already in memory.
    requires_request_body = False

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        declared = request.headers.get(H_CONTENT_SHA256)
        if declared is None:
            declared = body_digest(request.content if _has_buffered_body(request) else b"")
            request.headers[H_CONTENT_SHA256] = declared
        request.headers.update(signature_headers(
            self._secret, request.method, request.url.raw_path.decode("latin-1"), declared))
        yield request


def body_digest(body: bytes) -> str:
    """The sha256 a request declares for its body (the empty body's, without hashing)."""
    return hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256


def signature_headers(secret: str, method: str, target: str, digest: str) -> dict[str, str]:
    """The timestamp, nonce and signature headers of one request (``target``: path?query)."""
    path, _, query = target.partition("?")
    ts = f"{time.time():.3f}"
    nonce = secrets.token_hex(16)
    return {H_TIMESTAMP: ts, H_NONCE: nonce,
            H_SIGNATURE: sign(secret, canonical_request(method, path, query, digest, ts, nonce))}


def _has_buffered_body(request: httpx2.Request) -> bool:
    try:
        request.content  # noqa: B018 - raises if the body is a stream
    except httpx2.RequestNotRead:
        return False
    return True
