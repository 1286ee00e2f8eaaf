"""What every tool shares: settings, runtimes, journal, epochs, checkpoints, chunked operations.

``BridgeDeps`` is the MCP server's lifespan state: ``server.open_bridge`` opens it
when the server starts and closes it when the server stops.  A tool reads it typed
from its context: declare ``ctx: BridgeContext`` and call ``deps_of(ctx)`` (see
docs/bridge.md, "Writing a tools module").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcp.server.mcpserver import Context

from smartcolab.client.epochs import EpochTracker
from smartcolab.client.journal import Journal
from smartcolab.client.registry import RuntimeRegistry
from smartcolab.mcp.chunked.ops import ChunkedOps
from smartcolab.mcp.cursors import ShownCursors

# Re-exported: the settings live apart so that the CLI reads their defaults without
# importing the MCP SDK (``mcp/settings.py``).
from smartcolab.mcp.settings import BridgeSettings as BridgeSettings


@dataclass
class BridgeDeps:
    """The shared state of one bridge process (the MCP server's lifespan state).

    * ``settings``: wait budget, timeouts, caps, ``save_dir``/``checkpoint_dir``.
    * ``registry``: named runtimes; ``await registry.client(name)`` gives
      ``(RuntimeSpec, RuntimeBackend)`` (the backend made by the factory of the
      runtime's kind, starting the embedded runtime if needed) or raises
      ``UnknownRuntime``.
    * ``journal``: the local SQLite record of every job the bridge submitted.
    * ``chunked``: the checkpoint store and the chunked operations running in the
      background (``chunked.store``).
    * ``epochs``: last session epoch seen per runtime/session (state-lost notes).
    * ``cursors``: per MCP client and job, how far that client has been shown its output.
    * ``pending_downloads``: per job, ``download`` globs to fetch once it succeeds.

    The job helpers (``submit_and_wait``, ``follow``, ``render``) live in
    ``mcp/jobflow.py`` and take ``deps`` as their first argument.
    """

    settings: BridgeSettings
    registry: RuntimeRegistry
    journal: Journal
    chunked: ChunkedOps
    epochs: EpochTracker = field(default_factory=EpochTracker)
    cursors: ShownCursors = field(default_factory=ShownCursors)
    pending_downloads: dict[str, list[str]] = field(default_factory=dict)


BridgeContext = Context[BridgeDeps, Any]


def deps_of(ctx: BridgeContext) -> BridgeDeps:
    """The bridge's state, from a tool's context."""
    return ctx.request_context.lifespan_context
