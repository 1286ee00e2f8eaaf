"""What a runtime backend offers the tools: one interface, two kinds of runtime.

``RuntimeClient`` (our runtime server: jobs stored remotely) and ``JupyterBackend``
(a plain Jupyter Server or JupyterHub user server: jobs tracked by the bridge) both
implement ``RuntimeBackend``, so jobflow and the tools run the same code paths for
both.  Files differ more (our signed ``/files`` endpoints vs. the contents API), so
``files_for`` picks the file operations of a backend in one place.
"""

from __future__ import annotations

import os
from typing import Protocol

from smartcolab.client.http import transfer
from smartcolab.client.http.client import RuntimeClient
from smartcolab.client.http.transfer import DownloadResult
from smartcolab.client.local_files import ProgressFn
from smartcolab.shared.protocol import (
    CleanupReport,
    CleanupRequest,
    FileList,
    FileStat,
    Health,
    JobList,
    JobSubmit,
    JobView,
    OutputPage,
    Probe,
    SessionList,
    SessionView,
    UploadResult,
    VariableList,
)


class RuntimeBackend(Protocol):
    """The calls the tools make on a runtime, whatever serves it."""

    url: str
    last_epoch: str | None

    async def aclose(self) -> None: ...
    async def health(self) -> Health: ...
    async def probe(self) -> Probe: ...
    async def submit(self, job: JobSubmit, *, wait: float = 0.0) -> JobView: ...
    async def get_job(self, job_id: str, *, wait: float = 0.0,
                      since: int | None = None) -> JobView: ...
    async def cancel_job(self, job_id: str) -> JobView: ...
    async def list_jobs(self, *, limit: int = 50, session: str | None = None,
                        status: str | None = None) -> JobList: ...
    async def job_output(self, job_id: str, *, offset: int = 0,
                         limit: int = 65536) -> OutputPage: ...
    async def sessions(self) -> SessionList: ...
    async def create_session(self, name: str) -> SessionView: ...
    async def restart_session(self, name: str) -> SessionView: ...
    async def delete_session(self, name: str) -> None: ...
    async def variables(self, session: str = "main", *,
                        include_private: bool = False) -> VariableList: ...
    async def cleanup(self, session: str = "main",
                      request: CleanupRequest | None = None) -> CleanupReport: ...


class RuntimeFiles(Protocol):
    """File operations, as the files tools use them."""

    async def list_files(self, path: str = "", *, recursive: bool = False,
                         pattern: str | None = None, limit: int = 1000) -> FileList: ...
    async def stat(self, path: str, *, with_hash: bool = True) -> FileStat: ...
    async def download(self, remote_path: str, save_dir: str | os.PathLike[str],
                       local_name: str | None = None, *, overwrite: bool = False,
                       progress: ProgressFn | None = None) -> DownloadResult: ...
    async def upload(self, local_path: str | os.PathLike[str], remote_path: str, *,
                     overwrite: bool = False, progress: ProgressFn | None = None
                     ) -> UploadResult: ...


class HttpFiles:
    """Our runtime server's file endpoints (``client/http/transfer.py``) behind ``RuntimeFiles``."""

    def __init__(self, client: RuntimeClient) -> None:
        self.client = client

    async def list_files(self, path: str = "", *, recursive: bool = False,
                         pattern: str | None = None, limit: int = 1000) -> FileList:
        return await transfer.list_files(self.client, path, recursive=recursive,
                                         pattern=pattern, limit=limit)

    async def stat(self, path: str, *, with_hash: bool = True) -> FileStat:
        return await transfer.stat(self.client, path, with_hash=with_hash)

    async def download(self, remote_path: str, save_dir: str | os.PathLike[str],
                       local_name: str | None = None, *, overwrite: bool = False,
                       progress: ProgressFn | None = None) -> DownloadResult:
        return await transfer.download(self.client, remote_path, save_dir, local_name,
                                       overwrite=overwrite, progress=progress)

    async def upload(self, local_path: str | os.PathLike[str], remote_path: str, *,
                     overwrite: bool = False, progress: ProgressFn | None = None
                     ) -> UploadResult:
        return await transfer.upload(self.client, local_path, remote_path, overwrite=overwrite,
                                     progress=progress)


def files_for(backend: RuntimeBackend) -> RuntimeFiles:
    """The file operations of ``backend`` (the one place that tells the kinds apart)."""
    if isinstance(backend, RuntimeClient):
        return HttpFiles(backend)
    files: RuntimeFiles | None = getattr(backend, "files", None)
    if files is None:
        raise TypeError(f"{type(backend).__name__} offers no file operations")
    return files
