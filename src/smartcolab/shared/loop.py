"""The event loop our long-lived processes run on: uvloop when it is installed.

uvloop (libuv) runs the same asyncio programs with less overhead per callback, socket
read and write; on a short job that is most of what the runtime server and the
bridge do.  It is optional: without it, or with ``SMARTCOLAB_LOOP=asyncio`` (a way
out, and the A/B switch of ``bench/bench_latency.py``), the standard loop runs.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from smartcolab.shared.env import LOOP as LOOP_ENV

__all__ = ["LOOP_ENV", "anyio_options", "run", "uvloop_wanted"]

T = TypeVar("T")


def uvloop_wanted() -> bool:
    """True when uvloop is importable and not switched off by ``SMARTCOLAB_LOOP=asyncio``."""
    if os.environ.get(LOOP_ENV, "").strip().lower() == "asyncio":
        return False
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on uvloop when it is wanted."""
    if uvloop_wanted():
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def anyio_options() -> dict[str, Any]:
    """``backend_options`` for ``anyio.run``: uvloop when it is wanted."""
    return {"use_uvloop": True} if uvloop_wanted() else {}
