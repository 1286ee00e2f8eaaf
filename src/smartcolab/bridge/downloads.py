"""Fetch a job's ``download`` globs into the local save directory (uses bridge/transfer.py)."""

from __future__ import annotations

from .deps import BridgeDeps


async def fetch_downloads(deps: BridgeDeps, runtime: str, patterns: list[str]) -> list[str]:
    """Download every file matching ``patterns``; return one note per file or problem."""
    try:
        from . import transfer  # type: ignore[attr-defined]  # arrives with the files branch
    except ImportError:
        return ["download: file transfer is not available in this build."]
    del transfer
    return ["download: not implemented yet."]
