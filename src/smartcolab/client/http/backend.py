"""Our runtime server as a ``RuntimeBackend``: the ``runtime`` kind.

``RuntimeClient`` already speaks the whole core (jobs, sessions, variables, saved
variables); this adds the optional parts through the signed ``/files`` endpoints
(``transfer.py``, ``transfer_dir.py``) and declares every capability.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import ClassVar

from smartcolab.client.backend import Capability, RuntimeBackend
from smartcolab.client.http import transfer, transfer_dir
from smartcolab.client.http.client import RuntimeClient
from smartcolab.client.http.transfer import DownloadResult
from smartcolab.client.http.transfer_dir import ArchiveResult
from smartcolab.client.local_files import ProgressFn
from smartcolab.client.retry import RetryPolicy
from smartcolab.shared.protocol import FileEntry, FileList, FileStat, UploadResult


class HttpBackend(RuntimeClient, RuntimeBackend):
    """A ``RuntimeClient`` that is also the runtime server's backend."""

    kind_label: ClassVar[str] = "a smartcolab runtime server"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(Capability) - {Capability.RELEASE}

    def __init__(self, url: str, secret: str | None, *, retry: RetryPolicy = RetryPolicy(),
                 name: str | None = None, uds: str | None = None) -> None:
        super().__init__(url, secret, retry=retry, uds=uds)
        self.name = name or self.url

    async def list_files(self, path: str = "", *, recursive: bool = False,
                         pattern: str | None = None, limit: int = 1000) -> FileList:
        return await transfer.list_files(self, path, recursive=recursive, pattern=pattern,
                                         limit=limit)

    async def iter_files(self, path: str = "", *, recursive: bool = False,
                         pattern: str | None = None) -> AsyncIterator[FileEntry]:
        async for entry in transfer.iter_files(self, path, recursive=recursive, pattern=pattern):
            yield entry

    async def stat(self, path: str, *, with_hash: bool = True) -> FileStat:
        return await transfer.stat(self, path, with_hash=with_hash)

    async def download(self, remote_path: str, save_dir: str | os.PathLike[str],
                       local_name: str | None = None, *, overwrite: bool = False,
                       progress: ProgressFn | None = None,
                       compress: bool = False) -> DownloadResult:
        return await transfer.download(self, remote_path, save_dir, local_name,
                                       overwrite=overwrite, progress=progress, compress=compress)

    async def upload(self, local_path: str | os.PathLike[str], remote_path: str, *,
                     overwrite: bool = False, progress: ProgressFn | None = None
                     ) -> UploadResult:
        return await transfer.upload(self, local_path, remote_path, overwrite=overwrite,
                                     progress=progress)

    async def download_dir(self, remote_dir: str, save_dir: str | os.PathLike[str],
                           local_name: str | None = None, *, overwrite: bool = False,
                           progress: ProgressFn | None = None) -> ArchiveResult:
        return await transfer_dir.download_dir(self, remote_dir, save_dir, local_name,
                                               overwrite=overwrite, progress=progress)
