"""The embedded default runtime: a ``smartcolab serve`` subprocess on 127.0.0.1.

With no runtime configured, ``smartcolab mcp`` still works on a laptop: it starts
a runtime server of its own on a random port with a random secret (passed in the
child's environment, never on its command line), waits until ``/health``
answers, and stops it when the bridge exits.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx2

import smartcolab
from smartcolab.shared import env as env_names
from smartcolab.shared.errors import RuntimeUnreachable

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
ENV_SECRET = env_names.SECRET
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """On Linux, ask for SIGTERM when the bridge dies, so no runtime is orphaned."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass


class EmbeddedRuntime:
    """One runtime subprocess owned by this bridge; ``start`` is idempotent."""

    def __init__(self, root: Path, state_dir: Path, *, python: str = sys.executable,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.root = root
        self.state_dir = state_dir
        self.python = python
        self.extra_args = extra_args
        self.secret = secrets.token_urlsafe(32)
        self.url: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = anyio.Lock()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    async def start(self) -> str:
        """Start the server if it is not running; return its URL once healthy."""
        async with self._lock:
            if self.running and self.url:
                return self.url
            return await self._spawn()

    async def _spawn(self) -> str:
        port_file, log_path = self._popen()
        try:
            url = await self._wait_healthy(port_file, log_path)
        except BaseException:
            self.stop()
            raise
        finally:
            port_file.unlink(missing_ok=True)
        self.url = url
        log.info("embedded runtime ready at %s", url)
        return url

    def _popen(self) -> tuple[Path, Path]:
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        port_file = self.state_dir / f"embedded-{secrets.token_hex(4)}.port"
        log_path = self.state_dir / "embedded-runtime.log"
        args = [self.python, "-m", "smartcolab", "serve", "--host", "127.0.0.1", "--port", "0",
                "--port-file", str(port_file), "--root", str(self.root),
                "--state-dir", str(self.state_dir), *self.extra_args]
        env = dict(os.environ)
        env[ENV_SECRET] = self.secret
        # Run the same smartcolab as this bridge, even from a source checkout.
        pkg_parent = str(Path(smartcolab.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH")) if p)
        log.info("starting the embedded runtime (root %s)", self.root)
        with open(log_path, "ab") as log_file:
            # stdout must never reach ours: in stdio mode it is the JSON-RPC channel.
            self._proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                cwd=self.root, env=env, preexec_fn=_die_with_parent if os.name == "posix" else None)
        return port_file, log_path

    @staticmethod
    def _read_port(port_file: Path) -> str | None:
        if not port_file.exists():
            return None
        text = port_file.read_text().strip()
        return f"http://127.0.0.1:{int(text)}" if text.isdigit() else None

    async def _wait_healthy(self, port_file: Path, log_path: Path) -> str:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        async with httpx2.AsyncClient(timeout=2.0) as http:
            url: str | None = None
            while True:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeUnreachable(
                        "the embedded local runtime did not start "
                        f"(exit code {self._proc.poll()}); see its log: {log_path}",
                        details={"log": str(log_path)})
                url = url or self._read_port(port_file)
                if url is not None:
                    try:
                        if (await http.get(f"{url}/health")).status_code == 200:
                            return url
                    except httpx2.TransportError:
                        pass
                await anyio.sleep(0.03)

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after a grace period)."""
        proc, self._proc = self._proc, None
        self.url = None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
