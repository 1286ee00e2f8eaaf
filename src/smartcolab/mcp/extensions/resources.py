"""MCP resources: job output pages and the files this bridge saved, with links in results.

* ``smartcolab://jobs/{job_id}/output/{page}``: a job's text output, ``PAGE_BYTES`` a page
  (page 0 first), from the runtime that ran it.
* ``smartcolab://saved/{name}``: a file in the save directory (extra images, outputs and
  downloads) that a tool result of this bridge named.  Only those: the name is checked
  against a strict pattern and the journal's ``artifacts`` list, and must be a regular
  file (not a link) directly inside the save directory.
* Tool results keep their text; ``ResourceLinks`` adds ``resource_link`` items for the
  job's output and for each saved file the text names, records those files, lists them
  in ``resources/list``, and takes ``prompts`` out of the capabilities (none exist).
"""

from __future__ import annotations

import functools
import mimetypes
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.shared.exceptions import MCPError
from mcp.types import METHOD_NOT_FOUND

from smartcolab.mcp.deps import BridgeContext, BridgeDeps, deps_of
from smartcolab.shared.errors import SmartColabError
from smartcolab.shared.protocol import JOB_ID_PATTERN

PAGE_BYTES = 100_000
MAX_SAVED_BYTES = 32 * 1024 * 1024
SAVED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
OUTPUT_URI = "smartcolab://jobs/{job_id}/output/{page}"
SAVED_URI = "smartcolab://saved/{name}"
_TRAILING = ".,;:)]'\""


def saved_file(deps: BridgeDeps, name: str) -> Path:
    """The saved file ``name`` if this bridge saved it; else ``ResourceError``."""
    save_dir = deps.settings.save_dir.resolve()
    if not SAVED_NAME.match(name) or ".." in name or not deps.journal.has_artifact(name):
        raise ResourceNotFoundError(
            f"no saved file {name!r} (only files this bridge saved are served)")
    path = save_dir / name
    try:
        info = path.lstat()
    except OSError:
        raise ResourceNotFoundError(f"saved file {name!r} is gone from {save_dir}") from None
    if not stat.S_ISREG(info.st_mode) or path.resolve().parent != save_dir:
        raise ResourceError(f"{name!r} is not a plain file in the save directory")
    if info.st_size > MAX_SAVED_BYTES:
        raise ResourceError(f"{name!r} is {info.st_size:,} bytes; over {MAX_SAVED_BYTES:,} "
                            "it is not served (open it from the save directory)")
    return path


async def job_output(job_id: str, page: str, ctx: BridgeContext) -> str:
    """One page of a job's text output (pages of 100,000 bytes; 0 first)."""
    if not re.match(JOB_ID_PATTERN, job_id) or not page.isdigit():
        raise ResourceError("expected smartcolab://jobs/JOB_ID/output/PAGE (PAGE: 0, 1, ...)")
    deps = deps_of(ctx)
    entry = deps.journal.get(job_id)
    try:
        _, client = await deps.registry.client(entry.runtime if entry else None)
        got = await client.job_output(job_id, offset=int(page) * PAGE_BYTES, limit=PAGE_BYTES)
    except SmartColabError as exc:
        raise ResourceError(f"{exc.code}: {exc.message}") from None
    return got.text


async def saved(name: str, ctx: BridgeContext) -> bytes:
    """A file this bridge saved (an extra image, an output, a download)."""
    return saved_file(deps_of(ctx), unquote(name)).read_bytes()


def register(server: MCPServer[Any]) -> None:
    server.resource(OUTPUT_URI, name="job_output", title="Job output (paged)",
                    mime_type="text/plain")(job_output)
    server.resource(SAVED_URI, name="saved_file", title="A file the bridge saved",
                    mime_type="application/octet-stream")(saved)


def _link(uri: str, name: str, mime: str, size: int | None = None) -> dict[str, Any]:
    link: dict[str, Any] = {"type": "resource_link", "uri": uri, "name": name, "mimeType": mime}
    if size is not None:
        link["size"] = size
    return link


def _resolved(save_dir: Path) -> Path:
    """The save directory's real path, resolved once per bridge instead of on every tool
    result (a stat per component); a relative one each time (it follows the working
    directory).  Should it move under a symlink later, its files resolve elsewhere and
    are not linked: the check fails closed."""
    return _resolved_absolute(save_dir) if save_dir.is_absolute() else save_dir.resolve()


@functools.lru_cache(maxsize=8)
def _resolved_absolute(save_dir: Path) -> Path:
    return save_dir.resolve()


def saved_names(deps: BridgeDeps, text: str) -> list[str]:
    """Files directly in the save directory that ``text`` names by their path."""
    save_dir = _resolved(deps.settings.save_dir)
    names: list[str] = []
    for root in {str(deps.settings.save_dir), str(save_dir)}:
        if root.rstrip("/") + "/" not in text:  # the common case: no path of it named
            continue
        for match in re.finditer(re.escape(root.rstrip("/")) + r"/(\S+)", text):
            name = match.group(1)
            while name and not (save_dir / name).is_file() and name[-1] in _TRAILING:
                name = name[:-1]
            path = save_dir / name
            if (SAVED_NAME.match(name) and name not in names and path.is_file()
                    and not path.is_symlink() and path.resolve().parent == save_dir):
                names.append(name)
    return names


def add_links(deps: BridgeDeps, result: dict[str, Any]) -> None:
    content = result.get("content")
    if not isinstance(content, list):
        return
    text = "\n".join(str(c.get("text", "")) for c in content if c.get("type") == "text")
    links = []
    data = result.get("structuredContent")
    if isinstance(data, Mapping) and isinstance(data.get("job_id"), str) \
            and data.get("output_bytes"):
        job_id = data["job_id"]
        links.append(_link(f"smartcolab://jobs/{quote(job_id)}/output/0",
                           f"output of job {job_id}", "text/plain"))
    for name in saved_names(deps, text):
        deps.journal.record_artifact(name)
        size = (deps.settings.save_dir / name).stat().st_size
        links.append(_link(f"smartcolab://saved/{quote(name)}", name, _mime(name), size))
    content.extend(links)


def _mime(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


class ResourceLinks:
    """Middleware: links in tool results, saved files in resources/list, no prompts."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
                       ) -> HandlerResult:
        if ctx.method.startswith("prompts/"):
            raise MCPError(METHOD_NOT_FOUND, "Method not found: this server has no prompts")
        result = await call_next(ctx)
        if not isinstance(result, dict):
            return result
        deps = ctx.lifespan_context
        if ctx.method in ("initialize", "server/discover"):
            result.get("capabilities", {}).pop("prompts", None)
        elif ctx.method == "tools/call" and isinstance(deps, BridgeDeps):
            add_links(deps, result)
        elif ctx.method == "resources/list" and isinstance(deps, BridgeDeps):
            for name in deps.journal.artifacts():
                try:
                    path = saved_file(deps, name)
                except ResourceError:
                    continue
                result.setdefault("resources", []).append(
                    {"uri": f"smartcolab://saved/{quote(name)}", "name": name,
                     "mimeType": _mime(name), "size": path.stat().st_size})
        return result
