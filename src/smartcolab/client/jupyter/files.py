"""Files on a plain Jupyter Server: the contents API (``/api/contents``) and ``/files/``.

* list and stat: ``GET /api/contents/PATH`` (``hash=1`` asks the server for the
  file's sha256, Jupyter Server 2.11+; older servers: the digest is computed by
  code in the kernel).
* download: ``GET /files/PATH`` streams the bytes and honours ``Range``; the one
  resumable skeleton (``client/transfer/resumable.py``) does the rest: a dropped download
  resumes from its ``.part`` file, no more bytes than stated are kept, and it is
  published only after its sha256 matched the server's.
* upload: the contents API's chunked upload (``chunk`` = 1, 2, ..., -1, base64) into
  ``NAME.smartcolab-part`` beside the target, resumed from that file's size
  after a drop, checked against the local sha256, then renamed (``PATCH``) onto the
  target.  The API has no atomic replace: with ``overwrite`` the old file is deleted
  just before the rename.
* directories: the API has no archive endpoint; download files one by one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import fnmatch
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2

from smartcolab.client.http.transfer import DownloadResult
from smartcolab.client.jupyter.kernel import JupyterRest
from smartcolab.client.local_files import (
    ProgressFn,
    hash_local,
    local_target,
    refuse_existing,
    remote_name,
)
from smartcolab.client.retry import JUPYTER_RETRY
from smartcolab.client.transfer.publish import publish_verified
from smartcolab.client.transfer.resumable import fetch
from smartcolab.client.transfer.source import RangeReply, report, socket_closer
from smartcolab.client.untrusted import DEFAULT_LIMITS, TransferLimits, check_stated_size
from smartcolab.shared.errors import (
    ChecksumMismatch,
    FileExistsOnRuntime,
    FileNotFoundOnRuntime,
    InvalidInput,
    NotFound,
    RuntimeUnreachable,
)
from smartcolab.shared.protocol import FileEntry, FileList, FileStat, UploadResult

ROOT_LABEL = "(jupyter root)"
UPLOAD_CHUNK = 8 * 1024 * 1024  # bytes per contents-API request (sent as base64 JSON)
MAX_LISTED = 10_000

ShaFn = Callable[[str], Awaitable[dict[str, Any]]]


def _clean(path: str) -> str:
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidInput(f"path {path[:200]!r} may not contain '..'")
    return "/".join(parts)


def _mtime(model: dict[str, Any]) -> float:
    stamp = str(model.get("last_modified") or "")
    try:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _type(model: dict[str, Any]) -> str:
    return "dir" if model.get("type") == "directory" else "file"


class _JupyterRanges:
    """``GET /files/PATH`` with ``Range`` as a :class:`RangeSource`; one blocking client.

    The contents API has no ETag, so the version is not compared per response: the
    sha256 check before publishing catches a file that changed meanwhile.
    """

    def __init__(self, rest: JupyterRest) -> None:
        self.rest = rest
        self.http = httpx2.Client(base_url=rest.url, auth=rest.auth,
                                  follow_redirects=False,
                                  timeout=httpx2.Timeout(600.0, connect=10.0))

    def __enter__(self) -> _JupyterRanges:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    @contextlib.contextmanager
    def open_range(self, remote: str, offset: int, version: str | None,
                   compress: bool) -> Iterator[RangeReply]:
        try:
            with self.http.stream("GET", f"/files/{quote(remote)}", headers={
                    "Range": f"bytes={offset}-", "Accept-Encoding": "identity"}) as resp:
                if resp.status_code not in (200, 206):
                    resp.read()
                    self.rest.raise_for_status(resp, f"download '{remote[:200]}'")
                yield RangeReply(partial=resp.status_code == 206, version=None,
                                 encoding=resp.headers.get("content-encoding", "").strip().lower(),
                                 chunks=resp.iter_raw(), wire=lambda: resp.num_bytes_downloaded,
                                 abort=socket_closer(resp))
        except httpx2.TransportError as exc:
            raise self.rest.unreachable(exc) from exc

    def backoff(self, failures: int) -> float:
        return JUPYTER_RETRY.delay(failures)


class JupyterFiles:
    """List, stat, download and upload through a Jupyter Server's standard APIs."""

    def __init__(self, rest: JupyterRest, sha_in_kernel: ShaFn) -> None:
        self.rest = rest
        self._sha_in_kernel = sha_in_kernel

    async def _model(self, path: str, *, content: bool, hashed: bool = False) -> dict[str, Any]:
        params = {"content": "1" if content else "0"}
        if hashed:
            params["hash"] = "1"
        try:
            model: dict[str, Any] = await self.rest.call(
                "GET", f"/api/contents/{quote(path)}", params=params, what=f"'{path[:200]}'")
        except NotFound as exc:
            raise FileNotFoundOnRuntime(f"'{path[:200]}' does not exist on the Jupyter Server",
                                        details={"path": path}) from exc
        return model

    def _entry(self, model: dict[str, Any]) -> FileEntry:
        return FileEntry(name=str(model.get("name", "")), path=str(model.get("path", "")),
                         root=ROOT_LABEL, type=_type(model),  # type: ignore[arg-type]
                         size=int(model.get("size") or 0), mtime=_mtime(model))

    async def list_files(self, path: str = "", *, recursive: bool = False,
                         pattern: str | None = None, limit: int = 1000) -> FileList:
        """Entries under ``path`` (breadth first when ``recursive``), filtered by ``pattern``."""
        path = _clean(path)
        entries: list[FileEntry] = []
        total = 0
        todo = [path]
        while todo and total < MAX_LISTED:
            model = await self._model(todo.pop(0), content=True)
            if model.get("type") != "directory":
                raise InvalidInput(f"'{path[:200]}' is a file; list its directory instead")
            for child in sorted(model.get("content") or [], key=lambda m: str(m.get("path"))):
                if recursive and child.get("type") == "directory":
                    todo.append(str(child["path"]))
                if pattern and not fnmatch.fnmatch(str(child.get("name")), pattern):
                    continue
                total += 1
                if len(entries) < limit:
                    entries.append(self._entry(child))
        more = "more" if total > len(entries) else None
        return FileList(root=ROOT_LABEL, path=path, entries=entries, next_cursor=more, total=total)

    async def stat(self, path: str, *, with_hash: bool = True) -> FileStat:
        path = _clean(path)
        model = await self._model(path, content=False)
        if with_hash and _type(model) == "file":  # hash=1 on a directory is a server error
            model = await self._model(path, content=False, hashed=True)
        digest = model.get("hash") if model.get("hash_algorithm") == "sha256" else None
        if with_hash and digest is None and _type(model) == "file":
            digest = (await self._sha_in_kernel(path))["sha256"]
        # No ETag from the contents API: size + modification time identify a version.
        return FileStat(path=path, root=ROOT_LABEL, type=_type(model),  # type: ignore[arg-type]
                        size=int(model.get("size") or 0), mtime=_mtime(model),
                        sha256=digest, etag=f"{model.get('size')}-{model.get('last_modified')}")

    # ------------------------------------------------------------ download
    async def download(self, remote_path: str, save_dir: str | os.PathLike[str],
                       local_name: str | None = None, *, overwrite: bool = False,
                       progress: ProgressFn | None = None,
                       limits: TransferLimits = DEFAULT_LIMITS) -> DownloadResult:
        """Stream ``/files/PATH`` into ``save_dir``: resumable, sha256-verified, atomic."""
        remote = _clean(remote_path)
        final = local_target(save_dir, local_name or remote_name(remote))
        refuse_existing(final, overwrite)
        final.parent.mkdir(parents=True, exist_ok=True)
        head = await self.stat(remote, with_hash=True)
        if head.type != "file":
            raise InvalidInput(f"'{remote[:200]}' is a directory: a Jupyter Server has no "
                               "archive endpoint, so download its files one by one "
                               "(list_colab_files with recursive=true shows them).")
        check_stated_size(head.size, remote[:200])
        with _JupyterRanges(self.rest) as source:
            got = await fetch(source, remote, final, size=head.size, version=head.etag,
                              attempts=JUPYTER_RETRY.attempts, progress=progress, limits=limits)
        await publish_verified(got, head.sha256, final, overwrite, remote)
        return DownloadResult(path=final, size=got.size, sha256=got.sha256,
                              resumed_from=got.resumed_from, attempts=got.attempts,
                              wire_bytes=got.wire_bytes)

    # ------------------------------------------------------------ upload
    async def upload(self, local_path: str | os.PathLike[str], remote_path: str, *,
                     overwrite: bool = False, progress: ProgressFn | None = None
                     ) -> UploadResult:
        """Chunked upload into a hidden part file, verified, then renamed onto the target."""
        source, size, digest = await asyncio.to_thread(hash_local, local_path)
        remote = _clean(remote_path)
        if not remote:
            raise InvalidInput("give the remote file name")
        existed = await self._exists(remote)
        if existed and not overwrite:
            raise FileExistsOnRuntime(f"'{remote[:200]}' exists on the Jupyter Server; pass "
                                      "overwrite=true to replace it", details={"path": remote})
        # Not a dot file: Jupyter Server refuses hidden files unless allow_hidden is set.
        part = f"{remote}.smartcolab-part"
        await self._make_parents(remote)
        sent = await self._part_size(part)
        if sent > size or sent % UPLOAD_CHUNK:
            sent = 0  # not ours, or from another file: start again
        await self._send(source, part, size, sent, progress)
        check = await self.stat(part, with_hash=True)
        if check.sha256 != digest or check.size != size:
            await self._delete(part)
            raise ChecksumMismatch(f"the server stored {check.size} bytes with sha256 "
                                   f"{check.sha256}, expected {size} bytes with {digest}; "
                                   "nothing was written; upload again")
        if existed:
            await self._delete(remote)
        await self.rest.call("PATCH", f"/api/contents/{quote(part)}", json_body={"path": remote},
                             what=f"rename onto '{remote[:200]}'")
        return UploadResult(path=remote, size=size, sha256=digest, overwritten=existed)

    async def _send(self, source: Path, part: str, size: int, offset: int,
                    progress: ProgressFn | None) -> None:
        number = offset // UPLOAD_CHUNK + 1
        failures = 0
        with open(source, "rb") as f:  # noqa: ASYNC230 - local disk
            f.seek(offset)
            while True:
                data = await asyncio.to_thread(f.read, UPLOAD_CHUNK)
                last = offset + len(data) >= size
                # One request in all is a plain (not chunked) save.
                chunk = None if number == 1 and last else (-1 if last else number)
                body: dict[str, Any] = {"type": "file", "format": "base64",
                                        "content": base64.b64encode(data).decode()}
                if chunk is not None:
                    body["chunk"] = chunk
                try:
                    await self.rest.call("PUT", f"/api/contents/{quote(part)}", json_body=body,
                                         timeout=600.0, what="upload")
                except RuntimeUnreachable:
                    failures += 1
                    if failures >= JUPYTER_RETRY.attempts:
                        raise
                    await asyncio.sleep(JUPYTER_RETRY.delay(failures))
                    # The chunk may have landed: continue from what the server holds.
                    offset = await self._part_size(part)
                    if offset % UPLOAD_CHUNK:
                        offset = 0
                    number = offset // UPLOAD_CHUNK + 1
                    f.seek(offset)
                    continue
                offset += len(data)
                number += 1
                await report(progress, offset, size)
                if last:
                    return

    async def _make_parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            if not await self._exists(folder):
                await self.rest.call("PUT", f"/api/contents/{quote(folder)}",
                                     json_body={"type": "directory"}, what=f"create '{folder}'")

    async def _exists(self, path: str) -> bool:
        try:
            await self._model(path, content=False)
        except FileNotFoundOnRuntime:
            return False
        return True

    async def _part_size(self, path: str) -> int:
        try:
            return int((await self._model(path, content=False)).get("size") or 0)
        except FileNotFoundOnRuntime:
            return 0

    async def _delete(self, path: str) -> None:
        with contextlib.suppress(NotFound):
            await self.rest.call("DELETE", f"/api/contents/{quote(path)}", what="delete")


