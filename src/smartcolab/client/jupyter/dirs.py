"""Directory downloads from a plain Jupyter Server: packed in the kernel, fetched as a file.

The contents API has no archive endpoint.  ``kernelside/dirpack.py`` writes the directory
as one gzip tar under ``smartcolab-jobs/archives/`` (capped like every archive we take
from a runtime), the bridge downloads that file like any other (resumable, its sha256
checked), extracts it with the same safe extractor as our own runtime's archives
(``client/http/transfer_dir.py``: no member outside the top directory, no links,
sizes and member count capped), then deletes the archive on both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from smartcolab.client.http.transfer_dir import ArchiveResult, _extract_into
from smartcolab.client.jupyter.durable import JOBS_DIR
from smartcolab.client.jupyter.files import JupyterFiles
from smartcolab.client.local_files import OVERWRITE_HINT, ProgressFn, local_target
from smartcolab.client.untrusted import DEFAULT_LIMITS, ByteBudget, TransferLimits
from smartcolab.shared import kernel_code as kc
from smartcolab.shared.errors import LocalPathRefused, NotFound, RuntimeMisbehaved

ARCHIVES_DIR = f"{JOBS_DIR}/archives"
Internal = Callable[[str], Awaitable[str]]


async def download_dir(files: JupyterFiles, internal: Internal, remote_dir: str,
                       save_dir: str | os.PathLike[str], local_name: str | None = None, *,
                       overwrite: bool = False, progress: ProgressFn | None = None,
                       limits: TransferLimits = DEFAULT_LIMITS) -> ArchiveResult:
    name = local_name or (PurePosixPath(remote_dir.replace("\\", "/")).name or "root")
    final = local_target(save_dir, name)
    if (final.exists() or final.is_symlink()) and not overwrite:
        raise LocalPathRefused(f"{final} already exists; {OVERWRITE_HINT}",
                               details={"reason": "exists"})
    final.parent.mkdir(parents=True, exist_ok=True)
    packed: dict[str, Any] = kc.parse(await internal(kc.call("dirpack", "pack", {
        "path": remote_dir, "out_dir": ARCHIVES_DIR, "max_bytes": limits.max_extracted_bytes,
        "max_members": limits.max_members})))
    remote = f"{ARCHIVES_DIR}/{PurePosixPath(str(packed['archive'])).name}"
    if int(packed["size"]) > limits.max_archive_bytes:
        raise RuntimeMisbehaved(f"the archive of '{remote_dir[:200]}' is larger than the cap "
                                f"({limits.max_archive_bytes:,} bytes)")
    try:
        with tempfile.TemporaryDirectory(dir=final.parent, prefix=".smartcolab-dir-") as tmp:
            got = await files.download(remote, tmp, "archive.tar.gz", progress=progress,
                                       limits=limits)
            budget = await asyncio.to_thread(
                ByteBudget.for_folder, final.parent, limits.max_extracted_bytes,
                f"the extracted tree of '{remote_dir[:200]}'", limits)
            members, refused = await asyncio.to_thread(
                _extract_into, Path(got.path), "gzip", final, overwrite, budget,
                limits.max_members)
    finally:
        with contextlib.suppress(NotFound):
            await files.rest.call("DELETE", f"/api/contents/{quote(remote)}",
                                  what="remove the packed archive")
    refused += [f"{s}: not a plain file or directory (left on the runtime)"
                for s in packed.get("skipped", [])]
    return ArchiveResult(path=final, wire_bytes=got.wire_bytes, extracted=True,
                         members=members, refused=refused)
