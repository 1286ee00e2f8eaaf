"""Tools that move files: list_colab_files, download_from_colab, upload_to_colab."""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, TextContent
from pydantic import Field

from smartcolab.client.backend import Capability
from smartcolab.client.local_files import ProgressFn
from smartcolab.mcp.annotations import ADDS, READS_REMOTE, REPLACES_REMOTE
from smartcolab.mcp.deps import BridgeContext, deps_of
from smartcolab.mcp.params import RuntimeName, ToolDef
from smartcolab.mcp.tool_errors import translated
from smartcolab.shared.errors import LocalPathRefused

log = logging.getLogger(__name__)
MB = 1024 * 1024
# MCP progress for transfers: at most one notification per half second.
PROGRESS_EVERY_S = 0.5

RemotePath = Annotated[str, Field(
    max_length=4096, description="Under the runtime's working root; '' is the root.")]


def _allowed_local(path: str, roots: tuple[Path, ...]) -> Path:
    """Uploads read only from under the configured local roots (default: the save dir)."""
    candidate = Path(path).expanduser()
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    resolved = candidate.resolve()
    for root in roots:
        if resolved.is_relative_to(root.resolve()):
            return resolved
    allowed = ", ".join(str(r) for r in roots)
    raise LocalPathRefused(f"{path} is outside the directories uploads may read from ({allowed}). "
                           "Copy the file there first, or start the bridge with --upload-root.")


def mcp_progress(ctx: Context[Any, Any], verb: str, *, every_s: float = PROGRESS_EVERY_S) -> ProgressFn:
    """A transfer progress callback that sends MCP progress (bytes done / total).

    At most one notification per ``every_s`` (and the last one), never going
    backwards (a restarted download does not report until it passes its best).
    """
    last_sent = -1
    last_at = -math.inf

    async def report(done: int, total: int | None) -> None:
        nonlocal last_sent, last_at
        now = time.monotonic()
        if done <= last_sent or (now - last_at < every_s and done != total):
            return
        last_sent, last_at = done, now
        of = f" of {total / MB:,.1f}" if total is not None else ""
        try:
            await ctx.report_progress(done, total, f"{verb} {done / MB:,.1f}{of} MB")
        except Exception as exc:  # a progress failure must never fail the transfer
            log.debug("progress report failed: %s", exc)

    return report


async def list_colab_files(
    path: RemotePath = "",
    pattern: Annotated[str | None, Field(max_length=200, description="Glob, e.g. '*.csv'.")] = None,
    recursive: Annotated[bool, Field(description="Include subdirectories.")] = False,
    limit: Annotated[int, Field(ge=1, le=1000)] = 200,
    runtime: RuntimeName = None,
    *, ctx: BridgeContext,
) -> CallToolResult:
    """Files on the runtime (type, size, modified) under its working root (/content,
    /kaggle/working)."""
    deps = deps_of(ctx)
    with translated(runtime):
        spec, client = await deps.registry.client(runtime)
        page = await client.list_files(path, recursive=recursive, pattern=pattern,
                                       limit=limit)
        rows = [f"{e.type:<4} {e.size:>14,}  "
                f"{dt.datetime.fromtimestamp(e.mtime):%Y-%m-%d %H:%M}  {e.path}"
                for e in page.entries]
        more = (f"\n(showing {len(rows)} of {page.total}; narrow with pattern or path)"
                if page.next_cursor else "")
        text = (f"{page.total} entr{'y' if page.total == 1 else 'ies'} under "
                f"{page.path or '.'} on {spec.name!r} (root {page.root}):\n"
                + ("\n".join(rows) or "(empty)") + more)
        return CallToolResult(content=[TextContent(type="text", text=text)],
                              structured_content=page.model_dump(mode="json"))


async def download_from_colab(
    path: RemotePath,
    ctx: BridgeContext,
    local_name: Annotated[str | None, Field(
        max_length=255, description="Local file name (default: the remote name).")] = None,
    overwrite: Annotated[bool, Field(description="Replace an existing local file.")] = False,
    runtime: RuntimeName = None,
) -> CallToolResult:
    """Copy a runtime file or directory to the local save directory (resumable,
    sha256-verified)."""
    deps = deps_of(ctx)
    with translated(runtime):
        spec, client = await deps.registry.client(runtime)
        head = await client.stat(path, with_hash=False)
        if head.type == "dir" and client.supports(Capability.ARCHIVES):
            archive = await client.download_dir(
                path, deps.settings.save_dir, local_name, overwrite=overwrite,
                progress=mcp_progress(ctx, "downloaded"))
            text = (f"downloaded directory {path} from {spec.name!r} to {archive.path} "
                    f"({archive.members} entries, {archive.wire_bytes:,} bytes transferred)")
            if archive.refused:
                text += f"; refused unsafe members: {', '.join(archive.refused[:10])}"
            return CallToolResult(content=[TextContent(type="text", text=text)],
                                  structured_content={"path": str(archive.path),
                                                      "members": archive.members})
        got = await client.download(path, deps.settings.save_dir, local_name,
                                    overwrite=overwrite, progress=mcp_progress(ctx, "downloaded"))
        text = (f"downloaded {path} from {spec.name!r} to {got.path} ({got.size:,} bytes, "
                f"sha256 {got.sha256})")
        return CallToolResult(content=[TextContent(type="text", text=text)],
                              structured_content={"path": str(got.path), "size": got.size,
                                                  "sha256": got.sha256})


async def upload_to_colab(
    local_path: Annotated[str, Field(
        min_length=1, max_length=4096,
        description="Relative to the save directory, or absolute under an upload "
                    "root.")],
    ctx: BridgeContext,
    remote_path: Annotated[str | None, Field(
        max_length=4096, description="Destination (default: its name at the root).")] = None,
    overwrite: Annotated[bool, Field(description="Replace an existing remote file.")] = False,
    runtime: RuntimeName = None,
) -> CallToolResult:
    """Copy a local file (under the save directory or an --upload-root) to the runtime,
    sha256-verified, atomically."""
    deps = deps_of(ctx)
    with translated(runtime):
        source = _allowed_local(local_path, deps.settings.upload_roots)
        spec, client = await deps.registry.client(runtime)
        done = await client.upload(
            source, remote_path or source.name, overwrite=overwrite,
            progress=mcp_progress(ctx, "uploaded"))
        text = (f"uploaded {source} to {done.path} on {spec.name!r} ({done.size:,} bytes, "
                f"sha256 {done.sha256}{', replaced the old file' if done.overwritten else ''})")
        return CallToolResult(content=[TextContent(type="text", text=text)],
                              structured_content=done.model_dump(mode="json"))


TOOLS = [
    ToolDef(list_colab_files, None, READS_REMOTE),
    ToolDef(download_from_colab, None, ADDS),
    ToolDef(upload_to_colab, None, REPLACES_REMOTE),
]
