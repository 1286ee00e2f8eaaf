"""smartcolab: stateful Python execution on remote or local Jupyter kernels, for MCP clients."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "serve"]

if TYPE_CHECKING:
    from smartcolab.runtime.server import ServerHandle


def serve(**kwargs: Any) -> ServerHandle:
    """Start a runtime server in a background thread (for a notebook cell).

    Keyword arguments are those of ``smartcolab.runtime.server.serve_in_thread``.
    Returns a handle with ``url``, ``secret`` and ``stop()``.
    """
    from smartcolab.runtime.server import serve_in_thread

    return serve_in_thread(**kwargs)
