"""Small files to and from a Colab tab, through the control cell (``kernelside/tab/files.py``).

The page offers no file transfer: bytes go base64 in control-cell answers,
``CHUNK_BYTES`` per cell run, checked with sha256 at the end, written atomically here
(``local_files``).  Only files up to ``MAX_FILE_BYTES`` each way; a bigger one is refused
up front with what to use instead (Google Drive, or the ``colab`` kind's file transfer).
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import anyio

from smartcolab.client.colabtab.control import Control
from smartcolab.client.http.transfer import DownloadResult
from smartcolab.client.local_files import (
    ProgressFn,
    discard,
    hash_local,
    local_target,
    part_paths,
    publish,
    refuse_existing,
    remote_name,
)
from smartcolab.shared.errors import (
    ChecksumMismatch,
    FileExistsOnRuntime,
    FileNotFoundOnRuntime,
    PayloadTooLarge,
    RuntimeMisbehaved,
)
from smartcolab.shared.protocol import FileEntry, FileList, FileStat, UploadResult

MAX_FILE_BYTES = 8 * 1024 * 1024
CHUNK_BYTES = 512 * 1024  # base64 in one page output, which the bridge caps at 1 MiB
INSTEAD = ("a Colab tab moves files through visible notebook cells, so only small ones: "
           "for bigger files mount Google Drive in the notebook (google.colab.drive.mount) "
           "and move them there, or use a runtime of kind 'colab', which transfers files "
           "directly")


def _too_big(what: str, size: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"{what} is {size:,} bytes, over the {MAX_FILE_BYTES:,} a Colab tab "
                           f"transfers; {INSTEAD}", details={"size": size,
                                                             "limit": MAX_FILE_BYTES})


async def _report(progress: ProgressFn | None, done: int, total: int) -> None:
    if progress is not None:
        pending = progress(done, total)
        if pending is not None:
            await pending


def _write_synced(path: Path, body: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())


class TabFiles:
    def __init__(self, control: Control) -> None:
        self.control = control

    async def _call(self, function: str, **args: Any) -> dict[str, Any]:
        await self.control.ensure_agent()
        answer = await self.control.ask({"op": "call", "module": "tab.files",
                                         "function": function, "args": args})
        value = answer.get("value")
        if "error" in answer or not isinstance(value, dict):
            raise RuntimeMisbehaved(f"the Colab page's kernel failed {function}: "
                                    f"{str(answer.get('error'))[:300]}")
        return value

    async def stat(self, path: str, *, with_hash: bool = True) -> FileStat:
        found = await self._call("stat", path=path, with_hash=with_hash)
        if found.get("missing"):
            raise FileNotFoundOnRuntime(f"{path!r} does not exist in the Colab tab's runtime",
                                        details={"path": path})
        return FileStat.model_validate(found)

    async def list_files(self, path: str = "", *, recursive: bool = False,
                         pattern: str | None = None, limit: int = 1000) -> FileList:
        found = await self._call("listing", path=path, recursive=recursive, pattern=pattern,
                                 limit=limit)
        return FileList(root=str(found.get("root", "")), path=path,
                        entries=[FileEntry.model_validate(e) for e in found.get("entries", [])],
                        total=int(found.get("total", 0)))

    async def download(self, remote_path: str, save_dir: str | os.PathLike[str],
                       local_name: str | None = None, *, overwrite: bool = False,
                       progress: ProgressFn | None = None) -> DownloadResult:
        final = local_target(save_dir, local_name or remote_name(remote_path))
        refuse_existing(final, overwrite)
        remote = await self.stat(remote_path)
        if remote.type != "file":
            raise FileNotFoundOnRuntime(f"{remote_path!r} is a {remote.type}, not a file")
        if remote.size > MAX_FILE_BYTES:
            raise _too_big(remote_path, remote.size)
        final.parent.mkdir(parents=True, exist_ok=True)
        part, _ = part_paths(final)
        chunks: list[bytes] = []
        offset = 0
        while offset < remote.size:
            chunk = await self._call("read", path=remote_path, offset=offset,
                                     length=min(CHUNK_BYTES, remote.size - offset))
            data = base64.b64decode(str(chunk.get("data", "")))
            if not data:
                break
            chunks.append(data)
            offset += len(data)
            await _report(progress, offset, remote.size)
        body = b"".join(chunks)
        digest = hashlib.sha256(body)
        if offset != remote.size or digest.hexdigest() != remote.sha256:
            raise ChecksumMismatch(f"{remote_path!r} changed or arrived damaged while it was "
                                   "read from the Colab tab; try again")
        try:
            await anyio.to_thread.run_sync(_write_synced, part, body)
            publish(part, final, overwrite)
        except BaseException:
            discard(part)
            raise
        return DownloadResult(path=final, size=offset, sha256=digest.hexdigest(),
                              wire_bytes=offset * 4 // 3)

    async def upload(self, local_path: str | os.PathLike[str], remote_path: str, *,
                     overwrite: bool = False, progress: ProgressFn | None = None
                     ) -> UploadResult:
        path, size, sha = hash_local(local_path)
        if size > MAX_FILE_BYTES:
            raise _too_big(str(path), size)
        body = await anyio.Path(path).read_bytes()
        offset = 0
        while True:
            data = body[offset:offset + CHUNK_BYTES]
            final = offset + len(data) >= len(body)
            done = await self._call("write", path=remote_path,
                                    data=base64.b64encode(data).decode("ascii"),
                                    offset=offset, final=final, overwrite=overwrite,
                                    sha256=sha)
            if done.get("error") == "exists":
                raise FileExistsOnRuntime(f"{remote_path!r} already exists in the Colab tab's "
                                          "runtime; pass overwrite=true to replace it")
            if done.get("error"):
                raise ChecksumMismatch(f"{remote_path!r} arrived damaged in the Colab tab's "
                                       "runtime; try again")
            offset += len(data)
            await _report(progress, offset, size)
            if final:
                return UploadResult.model_validate(done)
