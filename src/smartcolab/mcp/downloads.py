"""Fetch a job's ``download`` globs into the local save directory (the backend's file part)."""

from __future__ import annotations

import fnmatch
from pathlib import PurePosixPath

from smartcolab.mcp.deps import BridgeDeps
from smartcolab.shared.errors import SmartColabError

MAX_FILES = 50
GLOB_CHARS = set("*?[")


def _base_dir(pattern: str) -> str:
    """The longest leading directory of ``pattern`` without glob characters."""
    parts: list[str] = []
    for part in PurePosixPath(pattern).parts[:-1]:
        if GLOB_CHARS & set(part):
            break
        parts.append(part)
    return "/".join(parts)


async def matching_paths(deps: BridgeDeps, runtime: str, pattern: str) -> list[str]:
    _, client = await deps.registry.client(runtime)
    if not GLOB_CHARS & set(pattern):
        return [pattern]
    found: list[str] = []
    page = await client.list_files(_base_dir(pattern), recursive=True, limit=10_000)
    for entry in page.entries:
        if entry.type == "file" and fnmatch.fnmatch(entry.path, pattern):
            found.append(entry.path)
            if len(found) >= MAX_FILES:
                break
    return found


async def fetch_downloads(deps: BridgeDeps, runtime: str, patterns: list[str]) -> list[str]:
    """Download every file matching ``patterns``; return one note per file or problem."""
    _, client = await deps.registry.client(runtime)
    notes: list[str] = []
    for pattern in patterns:
        try:
            paths = await matching_paths(deps, runtime, pattern)
        except SmartColabError as exc:
            notes.append(f"download {pattern!r}: {exc.code}: {exc.message}")
            continue
        if not paths:
            notes.append(f"download {pattern!r}: no file matched.")
        for path in paths:
            try:
                local_name = path.replace("/", "__")
                got = await client.download(path, deps.settings.save_dir, local_name,
                                            overwrite=True)
                notes.append(f"downloaded {path} -> {got.path} ({got.size:,} bytes, "
                             f"sha256 {got.sha256[:16]}...)")
            except SmartColabError as exc:
                notes.append(f"download {path!r} failed: {exc.code}: {exc.message}")
    return notes
