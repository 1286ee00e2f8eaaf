"""The job monitor as an MCP App: a ``ui://`` resource that MCP Apps hosts render."""

from smartcolab.mcp.app.monitor import (
    MONITOR_URI,
    TOOL_META,
    advertise_on_handshake,
    monitor_extension,
    monitor_html,
)

__all__ = ["MONITOR_URI", "TOOL_META", "advertise_on_handshake", "monitor_extension",
           "monitor_html"]
