"""The watchdog process of the thread-mode job agent (``tab/agent.py``).

The agent's monitor thread stops a job past its deadline; a job whose native code holds
the GIL starves that thread too.  This process (started with the agent, in a session of
its own, source sent through ``python -c``) reads the kernel's list of running jobs and,
``margin_s`` after the monitor would have given up on a job (its deadline or stop request
plus ``grace_s``), records the restart and ends the kernel process.  Stdlib only, no
imports of its siblings: it runs as a script.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

POLL_S = 0.2


def _read(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _write(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def overdue(status: dict[str, Any], stop: dict[str, Any] | None, now: float,
            grace: float, margin: float) -> str | None:
    """Why a running job must end with its kernel now (None: not yet)."""
    if stop is not None and now >= float(stop.get("at") or now) + grace + margin:
        return str(stop.get("reason") or "cancelled")
    deadline = status.get("deadline")
    if deadline is not None and now >= float(deadline) + grace + margin:
        return "timed_out"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def main(root: str, pid: str, grace_s: str, margin_s: str) -> None:
    kernel, grace, margin = int(pid), float(grace_s), float(margin_s)
    while _alive(kernel):
        time.sleep(POLL_S)
        running = _read(os.path.join(root, f"running-{kernel}.json")) or {}
        for item in running.get("jobs") or []:
            directory = str(item.get("dir"))
            status = _read(os.path.join(directory, "status.json"))
            if not status or status.get("state") != "running":
                continue
            reason = overdue(status, _read(os.path.join(directory, "stop.json")),
                             time.time(), grace, margin)
            if reason is not None:
                status.update(state="ended", finished_at=time.time(), ending={
                    "kind": "restarted", "reason": reason, "failed": True})
                _write(os.path.join(directory, "status.json"), status)
                os.kill(kernel, signal.SIGKILL)
                return


if __name__ == "__main__":
    main(*sys.argv[1:])
