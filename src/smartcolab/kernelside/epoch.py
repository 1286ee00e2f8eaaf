"""The kernel's epoch token: drawn once per kernel process and kept in ``builtins``.

A kernel restart or crash drops it, so a new token means every variable is gone.  It
lives in ``builtins`` (not the user's namespace): ``%reset`` and ``del`` leave it alone.
"""

from __future__ import annotations

import builtins
import uuid

NAME = "__smartcolab_epoch__"


def epoch() -> str:
    """Entry point in a kernel: this process's token (drawn on first use)."""
    token: str = vars(builtins).setdefault(NAME, uuid.uuid4().hex[:12])
    return token
