"""Remember the session epoch the bridge last saw on each runtime, to spot lost state.

A runtime changes a session's epoch whenever that kernel's memory is gone (a
kernel restart, a crash, a server restart). The bridge compares every epoch it
reads with the last one it saw for the same runtime and session; a change that
the bridge did not cause itself (``restart_colab_runtime``) means variables,
imports and loaded models from earlier calls no longer exist.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EpochChange:
    runtime: str
    session: str
    before: str
    after: str


class EpochTracker:
    """Last epoch seen per (runtime, session); reports changes once."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], str] = {}

    def observe(self, runtime: str, session: str, epoch: str) -> EpochChange | None:
        """Record ``epoch``; return the change if it differs from the last one seen."""
        if not epoch:
            return None
        key = (runtime, session)
        before = self._seen.get(key)
        self._seen[key] = epoch
        if before is None or before == epoch:
            return None
        return EpochChange(runtime, session, before, epoch)

    def expect(self, runtime: str, session: str, epoch: str | None) -> None:
        """Accept a change the bridge caused itself (a requested restart)."""
        if epoch:
            self._seen[(runtime, session)] = epoch
        else:
            self._seen.pop((runtime, session), None)

    def forget_runtime(self, runtime: str) -> None:
        """A runtime pointed at a new URL starts with no history."""
        for key in [k for k in self._seen if k[0] == runtime]:
            del self._seen[key]

    def last(self, runtime: str, session: str) -> str | None:
        return self._seen.get((runtime, session))
