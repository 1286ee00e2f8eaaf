"""The job monitor as an MCP App (extension ``io.modelcontextprotocol/ui``).

Hosts that render MCP Apps (Claude Desktop, claude.ai, VS Code, Cursor, ChatGPT,
Goose) show the ``ui://`` resource below in a sandboxed frame next to the result of
``run_code_long`` or ``get_job`` (their ``_meta.ui.resourceUri``, ``TOOL_META``); the
page reads the job id from the result's structured content and follows the job by
calling this bridge's own tools through the host (see assets/monitor.js). Clients
that do not render apps ignore ``_meta`` and keep the text result.

One self-contained HTML document: the page's CSS and JS and the vendored app side of
``@modelcontextprotocol/ext-apps`` (vendor/README.md) are inlined, because a host's
default Content Security Policy for an app allows inline scripts and nothing from
the network.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import Any

from mcp.server.apps import EXTENSION_ID, Apps
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from smartcolab import __version__

MONITOR_URI = "ui://smartcolab/job-monitor"
# ``_meta`` of the tools whose results the monitor renders.
TOOL_META: dict[str, Any] = {"ui": {"resourceUri": MONITOR_URI}}
VENDORED_BUNDLE = "ext-apps-app-with-deps.js"
APP_GLOBAL = "McpExtApps"

_EXPORT = re.compile(r"export\s*\{([^{}]*)\}\s*;?\s*$")
_NAME = r"[A-Za-z_$][\w$]*"
# Inside an inline <script> these would end the script or switch the parser's state.
_UNSAFE_IN_SCRIPT = re.compile(r"</script|<!--|<script", re.IGNORECASE)


def _read(*parts: str) -> str:
    return resources.files(__package__).joinpath(*parts).read_text(encoding="utf-8")


def bundle_as_script(source: str, global_name: str = APP_GLOBAL) -> str:
    """An ES module bundle whose only export is its final ``export{a as B,...}``,
    turned into plain code that sets ``globalThis[global_name] = {B: a, ...}``.

    Raises ``ValueError`` if the bundle does not have that shape (a new upstream
    build must be looked at, not inlined blindly).
    """
    found = _EXPORT.search(source)
    if found is None or re.search(r"^\s*(import|export)\b|[;}]\s*(import|export)\s*[{*]",
                                  source[:found.start()], re.MULTILINE):
        raise ValueError("the bundle does not end in one export{...} statement")
    pairs = []
    for item in found.group(1).split(","):
        names = item.split()
        if len(names) == 1 and re.fullmatch(_NAME, names[0]):
            pairs.append(f"{names[0]}:{names[0]}")
        elif len(names) == 3 and names[1] == "as" and all(re.fullmatch(_NAME, n)
                                                          for n in names[::2]):
            pairs.append(f"{names[2]}:{names[0]}")
        else:
            raise ValueError(f"unexpected export item {item.strip()!r}")
    return f"{source[:found.start()]}globalThis.{global_name}={{{','.join(pairs)}}};\n"


def _inline_script(code: str, name: str) -> str:
    if _UNSAFE_IN_SCRIPT.search(code):
        raise ValueError(f"{name} contains a sequence that would break an inline <script>")
    # Modules run in document order, in strict mode, once the page is parsed.
    return f'<script type="module" data-src="{name}">\n{code}\n</script>'


@functools.lru_cache(maxsize=1)
def monitor_html() -> str:
    """The monitor's HTML document, every script and style inside it."""
    page = _read("assets", "monitor.html")
    scripts = "\n".join([
        _inline_script(bundle_as_script(_read("vendor", VENDORED_BUNDLE)), VENDORED_BUNDLE),
        _inline_script(_read("assets", "terminal.js"), "terminal.js"),
        _inline_script(_read("assets", "monitor.js").replace("0.0.0-monitor", __version__),
                       "monitor.js"),
    ])
    css = _read("assets", "monitor.css")
    if "</style" in css.lower():
        raise ValueError("monitor.css would end its <style> element")
    return page.replace("/*STYLE*/", css).replace("<!--SCRIPTS-->", scripts)


def monitor_extension() -> Apps:
    """The MCP Apps extension with the monitor resource: passed to ``MCPServer``, it
    serves the resource and advertises ``io.modelcontextprotocol/ui`` under the
    server's ``capabilities.extensions``."""
    apps = Apps()
    apps.add_html_resource(
        MONITOR_URI, monitor_html(), name="job-monitor", title="Job monitor",
        description="Live output, status, elapsed time, CPU/RAM/GPU and a cancel button "
                    "for a run_code_long or get_job job.",
        prefers_border=True)
    return apps


async def advertise_on_handshake(ctx: ServerRequestContext[Any, Any],
                                 call_next: CallNext) -> HandlerResult:
    """Server middleware: ``io.modelcontextprotocol/ui`` in the ``initialize`` result too.

    The SDK advertises extensions on the 2026-07-28 wire (``server/discover``) but sieves
    ``capabilities.extensions`` out of the 2025-11-25 ``initialize`` result, whose schema
    lacks it; the hosts that render apps today use that handshake, and the MCP Apps spec
    negotiates through ``capabilities.extensions`` on it (clients send theirs there).
    """
    result = await call_next(ctx)
    if ctx.method == "initialize" and isinstance(result, dict):
        caps = result.get("capabilities")
        if isinstance(caps, dict):
            extensions = caps.setdefault("extensions", {})
            if isinstance(extensions, dict):
                extensions.setdefault(EXTENSION_ID, {})
    return result
