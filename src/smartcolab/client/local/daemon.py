"""Find, start and stop the local runtime daemon (``runtime/daemon.py``).

One daemon per user and daemon directory. A directory is named after what the
daemon runs (workspace root, Python, kernelspec), so every bridge and CLI command
configured alike shares one daemon, and a project with its own Python gets its own.
A client reads the 0600 runtime file; a file whose pid is gone or whose server does
not answer is stale and replaced. Starting is serialised by an fcntl lock on
``daemon.lock``: two bridges starting at the same moment end up with one daemon.

The daemon is started detached (its own session and process group on POSIX, a new
process group and no console on Windows): it survives the bridge and the MCP client
that started it, on Linux and macOS alike, without PR_SET_PDEATHSIG.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx2

import smartcolab
from smartcolab.client.local.python import check_python
from smartcolab.shared import env as env_names
from smartcolab.shared.errors import RuntimeUnreachable
from smartcolab.shared.local_daemon import (
    DEFAULT_IDLE_TIMEOUT_S,
    H_IDLE,
    H_QUIET,
    LOCK_FILE,
    LOG_FILE,
    RUNTIME_FILE,
    socket_path,
)
from smartcolab.shared.private import open_private_append, private_dir

if sys.platform != "win32":
    import fcntl

START_TIMEOUT_S = 60.0
LOCK_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
HEALTH_TIMEOUT_S = 3.0
MAX_LOG_BYTES = 10 * 1024 * 1024
DAEMON_MODULE = "smartcolab.cli.daemon_main"
# Tokens of other runtimes: the daemon's kernels run arbitrary code, they get none of them.
TOKEN_NAMES = frozenset({env_names.COLAB_TOKEN, env_names.JUPYTER_TOKEN,
                         env_names.JUPYTERHUB_TOKEN, env_names.NGROK_TOKEN,
                         env_names.CLOUDFLARED_TOKEN, env_names.SECRET, env_names.MCP_TOKEN})
SECRET_PREFIX = "SMARTCOLAB_"


@dataclass(frozen=True)
class DaemonSpec:
    """What the daemon runs; its directory is derived from it under ``base``."""

    base: Path
    root: Path
    python: str | None = None
    kernel: str = "python3"
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    # Extra environment variable names and values to keep away from the daemon.
    strip_names: tuple[str, ...] = ()
    strip_values: tuple[str, ...] = field(default=(), repr=False)

    @property
    def directory(self) -> Path:
        key = "\0".join([str(self.root), self.python or "", self.kernel])
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.root.name or "root")[:40]
        return self.base / f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class DaemonInfo:
    """A running daemon, as its runtime file describes it."""

    directory: Path
    url: str
    pid: int
    secret: str = field(repr=False)
    root: str = ""
    python: str | None = None
    kernel: str = "python3"
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    started_at: float = 0.0
    socket: str | None = None  # the same server on a Unix socket, when it has one

    def public(self) -> dict[str, object]:
        """Everything but the secret."""
        return {"directory": str(self.directory), "url": self.url, "socket": self.socket,
                "pid": self.pid,
                "root": self.root, "python": self.python, "kernel": self.kernel,
                "idle_timeout_s": self.idle_timeout_s, "started_at": self.started_at}


def read_info(directory: Path) -> DaemonInfo | None:
    """The runtime file's content, or None when there is none or it is unreadable."""
    try:
        data = json.loads((directory / RUNTIME_FILE).read_text(encoding="utf-8"))
        return DaemonInfo(directory, str(data["url"]), int(data["pid"]), str(data["secret"]),
                          str(data.get("root", "")), data.get("python"),
                          str(data.get("kernel", "python3")),
                          float(data.get("idle_timeout_s", DEFAULT_IDLE_TIMEOUT_S)),
                          float(data.get("started_at", 0.0)),
                          _our_socket(directory, data.get("socket")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _our_socket(directory: Path, named: object) -> str | None:
    """The socket the runtime file names, if it is where this directory's daemon binds."""
    expected = socket_path(directory)
    return str(expected) if expected is not None and named == str(expected) else None


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process now holds that pid
        return False
    except OSError:
        return False
    # An exited daemon whose parent has not reaped it (a killed bridge's child, under
    # a PID 1 that does not reap) is a zombie: gone for us.
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    return True


# The runtime file as last read, by directory, with the stat that identifies that
# version: the daemon replaces the file whole (a new inode), so an unchanged stat is
# an unchanged file and ``still_running`` needs no read and no JSON parse per call.
_LAST_READ: dict[Path, tuple[tuple[int, int, int], DaemonInfo | None]] = {}


def still_running(info: DaemonInfo) -> bool:
    """Cheap check between calls: its process lives and its runtime file still names it."""
    if not pid_alive(info.pid):
        return False
    try:
        st = (info.directory / RUNTIME_FILE).stat()
    except OSError:
        return False
    key = (st.st_ino, st.st_mtime_ns, st.st_size)
    seen = _LAST_READ.get(info.directory)
    if seen is not None and seen[0] == key:
        current = seen[1]
    else:
        current = read_info(info.directory)
        _LAST_READ[info.directory] = (key, current)
    return current is not None and current.pid == info.pid and current.url == info.url


async def probe(info: DaemonInfo) -> float | None:
    """Idle seconds if the daemon answers /health (without counting as activity), else None."""
    if not pid_alive(info.pid):
        return None
    try:
        async with httpx2.AsyncClient(timeout=HEALTH_TIMEOUT_S, trust_env=False) as http:
            response = await http.get(f"{info.url}/health", headers={H_QUIET: "1"})
    except httpx2.HTTPError:
        return None
    if response.status_code != 200 or response.json().get("status") != "ok":
        return None
    try:
        return float(response.headers.get(H_IDLE, "0"))
    except ValueError:
        return 0.0


def daemon_env(spec: DaemonSpec, environ: Mapping[str, str]) -> dict[str, str]:
    """The bridge's environment without any runtime's token or smartcolab secret."""
    drop = TOKEN_NAMES | set(spec.strip_names)
    values = {v for v in spec.strip_values if v}
    env = {k: v for k, v in environ.items()
           if k not in drop and not k.startswith(SECRET_PREFIX) and v not in values}
    # Run the same smartcolab as this process, even from a source checkout.
    pkg_parent = str(Path(smartcolab.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold ``path``'s exclusive lock (released by the OS if we die holding it)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if sys.platform != "win32":
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Collect the daemon's exit status whenever it ends, so it leaves no zombie."""
    threading.Thread(target=proc.wait, name="smartcolab-daemon-reaper", daemon=True).start()


def _spawn(spec: DaemonSpec, directory: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", DAEMON_MODULE, "--dir", str(directory),
            "--root", str(spec.root), "--kernel", spec.kernel,
            "--idle-timeout", str(spec.idle_timeout_s)]
    if spec.python:
        args += ["--python", spec.python]
    log = directory / LOG_FILE
    with contextlib.suppress(OSError):
        if log.stat().st_size > MAX_LOG_BYTES:  # one old log is kept, no more
            os.replace(log, log.with_name(LOG_FILE + ".1"))
    log_fd = open_private_append(log)
    try:
        # stdout must never reach ours: in stdio mode it is the JSON-RPC channel.
        if sys.platform == "win32":
            flags = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log_fd,
                                    stderr=subprocess.STDOUT, cwd=spec.root,
                                    env=daemon_env(spec, os.environ), close_fds=True,
                                    creationflags=flags)
        else:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log_fd,
                                    stderr=subprocess.STDOUT, cwd=spec.root,
                                    env=daemon_env(spec, os.environ), close_fds=True,
                                    start_new_session=True)
    finally:
        os.close(log_fd)
    _reap(proc)
    return proc


def _wait_ready(proc: subprocess.Popen[bytes], directory: Path) -> DaemonInfo:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        info = read_info(directory)
        if info is not None and info.pid == proc.pid:
            return info  # the daemon writes its file only once it answers
        code = proc.poll()
        if code is not None or time.monotonic() > deadline:
            tail = _log_tail(directory / LOG_FILE)
            raise RuntimeUnreachable(
                f"the local runtime daemon did not start (exit code {code}); see its log: "
                f"{directory / LOG_FILE}" + (f"\n{tail}" if tail else ""),
                details={"log": str(directory / LOG_FILE)})
        time.sleep(0.03)


def _log_tail(path: Path, lines: int = 6) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _ensure_locked(spec: DaemonSpec, directory: Path) -> tuple[DaemonInfo, bool]:
    """Under the lock: the live daemon, or a new one (and whether we started it)."""
    with _file_lock(directory / LOCK_FILE):
        info = read_info(directory)
        if info is not None and anyio.run(probe, info) is not None:
            return info, False
        if info is not None:  # stale: replace it (ending a hung daemon that still runs)
            _end_hung(info)
            (directory / RUNTIME_FILE).unlink(missing_ok=True)
        if spec.python:
            check_python(spec.python)
        return _wait_ready(_spawn(spec, directory), directory), True


def _end_hung(info: DaemonInfo) -> None:
    """SIGTERM a daemon that runs but does not answer, so two never share a job store.

    Only a process whose command line names our daemon: the pid may have been reused.
    """
    if not pid_alive(info.pid):
        return
    try:
        cmdline = Path(f"/proc/{info.pid}/cmdline").read_bytes()
    except OSError:
        return  # no /proc (macOS): leave it; it stops itself when idle
    if DAEMON_MODULE.encode() in cmdline.split(b"\0"):
        with contextlib.suppress(OSError):
            os.kill(info.pid, signal.SIGTERM)


async def ensure_daemon(spec: DaemonSpec) -> tuple[DaemonInfo, bool]:
    """Connect to this spec's daemon, starting it if none answers; ``(info, started)``."""
    private_dir(spec.base)
    directory = private_dir(spec.directory)
    spec.root.mkdir(parents=True, exist_ok=True)
    info = read_info(directory)
    if info is not None and await probe(info) is not None:
        return info, False
    with anyio.fail_after(LOCK_TIMEOUT_S):
        return await anyio.to_thread.run_sync(_ensure_locked, spec, directory,
                                              abandon_on_cancel=True)


def list_daemons(base: Path) -> list[DaemonInfo]:
    """Every daemon directory under ``base`` with a runtime file (live or stale)."""
    if not base.is_dir():
        return []
    found = (read_info(d) for d in sorted(base.iterdir()) if d.is_dir())
    return [info for info in found if info is not None]


async def stop_daemon(info: DaemonInfo, *, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Ask a daemon to shut down (``POST /shutdown``), then SIGTERM; True once it is gone."""
    with contextlib.suppress(httpx2.HTTPError):
        async with httpx2.AsyncClient(timeout=HEALTH_TIMEOUT_S, trust_env=False) as http:
            await http.post(f"{info.url}/shutdown",
                            headers={"Authorization": f"Bearer {info.secret}"})
    half, deadline = time.monotonic() + timeout_s / 2, time.monotonic() + timeout_s
    signalled = False
    while pid_alive(info.pid):
        now = time.monotonic()
        if now > half and not signalled:  # /shutdown unanswered: the daemon may be hung
            with contextlib.suppress(OSError):
                os.kill(info.pid, signal.SIGTERM)
            signalled = True
        if now > deadline:
            return False
        await anyio.sleep(0.05)
    (info.directory / RUNTIME_FILE).unlink(missing_ok=True)
    return True


def strip_lists(secrets: Iterable[str | None]) -> tuple[str, ...]:
    return tuple(s for s in secrets if s)
