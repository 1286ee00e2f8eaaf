"""A real ``jupyter server`` on loopback with a token, for the Jupyter-kind tests."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2

# A guard against a server that never starts, not a bound on how fast it starts: a
# whole-suite run in parallel on a loaded 2-core machine took over 60 s to start one.
START_TIMEOUT_S = 240.0


@dataclass(frozen=True)
class JupyterProc:
    url: str
    token: str
    root: Path
    proc: subprocess.Popen[bytes]


def free_port() -> int:
    # Jupyter Server cannot be handed a bound socket; port_retries=0 makes a lost race fail
    # loudly instead of moving to another port.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def start_jupyter(root: Path, *, base_url: str = "/") -> Iterator[JupyterProc]:
    """Start ``python -m jupyter_server`` on 127.0.0.1 and wait until it answers."""
    root.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    port = free_port()
    log = open(root.parent / f"jupyter-{port}.log", "wb")  # noqa: SIM115 - closed below
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(root.parent / "jrt"),
           "JUPYTER_DATA_DIR": str(root.parent / "jdata")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", f"--IdentityProvider.token={token}",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         "--ServerApp.open_browser=False", f"--ServerApp.root_dir={root}",
         f"--ServerApp.base_url={base_url}", "--allow-root"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}{base_url.rstrip('/')}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        # One client for all the polls: a new one loads the CA bundle each time (about
        # 60 ms of CPU, most of the poll interval).
        with httpx2.Client(headers={"Authorization": f"token {token}"}, timeout=2) as http:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"jupyter server exited: {proc.returncode}")
                try:
                    if http.get(f"{url}/api/status").status_code == 200:
                        break
                except httpx2.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("jupyter server did not start in time")
                time.sleep(0.1)
        yield JupyterProc(url, token, root, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
