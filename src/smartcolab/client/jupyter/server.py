"""A plain Jupyter Server (or a JupyterHub user server) as a runtime: the ``jupyter`` kind.

``JupyterBackend`` offers the same calls as ``RuntimeClient`` (see ``backend.py``), so
every tool works unchanged, but speaks only Jupyter Server's standard APIs: sessions
and kernels over REST, code over the kernel WebSocket, files through the contents
API (``files.py``).  Nothing of ours is installed on that side.

* A session ``NAME`` is the Jupyter session at path ``smartcolab-NAME`` (its kernel
  starts in the server's root directory); a bridge that restarts finds it again.
* Jobs run one at a time per session through the kernel's job agent
  (``kernelside/job_agent.py``, installed by the bridge, ``durable.py``): each job is one
  execute request, its output and status are also spilled to the runtime's disk, its
  deadline is enforced by the bridge (interrupt, then restart) and, with no bridge
  connected, by the agent's watchdog.  A new bridge re-attaches to a job from its files.
* The epoch is ``<kernel id>-<token>``: the token lives in the kernel's ``builtins``
  and is drawn again whenever it is missing, so a restart or crash (ours or not)
  changes the epoch and the tools report the state as lost.  It comes back with every
  job, as a user expression of the job's own execute request: a restart by someone
  else is announced on the WebSocket only after the fact, and a new kernel process has
  no agent, so it runs nothing and the bridge installs the agent and sends the job again.
* After a restart forced by a timeout the token must change within ``RESTART_VERIFY_S``
  (the old process, stuck with SIGINT blocked, may outlive the restart); if it does not,
  the Jupyter session is deleted (its kernel shut down) and created again.

The backend is built in parts: ``session.py`` (sessions, epochs, inspection cells,
the agent's install), ``jobloop.py`` (the job queue, the loop and the job calls) and
``persistence.py`` (saved variables); this module joins them with the inspection and
file calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any, ClassVar

from smartcolab.client.backend import Capability, RuntimeBackend
from smartcolab.client.http.transfer import DownloadResult
from smartcolab.client.http.transfer_dir import ArchiveResult
from smartcolab.client.jupyter import dirs
from smartcolab.client.jupyter.durable import SpillReader
from smartcolab.client.jupyter.files import JupyterFiles
from smartcolab.client.jupyter.jobloop import JupyterJobs
from smartcolab.client.jupyter.jobs import TRACKING_NOTE, JobRecord
from smartcolab.client.jupyter.kernel import JupyterRest, RequestAuth
from smartcolab.client.jupyter.persistence import JupyterPersistence
from smartcolab.client.jupyter.reattach import EarlierJobs
from smartcolab.client.jupyter.session import KernelSession
from smartcolab.client.local_files import ProgressFn
from smartcolab.shared import kernel_code as kc
from smartcolab.shared.protocol import (
    CleanupReport,
    CleanupRequest,
    FileList,
    FileStat,
    Health,
    Probe,
    UploadResult,
    VariableInfo,
    VariableList,
)


class JupyterBackend(JupyterJobs, JupyterPersistence, RuntimeBackend):
    """Drives one Jupyter Server through REST + WebSockets, with jobs tracked here."""

    kind_label: ClassVar[str] = "a Jupyter Server"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.FILES, Capability.PERSISTENCE, Capability.ARCHIVES})

    def __init__(self, url: str, token: str | None, *, kernel_name: str = "python3",
                 name: str | None = None, auth: RequestAuth | None = None) -> None:
        self.url = url.rstrip("/")
        self.name = name or self.url
        self.kernel_name = kernel_name
        self.last_epoch: str | None = None
        self.rest = JupyterRest(self.url, token, auth=auth)
        self.files = JupyterFiles(self.rest, self._sha256_in_kernel)
        self._sessions: dict[str, KernelSession] = {}
        self._jobs: dict[str, JobRecord] = {}
        self.spill = SpillReader(self.rest)
        self.earlier = EarlierJobs(self.rest, self.spill, self._kernel_of)
        self._open_lock = asyncio.Lock()
        self._version: str | None = None

    @property
    def tracking_note(self) -> str | None:
        return TRACKING_NOTE

    async def aclose(self) -> None:
        for sess in list(self._sessions.values()):
            if sess.worker is not None:
                sess.worker.cancel()
                with contextlib.suppress(BaseException):
                    await sess.worker
            await sess.channel.aclose()
        self._sessions.clear()
        await self.rest.aclose()

    # ------------------------------------------------------------ inspection
    async def _server_version(self) -> str:
        if self._version is None:
            info = await self.rest.call("GET", "/api", what="the server version")
            self._version = f"jupyter_server {info.get('version', '?')}"
        return self._version

    async def health(self) -> Health:
        version = await self._server_version()
        await self.rest.call("GET", "/api/status", what="status")  # proves the token
        main = self._sessions.get("main")
        return Health(status="ok", version=version, epoch=(main.epoch if main else None) or "")

    async def probe(self) -> Probe:
        _, out, epoch = await self._internal("main", kc.call("probe", "probe"))
        return Probe(**kc.parse(out), epoch=epoch, version=await self._server_version(),
                     notes=["measured inside the kernel of session 'main' on a plain Jupyter "
                            "Server; server_uptime_s is that kernel's age"])

    async def variables(self, session: str = "main", *,
                        include_private: bool = False) -> VariableList:
        _, out, epoch = await self._internal(
            session, kc.call("variables", "variables", {"private": include_private}))
        return VariableList(session=session, epoch=epoch,
                            variables=[VariableInfo.model_validate(v) for v in kc.parse(out)])

    async def cleanup(self, session: str = "main",
                      request: CleanupRequest | None = None) -> CleanupReport:
        req = request or CleanupRequest()
        _, out, epoch = await self._internal(session, kc.call(
            "cleanup", "cleanup", {"reset": req.reset, "names": req.names}))
        return CleanupReport(session=session, epoch=epoch, **kc.parse(out))

    async def _sha256_in_kernel(self, path: str) -> dict[str, Any]:
        """sha256 and size of a file, computed inside the kernel (relative to the root)."""
        _, out, _ = await self._internal("main", kc.call("files", "sha256", {"path": path}))
        result: dict[str, Any] = kc.parse(out)
        return result

    # ------------------------------------------------------------ files (contents API)
    async def list_files(self, path: str = "", *, recursive: bool = False,
                         pattern: str | None = None, limit: int = 1000) -> FileList:
        return await self.files.list_files(path, recursive=recursive, pattern=pattern,
                                           limit=limit)

    async def stat(self, path: str, *, with_hash: bool = True) -> FileStat:
        return await self.files.stat(path, with_hash=with_hash)

    async def download(self, remote_path: str, save_dir: str | os.PathLike[str],
                       local_name: str | None = None, *, overwrite: bool = False,
                       progress: ProgressFn | None = None,
                       compress: bool = False) -> DownloadResult:
        # The contents API has no compression: ``compress`` is ignored.
        return await self.files.download(remote_path, save_dir, local_name,
                                         overwrite=overwrite, progress=progress)

    async def download_dir(self, remote_dir: str, save_dir: str | os.PathLike[str],
                           local_name: str | None = None, *, overwrite: bool = False,
                           progress: ProgressFn | None = None) -> ArchiveResult:
        """Packed in the kernel of session 'main', fetched as one file (``dirs.py``)."""
        async def internal(code: str) -> str:
            return (await self._internal("main", code))[1]

        return await dirs.download_dir(self.files, internal, remote_dir, save_dir, local_name,
                                       overwrite=overwrite, progress=progress)

    async def upload(self, local_path: str | os.PathLike[str], remote_path: str, *,
                     overwrite: bool = False, progress: ProgressFn | None = None
                     ) -> UploadResult:
        return await self.files.upload(local_path, remote_path, overwrite=overwrite,
                                       progress=progress)

