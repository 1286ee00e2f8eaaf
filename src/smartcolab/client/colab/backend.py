"""The ``colab`` kind: a runtime assigned by Colab, driven as a Jupyter Server through its proxy.

``ColabBackend`` speaks the backend interface by forwarding each call to the
``JupyterBackend`` on the assignment's proxy URL; how that assignment is found or made,
kept alive, released and reported as STATE LOST when gone is ``assignment``.  A call
that fails as if the runtime went away is diagnosed there, and its probe adds how long
the runtime may still live.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import ClassVar

from smartcolab.client.backend import Capability
from smartcolab.client.colab.assignment import ColabAssignment
from smartcolab.client.http.transfer import DownloadResult
from smartcolab.client.http.transfer_dir import ArchiveResult
from smartcolab.client.jupyter.server import JupyterBackend
from smartcolab.client.local_files import ProgressFn
from smartcolab.shared.protocol import (
    CleanupReport,
    CleanupRequest,
    FileEntry,
    FileList,
    FileStat,
    Health,
    JobList,
    JobSubmit,
    JobView,
    OutputPage,
    PersistManifest,
    Probe,
    RestoreReport,
    RestoreRequest,
    SaveRequest,
    SessionList,
    SessionView,
    UploadResult,
    VariableList,
)


class ColabBackend(ColabAssignment):
    """One Colab runtime, assigned on first use and spoken to as a Jupyter Server."""

    kind_label: ClassVar[str] = "a Colab runtime (a Jupyter Server behind Colab's proxy)"
    capabilities: ClassVar[frozenset[Capability]] = JupyterBackend.capabilities | {
        Capability.RELEASE}

    @property
    def tracking_note(self) -> str | None:
        return self._inner.tracking_note if self._inner else None

    # ------------------------------------------------------------ the core, forwarded
    async def health(self) -> Health:
        return await self._run(lambda b: b.health())

    async def probe(self) -> Probe:
        p = await self._run(lambda b: b.probe())
        left = self.lifetime().get("max_lifetime_left_s")
        return p.model_copy(update={"notes": [*p.notes, *self._notes()],
                                    "session_time_left_s": left})

    async def submit(self, job: JobSubmit, *, wait: float = 0.0) -> JobView:
        return await self._job(lambda b: b.submit(job, wait=wait))

    async def get_job(self, job_id: str, *, wait: float = 0.0, since: int | None = None) -> JobView:
        return await self._job(lambda b: b.get_job(job_id, wait=wait, since=since))

    async def cancel_job(self, job_id: str) -> JobView:
        return await self._run(lambda b: b.cancel_job(job_id))

    async def list_jobs(self, *, limit: int = 50, session: str | None = None,
                        status: str | None = None) -> JobList:
        return await self._run(lambda b: b.list_jobs(limit=limit, session=session, status=status))

    async def job_output(self, job_id: str, *, offset: int = 0, limit: int = 65536) -> OutputPage:
        return await self._run(lambda b: b.job_output(job_id, offset=offset, limit=limit))

    async def sessions(self) -> SessionList:
        return await self._run(lambda b: b.sessions())

    async def create_session(self, name: str) -> SessionView:
        return await self._run(lambda b: b.create_session(name))

    async def restart_session(self, name: str) -> SessionView:
        return await self._run(lambda b: b.restart_session(name))

    async def delete_session(self, name: str) -> None:
        await self._run(lambda b: b.delete_session(name))

    async def variables(self, session: str = "main", *,
                        include_private: bool = False) -> VariableList:
        return await self._run(lambda b: b.variables(session, include_private=include_private))

    async def cleanup(self, session: str = "main",
                      request: CleanupRequest | None = None) -> CleanupReport:
        return await self._run(lambda b: b.cleanup(session, request))

    async def list_files(self, path: str = "", *, recursive: bool = False,
                         pattern: str | None = None, limit: int = 1000) -> FileList:
        return await self._run(lambda b: b.list_files(path, recursive=recursive,
                                                      pattern=pattern, limit=limit))

    async def iter_files(self, path: str = "", *, recursive: bool = False,
                         pattern: str | None = None) -> AsyncIterator[FileEntry]:
        inner = await self._backend()
        async for entry in inner.iter_files(path, recursive=recursive, pattern=pattern):
            yield entry

    async def stat(self, path: str, *, with_hash: bool = True) -> FileStat:
        return await self._run(lambda b: b.stat(path, with_hash=with_hash))

    async def download(self, remote_path: str, save_dir: str | os.PathLike[str],
                       local_name: str | None = None, *, overwrite: bool = False,
                       progress: ProgressFn | None = None, compress: bool = False) -> DownloadResult:
        return await self._run(lambda b: b.download(remote_path, save_dir, local_name,
                                                    overwrite=overwrite, progress=progress,
                                                    compress=compress))

    async def upload(self, local_path: str | os.PathLike[str], remote_path: str, *,
                     overwrite: bool = False, progress: ProgressFn | None = None) -> UploadResult:
        return await self._run(lambda b: b.upload(local_path, remote_path, overwrite=overwrite,
                                                  progress=progress))

    async def download_dir(self, remote_dir: str, save_dir: str | os.PathLike[str],
                           local_name: str | None = None, *, overwrite: bool = False,
                           progress: ProgressFn | None = None) -> ArchiveResult:
        return await self._run(lambda b: b.download_dir(remote_dir, save_dir, local_name,
                                                        overwrite=overwrite, progress=progress))

    async def save_variables(self, session: str = "main",
                             request: SaveRequest | None = None) -> PersistManifest:
        return await self._run(lambda b: b.save_variables(session, request))

    async def restore_variables(self, session: str = "main",
                                request: RestoreRequest | None = None) -> RestoreReport:
        return await self._run(lambda b: b.restore_variables(session, request))
