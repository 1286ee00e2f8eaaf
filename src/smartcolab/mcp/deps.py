"""What every tool shares: settings, runtimes, journal, epochs, checkpoints, chunked operations.

``BridgeDeps`` is the MCP server's lifespan state: ``server.open_bridge`` opens it
when the server starts and closes it when the server stops.  A tool reads it typed
from its context: declare ``ctx: BridgeContext`` and call ``deps_of(ctx)`` (see
docs/bridge.md, "Writing a tools module").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context

from smartcolab.client.epochs import EpochTracker
from smartcolab.client.journal import Journal
from smartcolab.client.registry import RuntimeRegistry
from smartcolab.mcp.chunked.ops import ChunkedOps
from smartcolab.mcp.cursors import ShownCursors
from smartcolab.shared.protocol import LONG_TIMEOUT_S, MAX_WAIT_S, QUICK_TIMEOUT_S

DEFAULT_WAIT_BUDGET_S = 50.0  # Claude Desktop gives up on a tool call after about 60 s
DEFAULT_PROGRESS_INTERVAL_S = 5.0
DEFAULT_MAX_RESULT_CHARS = 20_000
DEFAULT_MAX_IMAGES = 2
DEFAULT_MAX_IMAGE_BYTES = 400_000


@dataclass(frozen=True)
class BridgeSettings:
    """Plain values the CLI reads from flags and environment, with defaults."""

    save_dir: Path
    checkpoint_dir: Path
    wait_budget_s: float = DEFAULT_WAIT_BUDGET_S
    progress_interval_s: float = DEFAULT_PROGRESS_INTERVAL_S
    quick_timeout_s: float = QUICK_TIMEOUT_S
    long_timeout_s: float = LONG_TIMEOUT_S
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS
    max_images: int = DEFAULT_MAX_IMAGES
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    # Local directories upload_to_colab may read from (empty: the save dir only).
    extra_upload_roots: tuple[Path, ...] = ()

    @property
    def upload_roots(self) -> tuple[Path, ...]:
        return (self.save_dir, *self.extra_upload_roots)

    def __post_init__(self) -> None:
        if not 0 < self.wait_budget_s <= 3600:
            raise ValueError("wait budget must be between 0 and 3600 seconds")
        if not 0 < self.progress_interval_s <= MAX_WAIT_S:
            raise ValueError(f"progress interval must be between 0 and {MAX_WAIT_S} seconds")
        if self.max_result_chars < 200:
            raise ValueError("max_result_chars must be at least 200")


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
