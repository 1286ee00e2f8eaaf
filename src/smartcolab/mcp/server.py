"""The MCP server: built from tools modules, its state opened and closed by its lifespan.

Adding a tools module is one line in ``TOOL_MODULES``; each module lists its tools
in ``TOOLS`` (see ``params.ToolDef``, ``deps.py`` and docs/bridge.md).  Everything with a
lifetime (the runtime registry and its backends, the journal, the checkpoint store,
the chunked operations and their task group) is opened by ``open_bridge`` when the
server starts and closed when it stops.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
from mcp.server import MCPServer

from smartcolab import __version__
from smartcolab.client.embedded import EmbeddedRuntime
from smartcolab.client.epochs import EpochTracker
from smartcolab.client.journal import Journal
from smartcolab.client.local.sessions import DEFAULT_LABEL, ClientLease
from smartcolab.client.registry import (
    BackendFactory,
    RuntimeRegistry,
    RuntimeSpec,
    default_factories,
)
from smartcolab.client.retry import RetryPolicy
from smartcolab.mcp.app import advertise_on_handshake, monitor_extension
from smartcolab.mcp.chunked.checkpoints import CheckpointStore
from smartcolab.mcp.chunked.ops import ChunkedOps
from smartcolab.mcp.cursors import ShownCursors
from smartcolab.mcp.deps import BridgeDeps, BridgeSettings
from smartcolab.mcp.extensions import logs, resources
from smartcolab.mcp.extensions.tasks import TaskManager, with_tasks
from smartcolab.mcp.extensions.tasks_wire import LegacyTasks, TasksExtension
from smartcolab.mcp.params import build_tools
from smartcolab.mcp.tools import chunked as tools_chunked
from smartcolab.mcp.tools import exec as tools_exec
from smartcolab.mcp.tools import files as tools_files
from smartcolab.mcp.tools import jobs as tools_jobs
from smartcolab.mcp.tools import notebook as tools_notebook
from smartcolab.mcp.tools import persist as tools_persist
from smartcolab.mcp.tools import system as tools_system
from smartcolab.mcp.transports.stdio import stdio_streams
from smartcolab.shared.local_daemon import DEFAULT_IDLE_TIMEOUT_S

log = logging.getLogger(__name__)


TOOL_MODULES: list[ModuleType] = [
    tools_system,
    tools_exec,
    tools_jobs,
    tools_files,
    tools_chunked,
    tools_persist,
    tools_notebook,
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
    # One backend factory per runtime kind (default: our runtime server and Jupyter
    # Server, with ``retry``); tests register a fake backend here.
    factories: Mapping[str, BackendFactory] | None = None
    # A colab-tab runtime opens its link in a browser (False: the link is only shown).
    open_browser: bool = True


@asynccontextmanager
async def open_bridge(config: BridgeConfig) -> AsyncIterator[BridgeDeps]:
    """Open everything the tools share; on exit stop the chunked operations (their
    checkpoints say ``paused``), then close the backends, the checkpoint store and the
    journal, and let go of this bridge's lease on the local daemon (the daemon stays)."""
    s = config.settings
    factories = config.factories if config.factories is not None else default_factories(
        config.retry, open_browser=config.open_browser)
    async with AsyncExitStack() as stack:
        journal = Journal(s.checkpoint_dir)
        stack.callback(journal.close)
        lease = ClientLease(s.checkpoint_dir, config.client_label)
        stack.callback(lease.release)
        embedded = None
        if config.embedded:
            embedded = EmbeddedRuntime(
                config.embedded_root or s.checkpoint_dir / "embedded" / "workspace",
                config.embedded_state_dir or s.checkpoint_dir / "local", python=config.python,
                kernel=config.kernel, idle_timeout_s=config.idle_timeout_s, lease=lease,
                retry=config.retry,
                strip_values=tuple(r.secret for r in config.runtimes if r.secret))
        registry = RuntimeRegistry(config.runtimes, default=config.default_runtime,
                                   embedded=embedded, factories=factories)
        stack.push_async_callback(_shielded, registry.aclose)
        store = CheckpointStore(s.checkpoint_dir)
        stack.callback(store.close)
        tg = await stack.enter_async_context(anyio.create_task_group())
        chunked = ChunkedOps(store, tg)
        # Runs before the task group exits: operations stop while their backends are open.
        stack.push_async_callback(chunked.aclose)
        yield BridgeDeps(settings=s, registry=registry, journal=journal, chunked=chunked,
                         epochs=EpochTracker(journal, lambda: lease.name),
                         cursors=ShownCursors(journal, lambda: lease.name))


async def _shielded(close: Callable[[], Awaitable[None]]) -> None:
    with anyio.CancelScope(shield=True):
        await close()


def build_server(bridge: BridgeConfig | BridgeDeps, *,
                 modules: list[ModuleType] | None = None) -> MCPServer[BridgeDeps]:
    """An MCPServer with every tools module's tools.

    Given a ``BridgeConfig``, the server's lifespan opens and closes the bridge
    (``open_bridge``); given ``BridgeDeps`` already open, it lends them (the caller
    closes them: tests that look inside).
    """
    lifespan: Callable[[MCPServer[BridgeDeps]], AbstractAsyncContextManager[BridgeDeps]]
    if isinstance(bridge, BridgeDeps):
        lent = bridge

        @asynccontextmanager
        async def lend(_: MCPServer[BridgeDeps]) -> AsyncIterator[BridgeDeps]:
            yield lent

        lifespan = lend
    else:
        config = bridge
        lifespan = lambda _: open_bridge(config)  # noqa: E731

    tasks = TaskManager()  # MCP tasks (mcp/tasks.py): both wire generations
    extension = TasksExtension(tasks)
    server: MCPServer[BridgeDeps] = MCPServer(
        "smart-colab", instructions=INSTRUCTIONS, version=__version__, title="Smart Colab",
        lifespan=with_tasks(lifespan, tasks), extensions=[extension, monitor_extension()],
        tools=[tool for module in modules or TOOL_MODULES
               for tool in build_tools(module.TOOLS, bridge.settings)])
    extension.server = server
    levels = logs.LogLevels()
    logs.install(levels)
    server.middleware.extend([logs.LogForwarder(levels), resources.ResourceLinks(),
                              LegacyTasks(tasks, server)])
    server.middleware.append(advertise_on_handshake)  # the MCP App on the 2025 wire too
    resources.register(server)
    return server


async def serve_stdio(config: BridgeConfig) -> None:
    # The SDK's run_stdio_async with our transport (mcp/transports/stdio.py: no thread hop per message).
    # It needs the SDK's low-level server, a private attribute: an SDK without it gets
    # the SDK's own stdio loop rather than a bridge that cannot start.
    server = build_server(config)
    lowlevel = getattr(server, "_lowlevel_server", None)
    if lowlevel is None:
        await server.run_stdio_async()
        return
    async with stdio_streams() as (read_stream, write_stream):
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())


# Sent with the SSE priming event: when a client that lost its stream tries again.
SSE_RETRY_MS = 1000
ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


async def serve_http(config: BridgeConfig, *, host: str, port: int, token: str,
                     path: str = "/mcp", ready: Callable[[int], None] | None = None,
                     allowed_hosts: tuple[str, ...] = (),
                     allowed_origins: tuple[str, ...] = ()) -> None:
    """Serve Streamable HTTP on host:port behind ``HttpGuard`` (mcp/transports/http.py)."""
    import socket

    import uvicorn

    from smartcolab.mcp.transports.http import HostPolicy, HttpGuard, MemoryEventStore

    policy = HostPolicy.for_bind(host, extra_hosts=allowed_hosts, extra_origins=allowed_origins)
    # The app's lifespan (run by uvicorn) opens and closes the bridge once for all sessions.
    server = build_server(config)
    app = HttpGuard(server.streamable_http_app(
        streamable_http_path=path, host=host, event_store=MemoryEventStore(),
        retry_interval=SSE_RETRY_MS,
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
    # The smartcolab loggers may pass info records on for MCP log notifications
    # (mcp/logs.py): stderr keeps to the level asked for.
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)
    # One line per HTTP request would flood the log (and cost time on every poll).
    for noisy in ("httpx2", "httpcore2", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
