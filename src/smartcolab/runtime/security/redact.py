"""Keeping the runtime's secret out of everything it sends or writes.

The secret is printed once by the banner and returned once by ``POST /auth/rotate``;
anywhere else (job outputs that echo the environment, probe answers, the audit log)
it is replaced by ``[redacted]``.  Rotated-out secrets stay on the list: an old
output that echoed one is still worth hiding.
"""

from __future__ import annotations

import threading
from typing import TypeVar

from pydantic import BaseModel

REDACTED = "[redacted]"
# Shorter values would redact ordinary words; a real secret is 43 characters.
MIN_SECRET_CHARS = 8
M = TypeVar("M", bound=BaseModel)


class Redactor:
    """Replaces every known secret in text; thread-safe, cheap when none occurs."""

    def __init__(self, *secrets: str) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Start redacting ``secret`` (ignored when too short to be one)."""
        if len(secret) < MIN_SECRET_CHARS:
            return
        with self._lock:
            if secret not in self._secrets:
                # Longest first, so a secret containing another is replaced whole.
                self._secrets = tuple(sorted((*self._secrets, secret), key=len, reverse=True))

    def redact(self, text: str) -> str:
        """``text`` with every known secret replaced by ``[redacted]``."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def redact_bytes(self, data: bytes) -> bytes:
        for secret in self._secrets:
            raw = secret.encode()
            if raw in data:
                data = data.replace(raw, REDACTED.encode())
        return data

    def redact_model(self, model: M) -> M:
        """A copy of a response model with the secret removed from every string in it."""
        raw = model.model_dump_json()
        clean = self.redact(raw)
        if clean == raw:
            return model
        return type(model).model_validate_json(clean)
