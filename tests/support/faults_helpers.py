"""Helpers for the fault-injection tests: a stalling proxy, a tiny filesystem, job code
that leaves a trace on the runtime's disk so executions can be counted remotely."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

from support.cutproxy import CutProxy


class StallProxy(CutProxy):
    """Like ``CutProxy``, but the first ``stalls`` connections never get an answer:
    the runtime's response is swallowed, as a hung tunnel does."""

    def __init__(self, target_port: int, *, stalls: int = 1) -> None:
        super().__init__(target_port, cuts=0)
        self.stalls_left = stalls
        self.stalled = 0

    def _pump(self, src: socket.socket, dst: socket.socket, limit: int | None,
              state: dict[str, bool], hold: int | None = None) -> None:
        # The upstream -> client pump of a stalled connection reads and drops.
        with self._lock:
            stall = (self.stalls_left > 0 and src.getpeername()[1] == self.target[1]
                     and not state.get("counted"))
            if stall:
                self.stalls_left -= 1
                self.stalled += 1
                state["counted"] = True
        if not stall:
            super()._pump(src, dst, limit, state, hold)
            return
        with contextlib.suppress(OSError):
            while src.recv(65536):
                pass


def traced_code(job_id: str, trace: Path, body: str = "") -> str:
    """Job code that appends its id to ``trace`` (one line per execution), then ``body``."""
    return (f"with open({str(trace)!r}, 'a') as _f:\n    _f.write({job_id!r} + '\\n')\n"
            + body)


def executions(trace: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    if trace.exists():
        for line in trace.read_text().splitlines():
            counts[line] = counts.get(line, 0) + 1
    return counts


@contextlib.contextmanager
def tiny_filesystem(path: Path, size_kb: int) -> Iterator[Path]:
    """A tmpfs of ``size_kb`` KiB at ``path`` (needs root); skip the test otherwise."""
    import pytest

    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


__all__ = ["StallProxy", "executions", "tiny_filesystem", "traced_code"]
