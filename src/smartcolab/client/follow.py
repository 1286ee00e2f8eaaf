"""Submit a job and follow it with long-polls: the one follower of the MCP tools, the CLI and
chunked operations.

* ``submit`` creates the session on first use (like opening a new notebook) and lets
  the first slice of waiting ride on the submission: one round trip for quick code.
* ``follow`` long-polls ``get_job(wait=.., since=cursor)`` until the job ends or an
  optional budget is spent (the job then keeps running remotely); ``on_view`` sees
  every polled view (to print, record or report progress).
* When the caller is cancelled (MCP cancellation, Ctrl-C, a stopped chunked operation)
  the remote job is cancelled too, shielded and bounded, unless
  ``cancel_on_cancel=False`` (a wait that must never stop the job).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from smartcolab.client.backend import JobsApi
from smartcolab.shared.errors import SessionExists, SessionNotFound
from smartcolab.shared.protocol import TERMINAL_STATUSES, JobSubmit, JobView

__all__ = ["CANCEL_GRACE_S", "Follower", "new_job_id"]

log = logging.getLogger(__name__)

CANCEL_GRACE_S = 10.0
# A poll that returns faster than this without output means the runtime did not hold
# the long-poll: pause instead of spinning.
FAST_POLL_FLOOR_S = 0.05
SPIN_PAUSE_S = 0.2

OnView = Callable[[JobView], Awaitable[None]]
OnCancelled = Callable[[JobView], None]


def new_job_id(prefix: str = "j") -> str:
    """A client-chosen id: a retried submission is recognised and never runs twice."""
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def _interrupted() -> tuple[type[BaseException], ...]:
    # Ctrl-C may arrive as KeyboardInterrupt where the event loop does not turn it into
    # a cancellation (Python 3.10).
    return (anyio.get_cancelled_exc_class(), KeyboardInterrupt)


@dataclass
class Follower:
    """Submits and follows jobs on one runtime.

    ``poll_s``: the longest single long-poll (also the first wait, on the submission).
    ``cancel_on_cancel``: cancel the remote job when the caller is cancelled.
    ``on_cancelled``: told the job's view when such a cancel reached the runtime.
    """

    api: JobsApi
    poll_s: float
    cancel_on_cancel: bool = True
    cancel_grace_s: float = CANCEL_GRACE_S
    on_cancelled: OnCancelled | None = None

    async def submit(self, job: JobSubmit, *, wait: float | None = None) -> JobView:
        """Submit ``job`` (waiting up to ``wait``, default ``poll_s``), creating its session on
        first use."""
        first = self.poll_s if wait is None else wait
        try:
            try:
                return await self.api.submit(job, wait=first)
            except SessionNotFound:
                with contextlib.suppress(SessionExists):
                    await self.api.create_session(job.session)
                return await self.api.submit(job, wait=first)
        except _interrupted():
            await self._cancel_remote(job.job_id)
            raise

    async def follow(self, view: JobView, *, budget_s: float | None = None,
                     on_view: OnView | None = None) -> JobView:
        """Long-poll ``view``'s job until it ends, or until ``budget_s`` (None: no limit) is spent.

        ``on_view`` is awaited with every polled view (not with ``view`` itself).
        """
        deadline = None if budget_s is None else time.monotonic() + budget_s
        try:
            while view.status not in TERMINAL_STATUSES:
                wait = self.poll_s
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    wait = min(wait, remaining)
                started = time.monotonic()
                view = await self.api.get_job(view.job_id, wait=wait, since=view.cursor)
                if on_view is not None:
                    await on_view(view)
                if time.monotonic() - started < FAST_POLL_FLOOR_S and not view.output:
                    pause = SPIN_PAUSE_S if deadline is None else min(
                        SPIN_PAUSE_S, max(0.0, deadline - time.monotonic()))
                    await anyio.sleep(pause)
        except _interrupted():
            await self._cancel_remote(view.job_id)
            raise
        return view

    async def run(self, job: JobSubmit, *, budget_s: float | None = None,
                  on_view: OnView | None = None) -> JobView:
        """``submit`` then ``follow`` (the budget counts from the submission)."""
        started = time.monotonic()
        view = await self.submit(job)
        if on_view is not None:
            await on_view(view)
        left = None if budget_s is None else max(0.0, budget_s - (time.monotonic() - started))
        return await self.follow(view, budget_s=left, on_view=on_view)

    async def _cancel_remote(self, job_id: str) -> None:
        """The caller was cancelled: stop the remote job too (shielded, bounded, best effort)."""
        if not self.cancel_on_cancel:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.cancel_grace_s):
            try:
                view = await self.api.cancel_job(job_id)
            except Exception as exc:  # the caller's cancellation must go on regardless
                log.warning("could not cancel job %s: %s", job_id, exc)
                return
            log.info("caller cancelled: cancelled job %s", job_id)
            if self.on_cancelled is not None:
                self.on_cancelled(view)
