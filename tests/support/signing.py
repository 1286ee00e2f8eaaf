"""Signed request headers written by hand, to test the runtime's checks one by one."""

from __future__ import annotations

import hashlib
import time

from smartcolab.shared.protocol import (
    H_CONTENT_SHA256,
    H_NONCE,
    H_SIGNATURE,
    H_TIMESTAMP,
    canonical_request,
    sign,
)


def signed_headers(secret: str, method: str, path: str, query: str = "", body: bytes = b"",
                   ts: float | None = None, nonce: str = "n-1") -> dict[str, str]:
    digest = hashlib.sha256(body).hexdigest()
    stamp = f"{time.time() if ts is None else ts:.3f}"
    return {H_TIMESTAMP: stamp, H_NONCE: nonce, H_CONTENT_SHA256: digest,
            H_SIGNATURE: sign(secret, canonical_request(method, path, query, digest, stamp, nonce))}
