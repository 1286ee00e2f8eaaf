"""How a running cell is stopped, and what its ending means: one policy for both backends.

Our runtime server (``runtime/engine/kernel.py``, signals through ``jupyter_client``) and
the bridge driving a plain Jupyter Server (``client/jupyter/jobs.py``, REST calls) both
follow ``StopPolicy``:

* at the deadline, or on a stop request (cancel), the kernel gets SIGINT, but only once
  the cell has started (an idle kernel, or a cell still being set up, ignores it), and
  again every ``repeat_s`` (one early SIGINT can be missed) until the cell raises or
  replies;
* ``grace_s`` after the first attempt the kernel is restarted: native code (a C loop)
  ignores SIGINT, and only a restart stops it;
* a ``restart`` or ``shutdown`` request skips the interrupt.

The policy is pure: it reads an injected clock and says what to do next; the caller
does it.  ``verdict`` then maps how the run ended (``Ending``) to the job's status, the
note people read and whether the session's state is lost, the same on both backends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from smartcolab.shared.protocol import ErrorInfo

__all__ = [
    "INTERRUPT_REPEAT_S",
    "Action",
    "Ending",
    "EndingKind",
    "StopPolicy",
    "StopReason",
    "Verdict",
    "verdict",
]

INTERRUPT_REPEAT_S = 0.25

StopReason = Literal["timed_out", "cancelled", "restart", "shutdown"]
Action = Literal["wait", "interrupt", "restart", "shutdown"]
EndingKind = Literal["completed", "interrupted", "restarted", "died"]


class StopPolicy:
    """The stop state of one running cell.  Call ``next_action`` whenever something may
    have changed (a message arrived, or ``wait_s`` passed) and do what it returns."""

    def __init__(self, *, grace_s: float, deadline: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 repeat_s: float = INTERRUPT_REPEAT_S) -> None:
        self.grace_s = grace_s
        self.deadline = deadline  # a ``clock()`` value; None: no time limit
        self.clock = clock
        self.repeat_s = repeat_s
        self.started = False
        self.ending = False
        self.reason: StopReason | None = None
        self.stopping_since: float | None = None  # the first interrupt decision
        self._stop_began: float | None = None  # the deadline, or when the request came
        self._signalled_at: float | None = None

    def cell_started(self) -> None:
        """The kernel began running the cell (its ``busy`` status or ``execute_input``)."""
        self.started = True

    def cell_ending(self) -> None:
        """The cell raised or replied: no more interrupts.  A SIGINT that lands while the
        kernel formats a traceback or sends its reply replaces the traceback with a bare
        ``KeyboardInterrupt``, or loses the reply."""
        self.ending = True

    @property
    def stopping(self) -> bool:
        return self.reason is not None

    def next_action(self, request: StopReason | None = None) -> Action:
        """What to do now, given an outside stop ``request`` (None: none pending)."""
        now = self.clock()
        if self.stopping_since is None:
            wanted = request
            if wanted is None and self.deadline is not None and now >= self.deadline:
                wanted = "timed_out"
            if wanted is None:
                return "wait"
            self.reason = wanted
            if wanted in ("restart", "shutdown"):
                self._stop_began = now
                return wanted
            self._stop_began = self.deadline if wanted == "timed_out" else now
            self.stopping_since = now
        elif request in ("restart", "shutdown"):
            return request
        elif now - self.stopping_since >= self.grace_s:
            return "restart"
        if self.started and not self.ending and (
                self._signalled_at is None or now - self._signalled_at >= self.repeat_s):
            self._signalled_at = now
            return "interrupt"
        return "wait"

    def wait_s(self, poll_s: float | None = None) -> float | None:
        """How long the caller may wait for a message before asking again (None: no limit)."""
        now = self.clock()
        limits = [] if poll_s is None else [poll_s]
        if self.stopping_since is None:
            if self.deadline is not None:
                limits.append(self.deadline - now)
        else:
            limits.append(self.stopping_since + self.grace_s - now)
            if self.started and not self.ending and self._signalled_at is not None:
                limits.append(self._signalled_at + self.repeat_s - now)
        return max(0.0, min(limits)) if limits else None

    def latency(self) -> float | None:
        """Seconds from the deadline (or the request) until now; None when not stopping."""
        return None if self._stop_began is None else self.clock() - self._stop_began


@dataclass(frozen=True)
class Ending:
    """How a run ended, in terms both backends know.

    ``completed``: the cell ended on its own (``failed``: it raised, or its reply was not
    ok); ``interrupted``: stopped by SIGINT for ``reason``, state kept; ``restarted``:
    stopped by a kernel restart for ``reason``, state lost; ``died``: the kernel process
    ended while the cell ran (``cause`` says how, when known), state lost.
    """

    kind: EndingKind
    reason: StopReason | None = None
    failed: bool = False
    cause: str | None = None


@dataclass(frozen=True)
class Verdict:
    """A job's terminal status, its note, whether state is lost, and an error to report."""

    status: Literal["succeeded", "failed", "timed_out", "cancelled"]
    state_lost: bool = False
    note: str | None = None
    error: ErrorInfo | None = None


def _restarted_note(reason: StopReason | None, timeout: float | None, grace_s: float) -> str:
    why = {
        "timed_out": f"reached its {timeout or 0:g} s deadline and ignored the interrupt for "
                     f"{grace_s:g} s (native code does), so the kernel was restarted",
        "cancelled": f"was cancelled and ignored the interrupt for {grace_s:g} s, so the "
                     "kernel was restarted",
        "restart": "was stopped because its session was restarted",
        "shutdown": "was stopped because the runtime server shut down",
    }[reason or "cancelled"]
    return (f"the job {why}: all variables of the session are lost (state_lost); "
            "re-run the setup code before continuing")


def verdict(ending: Ending, *, timeout: float | None, grace_s: float) -> Verdict:
    """The job's status and note from how its run ended.

    A kernel that dies mid-job ends the job ``failed`` (error ``KernelDied``), on both
    backends: the code ran and its process ended under it (out of memory, a crash in
    native code), which is a failure the caller can act on.  ``lost`` is kept for jobs
    whose end nobody saw (a runtime server restarted under them, a bridge that lost
    its connection).
    """
    if ending.kind == "completed":
        return Verdict("failed" if ending.failed else "succeeded")
    if ending.kind == "interrupted":
        if ending.reason == "timed_out":
            return Verdict("timed_out", note=f"interrupted at its {timeout or 0:g} s deadline; "
                                             "the kernel's variables are kept")
        return Verdict("cancelled", note="interrupted on request; the kernel's variables are kept")
    if ending.kind == "restarted":
        return Verdict("timed_out" if ending.reason == "timed_out" else "cancelled",
                       state_lost=True, note=_restarted_note(ending.reason, timeout, grace_s))
    cause = ending.cause or "the kernel process ended (exit status unknown)"
    return Verdict("failed", state_lost=True,
                   note=f"the kernel died ({cause}); it was restarted and all variables of the "
                        "session are lost (state_lost)",
                   error=ErrorInfo(ename="KernelDied", evalue=cause,
                                   traceback=[f"KernelDied: {cause}"]))
