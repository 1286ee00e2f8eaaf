"""Running the runtime app under uvicorn: in the foreground (CLI) or in a thread (notebook)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import uvicorn

from smartcolab.runtime.api.app import create_app
from smartcolab.runtime.config import DEFAULT_HOST, RuntimeConfig, build_config
from smartcolab.runtime.host.tunnel import Tunnel, TunnelOptions, check_kind, open_tunnel
from smartcolab.runtime.logs import configure_logging
from smartcolab.runtime.security.clientaddr import parse_networks
from smartcolab.runtime.security.connections import (
    QuietErrors,
    QuietFilter,
    http_parser,
    protocol_class,
    raise_nofile_limit,
)
from smartcolab.runtime.state import RuntimeState
from smartcolab.runtime.ui import page_url
from smartcolab.runtime.ui.display import DEFAULT_HEIGHT_PX as DEFAULT_MONITOR_HEIGHT_PX
from smartcolab.runtime.ui.display import show_monitor
from smartcolab.shared import loop as event_loop
from smartcolab.shared.protocol import KEEPALIVE_RUNTIME_S

log = logging.getLogger("smartcolab.runtime")
STARTUP_TIMEOUT_S = 60.0
MIN_SECRET_CHARS = 16


def check_config(config: RuntimeConfig) -> None:
    """Refuse unsafe combinations before anything listens."""
    if len(config.secret) < MIN_SECRET_CHARS:
        raise ValueError(f"the secret has {len(config.secret)} characters; at least "
                         f"{MIN_SECRET_CHARS} are needed (leave SMARTCOLAB_SECRET unset to "
                         "get a generated one)")
    parse_networks(config.allow_cidrs)
    parse_networks(config.trusted_proxies)


def check_tunnel(tunnel: TunnelOptions | None, tls: bool) -> None:
    """A public tunnel already terminates HTTPS; TLS behind it only breaks the upstream."""
    if tunnel is not None and tunnel.kind != "none" and tls:
        raise ValueError(
            "a tunnel already serves HTTPS: use either --tunnel or --tls-cert/--tls-key, not both")


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before uvicorn starts, so port 0 gives a free port with no race."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP;
    # without it, keep-alive responses stall ~40 ms on delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family in (socket.AF_INET, socket.AF_INET6):
        # Accepted sockets inherit it: without it a keep-alive response written in two
        # parts waits ~40 ms for a delayed ACK (Nagle), on every request after the first.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def base_url(host: str, port: int, tls: bool = False) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"{'https' if tls else 'http'}://{shown}:{port}"


@dataclass
class ServerHandle:
    """A runtime server running in a background thread."""

    url: str
    secret: str
    config: RuntimeConfig
    server: uvicorn.Server
    thread: threading.Thread
    extra: dict[str, Any] = field(default_factory=dict)
    tunnel: Tunnel | None = None

    @property
    def public_url(self) -> str:
        """The URL clients should use: the tunnel's when there is one."""
        return self.tunnel.public_url if self.tunnel else self.url

    def stop(self, timeout: float = 30.0) -> None:
        """Close the tunnel, then stop serving: kernels are shut down by the app's lifespan."""
        if self.tunnel is not None:
            self.tunnel.close()
        self.server.should_exit = True
        self.thread.join(timeout)

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def show_monitor(self, height: int = DEFAULT_MONITOR_HEIGHT_PX) -> str:
        """Show the live job monitor (/ui) inline in the notebook cell's output."""
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "::", "") else self.config.host
        return show_monitor(self.config.port, self.secret,
                            host=host, height=height)


def _uvicorn_server(config: RuntimeConfig, tls_cert: str | None, tls_key: str | None,
                    ) -> tuple[uvicorn.Server, RuntimeState]:
    app = create_app(config)
    uv_config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on",
        ssl_certfile=tls_cert, ssl_keyfile=tls_key, timeout_graceful_shutdown=10,
        timeout_keep_alive=int(KEEPALIVE_RUNTIME_S),
        **http_options(config))
    server = uvicorn.Server(uv_config)
    state: RuntimeState = app.state.sc
    return server, state


def http_options(config: RuntimeConfig) -> dict[str, Any]:
    """uvicorn's HTTP settings for a runtime server (``serve``, the notebook's, the local
    daemon's)."""
    parser = http_parser()
    log.info("HTTP/1.1 parser: %s", parser)
    return {
        "ws": "none",
        # Our protocol (httptools', or h11's): a deadline for request headers, a
        # per-address connection cap, one segment per response (security/connections.py).
        "http": protocol_class(header_timeout_s=config.header_timeout_s,
                               max_per_client=config.max_connections_per_client, parser=parser),
        # limits.py reads forwarding headers itself, only from trusted proxies;
        # uvicorn's own rewrite of the client address would bypass that.
        "proxy_headers": False,
        # The bound on a request's head (h11's, and ours for httptools): room above our own
        # header and query limits, so limits.py answers 431/413 in the JSON error shape
        # instead of the parser dropping the request.
        "h11_max_incomplete_event_size": config.max_header_bytes + config.max_query_bytes + 8192,
    }


def _quiet_logs() -> QuietErrors:
    """Repeated descriptor exhaustion errors: one line per interval, no tracebacks."""
    quiet = QuietErrors()
    flt = QuietFilter(quiet)
    for name in ("asyncio", "uvicorn.error", "smartcolab.runtime"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, QuietFilter) for f in logger.filters):
            logger.addFilter(flt)
    return quiet


async def _serve(server: uvicorn.Server, state: RuntimeState, sock: socket.socket) -> None:
    asyncio.get_running_loop().set_exception_handler(_quiet_logs().handler)
    async def watch_shutdown() -> None:
        await state.shutdown_requested.wait()
        # Let the 202 reach the client before the listener goes.
        await asyncio.sleep(0.2)
        server.should_exit = True

    await serve_beside(server, [sock], watch_shutdown())


async def serve_beside(server: uvicorn.Server, socks: list[socket.socket],
                       watcher: Coroutine[Any, Any, None]) -> None:
    """Serve on ``socks`` with ``watcher`` running beside; the watcher ends with the server."""
    task = asyncio.ensure_future(watcher)
    try:
        await server.serve(sockets=socks)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def print_banner(url: str, config: RuntimeConfig, out: TextIO, local_url: str | None = None,
                 ) -> None:
    """Printed once, to the terminal only (never to a log): URL, secret, client config."""
    lines = [f"smartcolab runtime listening on {local_url or url}"]
    if local_url and local_url != url:
        lines.append(f"public URL (tunnel): {url}")
    lines += [
        f"secret: {config.secret}",
        # Run where the MCP client is: it prints the entry with that machine's paths.
        "register it with your MCP client (on the client's machine; paste the secret "
        "at the hidden prompt):",
        f"  smartcolab runtimes add myruntime {url} --ask-secret --replace",
        "  smartcolab config claude-desktop --runtime myruntime",
        f"  or: curl -H 'Authorization: Bearer {config.secret}' {url}/probe",
        f"live job monitor: {page_url(url, config.secret)}",
    ]
    out.write("\n".join(lines) + "\n")
    out.flush()


def run(config: RuntimeConfig, *, port_file: Path | None = None, banner: bool = True,
        tls_cert: str | None = None, tls_key: str | None = None,
        json_logs: bool = True, tunnel: TunnelOptions | None = None) -> None:
    """Serve in the foreground until SIGINT/SIGTERM or ``POST /shutdown``.

    With ``tunnel``, the public tunnel is opened once the port is bound (before the
    banner, so the banner shows the public URL) and closed when serving ends.
    """
    check_config(config)
    check_tunnel(tunnel, tls_cert is not None)
    configure_logging(json_lines=json_logs)
    _raise_fd_limit()
    sock = bind_socket(config.host, config.port)
    port = sock.getsockname()[1]
    config.port = port
    url = base_url(config.host, port, tls=tls_cert is not None)
    try:
        opened = open_tunnel(tunnel, port) if tunnel is not None else None
    except BaseException:
        sock.close()
        raise
    try:
        server, state = _uvicorn_server(config, tls_cert, tls_key)
        if opened is not None:
            state.trust_tunnel(opened.public_url, opened.agent_pid)
        if banner:
            print_banner(opened.public_url if opened else url, config, sys.stdout, local_url=url)
        if port_file is not None:
            tmp = port_file.with_name(port_file.name + ".tmp")
            tmp.write_text(str(port))
            os.replace(tmp, port_file)
        with sigterm_as_exit():
            event_loop.run(_serve(server, state, sock))
    finally:
        if opened is not None:
            opened.close()
        sock.close()


def _raise_fd_limit() -> None:
    before, after = raise_nofile_limit()
    if after != before:
        log.info("raised the open-file limit from %d to %d", before, after)


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Uvicorn re-raises SIGTERM once it has shut down gracefully; with the default
    handler that kills the process before our ``finally`` closes the tunnel."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def exit_now(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_now)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve_in_thread(*, host: str = DEFAULT_HOST, port: int = 0, root: str | Path | None = None,
                    roots: list[str | Path] | None = None, secret: str | None = None,
                    state_dir: str | Path | None = None,
                    banner: bool = True, tls_cert: str | None = None,
                    tls_key: str | None = None, tunnel: str = "none",
                    tunnel_token: str | None = None, tunnel_domain: str | None = None,
                    tunnel_binary: str | None = None, **options: Any) -> ServerHandle:
    """Start a runtime server in a daemon thread and wait until it answers.

    Meant for a notebook cell: the server keeps serving while other cells run, and
    dies with the notebook's kernel.  The config comes from ``build_config`` (no root:
    the platform's working directory); ``options`` are further ``RuntimeConfig``
    fields.

    ``tunnel`` is ``"none"``, ``"ngrok"`` (``tunnel_token`` = the ngrok auth token,
    ``tunnel_domain`` = a reserved domain) or ``"cloudflared"`` (no token: a quick
    tunnel; ``tunnel_token`` + ``tunnel_domain``: a named tunnel and its hostname).
    The handle's ``public_url`` is the tunnel's; ``stop()`` closes it.
    """
    tunnel_options = TunnelOptions(kind=check_kind(tunnel), token=tunnel_token,
                                   domain=tunnel_domain, binary=tunnel_binary)
    check_tunnel(tunnel_options, tls_cert is not None)
    config = build_config(roots=roots or ([root] if root else None), state_dir=state_dir,
                          secret=secret, host=host, port=port, **options)
    check_config(config)
    # A notebook cell: readable lines on stdout (Colab paints stderr red).
    configure_logging(json_lines=False, stream=sys.stdout)
    _raise_fd_limit()
    sock = bind_socket(config.host, config.port)
    config.port = sock.getsockname()[1]
    url = base_url(config.host, config.port, tls=tls_cert is not None)
    server, state = _uvicorn_server(config, tls_cert, tls_key)
    def target() -> None:
        try:
            asyncio.run(_serve(server, state, sock))
        finally:
            sock.close()

    thread = threading.Thread(target=target, name="smartcolab-runtime", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the runtime server stopped during start-up; see the log above")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError(f"the runtime server did not start within {STARTUP_TIMEOUT_S:.0f} s")
        time.sleep(0.05)
    try:
        opened = open_tunnel(tunnel_options, config.port)
    except BaseException:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT_S)
        raise
    if opened is not None:
        state.trust_tunnel(opened.public_url, opened.agent_pid)
    if banner:
        print_banner(opened.public_url if opened else url, config, sys.stdout, local_url=url)
    return ServerHandle(url=url, secret=config.secret, config=config, server=server,
                        thread=thread, tunnel=opened)
