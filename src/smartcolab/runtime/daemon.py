"""The local runtime daemon: a runtime server that outlives the bridges using it.

Started detached by the first bridge or CLI command that needs a local runtime
(``client/local/daemon.py``), it serves 127.0.0.1 on a random port with a secret of
its own, which it writes with its URL and pid to a 0600 runtime file in its
directory (as Jupyter does with its runtime files) and to nothing else: no banner,
no log line. It stops itself after ``idle_timeout_s`` with no queued or running job
and no client request, on SIGTERM, and on ``POST /shutdown`` (``smartcolab local
stop``), removing its runtime file on the way out.

Layout of its directory (0700, every file 0600)::

    runtime.json   url, socket, pid, secret, root, python, kernel, idle timeout
    runtime.sock   the same server on a Unix socket (0600), for clients on this machine
    daemon.lock    held by whoever is starting a daemon here (fcntl)
    daemon.log     its JSON log lines (never the secret)
    state/         job store, job outputs, audit log, snapshots
    kernels/       the kernelspec of a chosen Python (--python)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smartcolab import __version__
from smartcolab.runtime.api.app import create_app
from smartcolab.runtime.config import RuntimeConfig
from smartcolab.runtime.logs import configure_logging
from smartcolab.runtime.server import (
    base_url,
    bind_socket,
    http_options,
    serve_beside,
    sigterm_as_exit,
)
from smartcolab.runtime.state import RuntimeState
from smartcolab.shared import loop as event_loop
from smartcolab.shared.errors import ShuttingDown
from smartcolab.shared.local_daemon import (
    DEFAULT_IDLE_TIMEOUT_S,
    H_IDLE,
    H_QUIET,
    RUNTIME_FILE,
    STATE_SUBDIR,
    socket_path,
)
from smartcolab.shared.private import (
    DIR_MODE,
    FILE_MODE,
    private_dir,
    private_umask,
    write_private_json,
)
from smartcolab.shared.protocol import KEEPALIVE_RUNTIME_S

log = logging.getLogger("smartcolab.runtime.daemon")


@dataclass(frozen=True)
class DaemonOptions:
    directory: Path
    root: Path
    kernel_name: str = "python3"
    python: str | None = None
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S


class Activity:
    """When a client last asked something, and how many requests are in flight."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.in_flight = 0

    def touch(self) -> None:
        self.last = time.monotonic()

    def idle_s(self) -> float:
        return 0.0 if self.in_flight else time.monotonic() - self.last


class ActivityMiddleware:
    """Counts every request (a long-poll is activity for as long as it waits)."""

    def __init__(self, app: ASGIApp, activity: Activity) -> None:
        self.app = app
        self.activity = activity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if any(k == H_QUIET.encode() for k, _ in scope.get("headers") or []):
            idle = f"{self.activity.idle_s():.1f}".encode()

            async def with_idle(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", []),
                                                      (H_IDLE.encode(), idle)]}
                await send(message)

            await self.app(scope, receive, with_idle)
            return
        self.activity.in_flight += 1
        self.activity.touch()
        try:
            await self.app(scope, receive, send)
        finally:
            self.activity.in_flight -= 1
            self.activity.touch()


def install_kernelspec(directory: Path, python: str) -> str:
    """A kernelspec running ``python``'s ipykernel, found through JUPYTER_PATH."""
    name = "smartcolab-python"
    spec_dir = private_dir(directory / "kernels" / "kernels" / name)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python ({python})", "language": "python",
        "metadata": {"debugger": False}}))
    paths = [str(directory / "kernels"), *filter(None, [os.environ.get("JUPYTER_PATH")])]
    os.environ["JUPYTER_PATH"] = os.pathsep.join(paths)
    return name


def runtime_config(opts: DaemonOptions) -> RuntimeConfig:
    kernel = install_kernelspec(opts.directory, opts.python) if opts.python else opts.kernel_name
    # Each client gets a session of its own (client/local/sessions.py): no kernel is
    # started before one asks, which keeps an idle daemon small.  No per-address
    # connection cap: every client is one of this user's bridges, all on loopback.
    return RuntimeConfig(host="127.0.0.1", port=0, roots=[opts.root],
                         state_dir=private_dir(opts.directory / STATE_SUBDIR), kernel_name=kernel,
                         start_main_session=False, max_connections_per_client=0)


async def _watch(server: uvicorn.Server, state: RuntimeState, activity: Activity,
                 opts: DaemonOptions, info: dict[str, object]) -> None:
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.02)
    # Written once we answer: a reader may use the URL at once.
    write_private_json(opts.directory / RUNTIME_FILE, info)
    log.info("local runtime daemon ready", extra={"url": info["url"], "pid": os.getpid()})
    tick = max(0.2, min(5.0, opts.idle_timeout_s / 5))
    while not state.shutdown_requested.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(state.shutdown_requested.wait(), tick)
        try:
            busy = bool(state.manager.live)
        except ShuttingDown:
            busy = False
        if busy:
            activity.touch()  # a queued or running job keeps the daemon up
        elif activity.idle_s() >= opts.idle_timeout_s:
            log.info("idle for %.0f s with no job: stopping", activity.idle_s())
            break
    await asyncio.sleep(0.2)  # let a /shutdown's 202 reach its client
    server.should_exit = True


def run_daemon(opts: DaemonOptions) -> None:
    """Serve until idle, SIGTERM or /shutdown; the runtime file lives as long as we do."""
    private_umask()
    private_dir(opts.directory)
    configure_logging(json_lines=True)
    config = runtime_config(opts)
    sock = bind_socket(config.host, 0)
    config.port = sock.getsockname()[1]
    unix_path = socket_path(opts.directory)
    unix = None if unix_path is None else bind_unix_socket(unix_path, opts.directory)
    app = create_app(config)
    state: RuntimeState = app.state.sc
    activity = Activity()
    server = uvicorn.Server(uvicorn.Config(
        ActivityMiddleware(app, activity), log_config=None, access_log=False, lifespan="on",
        timeout_graceful_shutdown=10, timeout_keep_alive=int(KEEPALIVE_RUNTIME_S),
        **http_options(config)))
    info: dict[str, object] = {
        "url": base_url(config.host, config.port), "pid": os.getpid(), "secret": config.secret,
        "socket": None if unix is None else str(unix_path),
        "root": str(opts.root), "python": opts.python, "kernel": config.kernel_name,
        "idle_timeout_s": opts.idle_timeout_s, "started_at": time.time(),
        "version": __version__}
    runtime_file = opts.directory / RUNTIME_FILE

    def secret_rotated(secret: str) -> None:
        # The runtime file is how every later bridge and CLI call finds the secret: it
        # must name the new one before the rotation answers, or they would all get 401.
        info["secret"] = secret
        write_private_json(runtime_file, info)

    state.secret_listeners.append(secret_rotated)

    async def main() -> None:
        socks = [sock] if unix is None else [sock, unix]
        await serve_beside(server, socks, _watch(server, state, activity, opts, info))

    try:
        with sigterm_as_exit():  # SIGTERM ends the daemon through finally
            event_loop.run(main())
    finally:
        sock.close()
        if unix is not None:
            unix.close()
        _remove_if_ours(runtime_file, unix_path if unix is not None else None)
        log.info("local runtime daemon stopped")


def bind_unix_socket(path: Path, directory: Path) -> socket.socket | None:
    """A listening Unix socket at ``path`` (0600), or None (logged) when its folder, if
    not the daemon's ``directory``, is not this user's alone (one somebody else made in
    /tmp could hold their socket)."""
    if path.parent != directory and not _private_folder(path.parent):
        log.warning("no Unix socket: %s is not a folder of this user's alone; clients "
                    "use TCP", path.parent)
        return None
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a dead daemon's; the start lock says no live one uses it
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, FILE_MODE)
        sock.listen(128)
    except OSError:
        sock.close()
        log.warning("no Unix socket at %s: clients use TCP", path, exc_info=True)
        return None
    return sock


def _private_folder(folder: Path) -> bool:
    """``folder`` exists (made 0700 here if it did not), is no symlink, is ours, 0700;
    False too when it cannot be made (``$XDG_RUNTIME_DIR`` naming a folder that is gone)."""
    try:
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=DIR_MODE)
        st = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and st.st_mode & 0o077 == 0


def _remove_if_ours(runtime_file: Path, unix_path: Path | None) -> None:
    """A newer daemon may have replaced the files: only remove those naming our pid."""
    with contextlib.suppress(OSError, ValueError):
        if json.loads(runtime_file.read_text()).get("pid") == os.getpid():
            runtime_file.unlink()
            if unix_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    unix_path.unlink()
