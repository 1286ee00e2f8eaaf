"""The last step of a download: its sha256 checked, then published under its name.

A ``.part`` file is never a finished file: it takes its name only if its digest is
the runtime's, and that step runs to its end even if the caller is cancelled meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio

from smartcolab.client.local_files import discard, publish
from smartcolab.client.transfer.source import Fetched
from smartcolab.shared.errors import ChecksumMismatch


def verify_and_publish(got: Fetched, expected_sha256: str | None, final: Path, overwrite: bool,
                       remote: str) -> None:
    """Publish a fetched ``.part`` under its name only if its sha256 is the runtime's."""
    if expected_sha256 != got.sha256:
        discard(got.part, got.meta)
        raise ChecksumMismatch(
            f"'{remote[:200]}' arrived with sha256 {got.sha256} but the runtime has "
            f"{expected_sha256} (it may have changed meanwhile); the partial file was removed, "
            "download again", details={"local": got.sha256, "remote": expected_sha256})
    publish(got.part, final, overwrite)
    discard(got.meta)


T = TypeVar("T")


async def run_to_end(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` in a thread to its end even if the caller is cancelled meanwhile.

    A thread cannot be cancelled: a cancel that lands while it runs would tell the
    caller "cancelled" while the thread goes on (publishing a file, dropping its
    record) behind its back.  So the caller waits for it, shielded, and the cancel
    takes effect once it is done: state is either as before or wholly changed.
    """
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    cancelled: asyncio.CancelledError | None = None
    with anyio.CancelScope(shield=True):
        while not task.done():
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError as exc:  # a plain task.cancel(): still wait
                cancelled = exc
    if cancelled is not None:
        if not task.cancelled():
            task.exception()  # retrieved: the cancel is what propagates
        raise cancelled
    result = task.result()
    await anyio.lowlevel.checkpoint_if_cancelled()
    return result


async def publish_verified(got: Fetched, expected_sha256: str | None, final: Path,
                           overwrite: bool, remote: str) -> None:
    """:func:`verify_and_publish` as one step a cancel cannot cut in two."""
    await run_to_end(verify_and_publish, got, expected_sha256, final, overwrite, remote)
