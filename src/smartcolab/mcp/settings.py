"""The bridge's plain settings and their defaults (read by the CLI for its flags).

Apart from ``deps.py`` because that module imports the MCP SDK, and ``smartcolab
serve`` (the runtime) reads these defaults for its help without needing the SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
