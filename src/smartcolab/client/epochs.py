"""Remember the session epoch the bridge last saw on each runtime, to spot lost state.

A runtime changes a session's epoch whenever that kernel's memory is gone (a
kernel restart, a crash, a server restart). The bridge compares every epoch it
reads with the last one it saw for the same runtime and session; a change that
the bridge did not cause itself (``restart_colab_runtime``) means variables,
imports and loaded models from earlier calls no longer exist.

With a ``store`` (the journal), what a bridge saw outlives it: the next bridge of
the same client (same lease, ``client/local/sessions.py``) says STATE LOST exactly
when the state is gone, and never when it is intact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class EpochChange:
    runtime: str
    session: str
    before: str
    after: str


class EpochStore(Protocol):
    def load_epoch(self, observer: str, runtime: str, session: str) -> str | None: ...
    def save_epoch(self, observer: str, runtime: str, session: str,
                   epoch: str | None) -> None: ...
    def forget_epochs(self, observer: str, runtime: str) -> None: ...


class EpochTracker:
    """Last epoch seen per (runtime, session); reports changes once.

    ``observer`` names this bridge among those sharing ``store`` (called on first
    use, so a client lease is only taken when needed).
    """

    def __init__(self, store: EpochStore | None = None,
                 observer: Callable[[], str] | None = None) -> None:
        self._seen: dict[tuple[str, str], str] = {}
        self._store = store
        self._observer = observer or (lambda: "bridge")
        self._loaded: set[tuple[str, str]] = set()

    def _last(self, key: tuple[str, str]) -> str | None:
        if self._store is not None and key not in self._loaded:
            stored = self._store.load_epoch(self._observer(), *key)
            if stored is not None:
                self._seen[key] = stored
            self._loaded.add(key)
        return self._seen.get(key)

    def _set(self, key: tuple[str, str], epoch: str | None) -> None:
        if epoch is None:
            self._seen.pop(key, None)
        else:
            self._seen[key] = epoch
        self._loaded.add(key)
        if self._store is not None:
            self._store.save_epoch(self._observer(), *key, epoch)

    def observe(self, runtime: str, session: str, epoch: str) -> EpochChange | None:
        """Record ``epoch``; return the change if it differs from the last one seen."""
        if not epoch:
            return None
        key = (runtime, session)
        before = self._last(key)
        if before == epoch:
            return None
        self._set(key, epoch)
        if before is None:
            return None
        return EpochChange(runtime, session, before, epoch)

    def expect(self, runtime: str, session: str, epoch: str | None) -> None:
        """Accept a change the bridge caused itself (a requested restart)."""
        self._set((runtime, session), epoch or None)

    def forget_runtime(self, runtime: str) -> None:
        """A runtime pointed at a new URL starts with no history."""
        for key in [k for k in self._seen if k[0] == runtime]:
            del self._seen[key]
        self._loaded = {k for k in self._loaded if k[0] != runtime}
        if self._store is not None:
            self._store.forget_epochs(self._observer(), runtime)

    def last(self, runtime: str, session: str) -> str | None:
        return self._last((runtime, session))
