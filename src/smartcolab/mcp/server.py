"""The MCP server: build it from tools modules, open its dependencies, serve stdio or HTTP.

Adding a tools module is one line in ``TOOL_MODULES``; each module exposes
``register(server, deps)`` (see ``deps.py`` and docs/bridge.md).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from mcp.server import MCPServer

from smartcolab import __version__
from smartcolab.client.embedded import EmbeddedRuntime
from smartcolab.client.epochs import EpochTracker
from smartcolab.client.http.client import RetryPolicy
from smartcolab.client.journal import Journal
from smartcolab.client.local.sessions import DEFAULT_LABEL, ClientLease
from smartcolab.client.registry import RuntimeRegistry, RuntimeSpec, default_client_factory
from smartcolab.mcp.deps import BridgeDeps, BridgeSettings
from smartcolab.mcp.tools import chunked as tools_chunked
from smartcolab.mcp.tools import exec as tools_exec
from smartcolab.mcp.tools import files as tools_files
from smartcolab.mcp.tools import jobs as tools_jobs
from smartcolab.mcp.tools import persist as tools_persist
from smartcolab.mcp.tools import system as tools_system
from smartcolab.shared.local_daemon import DEFAULT_IDLE_TIMEOUT_S

log = logging.getLogger(__name__)


TOOL_MODULES: list[ModuleType] = [
    tools_system,
    tools_exec,
    tools_jobs,
    tools_files,
    tools_chunked,
    tools_persist,
]

INSTRUCTIONS = """\
Run Python on a remote runtime (Colab, Kaggle, a VM) or this machine, in persistent
Jupyter kernels: variables survive between calls in a session, like notebook cells.
Start with check_colab_connection / probe_colab_environment. run_code_quick for short
snippets, run_code_long for slow work. Tools return within about 50 s: a result that says
"running" gives a job id; continue with get_job (wait), get_job_output (full log) or
cancel_job. Plots come back as images. If the runtime's URL changed, call connect_runtime.
For long loops use run_chunked_operation: batches with a local checkpoint that resumes
after failures and lost runtimes (get_checkpoint, list_checkpoints, delete_checkpoint).
Keep expensive results across kernel restarts and lost runtimes with save_colab_variables;
bring them back into a fresh kernel with restore_colab_variables.
"""


@dataclass
class BridgeConfig:
    """Everything ``smartcolab mcp`` needs, as plain values (the CLI fills it)."""

    settings: BridgeSettings
    runtimes: list[RuntimeSpec] = field(default_factory=list)
    default_runtime: str | None = None
    embedded: bool = True
    embedded_root: Path | None = None
    # Where local runtime daemons keep their directories (default CHECKPOINT_DIR/local).
    embedded_state_dir: Path | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # The local runtime: kernels' Python (None: this one) or kernelspec, idle stop,
    # and this bridge's client label (client/local/sessions.py).
    python: str | None = None
    kernel: str = "python3"
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    client_label: str = DEFAULT_LABEL


def build_server(deps: BridgeDeps, *, modules: list[ModuleType] | None = None) -> MCPServer:
    """An MCPServer with every tools module registered against ``deps``."""
    server: MCPServer = MCPServer("smart-colab", instructions=INSTRUCTIONS, version=__version__,
                                  title="Smart Colab")
    for module in modules or TOOL_MODULES:
        module.register(server, deps)
    return server


@asynccontextmanager
async def open_bridge(config: BridgeConfig) -> AsyncIterator[BridgeDeps]:
    """Open the journal and the runtime registry; close them on exit (the local daemon stays)."""
    s = config.settings
    journal = Journal(s.checkpoint_dir)
    lease = ClientLease(s.checkpoint_dir, config.client_label)
    embedded = None
    if config.embedded:
        embedded = EmbeddedRuntime(
            config.embedded_root or s.checkpoint_dir / "embedded" / "workspace",
            config.embedded_state_dir or s.checkpoint_dir / "local", python=config.python,
            kernel=config.kernel, idle_timeout_s=config.idle_timeout_s, lease=lease,
            retry=config.retry, strip_values=tuple(r.secret for r in config.runtimes if r.secret))
    registry = RuntimeRegistry(config.runtimes, default=config.default_runtime, embedded=embedded,
                               client_factory=default_client_factory(config.retry))
    deps = BridgeDeps(settings=s, registry=registry, journal=journal,
                      epochs=EpochTracker(journal, lambda: lease.name))
    try:
        yield deps
    finally:
        await deps.aclose()
        lease.release()


async def serve_stdio(config: BridgeConfig) -> None:
    async with open_bridge(config) as deps:
        await build_server(deps).run_stdio_async()


ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


async def serve_http(config: BridgeConfig, *, host: str, port: int, token: str,
                     path: str = "/mcp", ready: Callable[[int], None] | None = None,
                     allowed_hosts: tuple[str, ...] = (),
                     allowed_origins: tuple[str, ...] = ()) -> None:
    """Serve Streamable HTTP on host:port behind ``HttpGuard`` (mcp/http_transport.py)."""
    import socket

    import uvicorn

    from smartcolab.mcp.http_transport import HostPolicy, HttpGuard, MemoryEventStore

    policy = HostPolicy.for_bind(host, extra_hosts=allowed_hosts, extra_origins=allowed_origins)
    async with open_bridge(config) as deps:
        server = build_server(deps)
        app = HttpGuard(server.streamable_http_app(
            streamable_http_path=path, host=host, event_store=MemoryEventStore(),
            transport_security=policy.sdk_settings()), token, policy)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                             socket.SOCK_STREAM, socket.IPPROTO_TCP)  # so TCP_NODELAY is set
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)  # connections made before uvicorn starts wait in the backlog
        bound = sock.getsockname()[1]
        uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        log.info("MCP Streamable HTTP on http://%s:%d%s", host, bound, path)
        if ready is not None:
            ready(bound)
        await uv.serve(sockets=[sock])


def configure_logging(level: str = "INFO") -> None:
    """Logs go to stderr: in stdio mode stdout is the JSON-RPC channel."""
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per HTTP request would flood the log (and cost time on every poll).
    for noisy in ("httpx2", "httpcore2", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
