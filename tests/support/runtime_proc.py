"""Start real runtime servers as subprocesses for tests and benchmarks.

The server binds port 0 itself and writes the port to a file, so there is no race;
we poll /health until it answers, with a deadline, then hand out url and secret.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

SRC = Path(__file__).resolve().parents[2] / "src"
# A guard against a server that never starts, not a bound on how fast it starts: a
# whole-suite run in parallel on a loaded 2-core machine took over 60 s to start one.
START_TIMEOUT_S = 240.0
# The same guard for one of our CLI processes run to its end (`serve --help`, `exec`).
PROCESS_TIMEOUT_S = 240.0
# How long a test waits for an audit line: the runtime writes a request's or a job's line
# after its answer has gone, so a test that reads the log at once may be a moment early.
AUDIT_WAIT_S = 30.0


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(SRC), env.get("PYTHONPATH", "")] if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass
class RuntimeProc:
    url: str
    secret: str
    root: Path
    state_dir: Path
    proc: subprocess.Popen[bytes]
    port: int
    args: list[str] = field(default_factory=list)
    log_path: Path | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def audit(self, until: Callable[[list[dict[str, Any]]], bool] | None = None,
              ) -> list[dict[str, Any]]:
        """The audit log's events; with ``until``, once it holds for them (or the last read
        after ``AUDIT_WAIT_S``, for the test's own assertion to say what is missing)."""
        deadline = time.monotonic() + AUDIT_WAIT_S
        while True:
            path = self.state_dir / "audit.log"
            events = ([json.loads(line) for line in path.read_text().splitlines()]
                      if path.exists() else [])
            if until is None or until(events) or time.monotonic() > deadline:
                return events
            time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def start_runtime(root: Path, *extra_args: str, secret: str | None = None,
                  state_dir: Path | None = None, port: int = 0,
                  env: dict[str, str] | None = None) -> RuntimeProc:
    """Start ``python -m smartcolab serve`` on 127.0.0.1 and wait until /health answers."""
    root.mkdir(parents=True, exist_ok=True)
    secret = secret or secrets.token_urlsafe(24)
    state_dir = state_dir or root / ".smartcolab"
    port_file = root / f".port-{secrets.token_hex(4)}"
    log_path = root / f".serve-{secrets.token_hex(4)}.log"
    args = [sys.executable, "-m", "smartcolab", "serve", "--host", "127.0.0.1",
            "--port", str(port), "--port-file", str(port_file), "--root", str(root),
            "--state-dir", str(state_dir), *extra_args]
    log_file = open(log_path, "wb")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, cwd=root,
                            env=subprocess_env({"SMARTCOLAB_SECRET": secret, **(env or {})}))
    deadline = time.monotonic() + START_TIMEOUT_S
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"runtime did not start:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.05)
    bound = int(port_file.read_text())
    url = f"http://127.0.0.1:{bound}"
    # One client for all the polls: a new one loads the CA bundle each time (about 60 ms
    # of CPU, more than the poll interval).
    with httpx2.Client(timeout=2) as http:
        while True:
            try:
                if http.get(f"{url}/health").status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(
                    f"runtime not healthy:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.05)
    return RuntimeProc(url=url, secret=secret, root=root, state_dir=state_dir, proc=proc,
                       port=bound, args=args, log_path=log_path)
