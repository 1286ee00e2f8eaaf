"""Local runtime daemons in tests: find them under a directory and make sure they end.

Daemons are detached on purpose (they outlive bridges), so a test that starts one
must stop it itself; ``stop_daemons_under`` is what fixtures call in ``finally``, and
the session fixture in conftest.py sweeps pytest's whole temporary tree once more.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from mcp import StdioServerParameters
from support.runtime_proc import subprocess_env

RUNTIME_FILE = "runtime.json"


def daemon_pids(base: Path) -> list[int]:
    pids = []
    for path in base.rglob(RUNTIME_FILE):
        with contextlib.suppress(OSError, ValueError, KeyError):
            pids.append(int(json.loads(path.read_text())["pid"]))
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop_daemons_under(base: Path, *, grace: float = 20.0) -> None:
    """SIGTERM every daemon with a runtime file under ``base`` (kernels shut down), then KILL."""
    for pid in daemon_pids(base):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
        if not wait_gone(pid, grace):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def bridge_params(tmp: Path, *args: str, pid_file: Path | None = None,
                  **extra: str) -> StdioServerParameters:
    """A stdio bridge with no remote runtime, its state under ``tmp/ckpt``.

    With ``pid_file``, the bridge writes its pid there first (``os.execv`` keeps the
    pid), so a test can kill -9 it.
    """
    env = subprocess_env({"CHECKPOINT_DIR": str(tmp / "ckpt"),
                          "LOCAL_SAVE_DIR": str(tmp / "saved"),
                          "SMARTCOLAB_RUNTIMES": str(tmp / "no-runtimes.toml"), **extra})
    env.pop("COLAB_URL", None)
    env.pop("JUPYTER_URL", None)
    argv = ["-m", "smartcolab", "mcp", "--log-level", "WARNING", "--root", str(tmp / "ws"), *args]
    if pid_file is None:
        return StdioServerParameters(command=sys.executable, args=argv, env=env, cwd=str(tmp))
    launcher = ("import os, sys; open(sys.argv[1], 'w').write(str(os.getpid())); "
                "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])")
    return StdioServerParameters(command=sys.executable, env=env, cwd=str(tmp),
                                 args=["-c", launcher, str(pid_file), *argv])
