"""What every tools module shares: settings, runtimes, journal, epochs, the job waiter.

A tools module is ``register(server: MCPServer, deps: BridgeDeps) -> None``; it
adds its tools with ``server.add_tool`` (or ``@server.tool``) and reaches the
rest of the bridge only through ``deps`` (see docs/bridge.md, "Writing a tools
module").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from smartcolab.client.epochs import EpochTracker
from smartcolab.client.journal import Journal
from smartcolab.client.registry import RuntimeRegistry
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
    """The shared state of one bridge process, handed to every tools module.

    * ``settings``: wait budget, timeouts, caps, ``save_dir``/``checkpoint_dir``.
    * ``registry``: named runtimes; ``await registry.client(name)`` gives
      ``(RuntimeSpec, RuntimeBackend)`` (a ``RuntimeClient``, or a
      ``JupyterBackend`` for a runtime of kind ``jupyter``) (starting the embedded runtime if needed)
      or raises ``UnknownRuntime``.
    * ``journal``: the local SQLite record of every job the bridge submitted.
    * ``epochs``: last session epoch seen per runtime/session (state-lost notes).
    * ``cursors``: per job, how far the model has already seen its output.
    * ``pending_downloads``: per job, ``download`` globs to fetch once it succeeds.

    The job helpers (``submit_and_wait``, ``follow``, ``render``) live in
    ``mcp/jobflow.py`` and take ``deps`` as their first argument.
    """

    settings: BridgeSettings
    registry: RuntimeRegistry
    journal: Journal
    epochs: EpochTracker = field(default_factory=EpochTracker)
    cursors: dict[str, int] = field(default_factory=dict)
    pending_downloads: dict[str, list[str]] = field(default_factory=dict)

    async def aclose(self) -> None:
        await self.registry.aclose()
        self.journal.close()
