"""What a runtime backend offers the bridge and the CLI: one interface with declared capabilities.

Shaped like jupyter_client's ``KernelProvisionerBase``: an abstract core every kind of
runtime implements (health, probe, jobs, sessions, variables, cleanup) and optional
parts with defaults.  A kind declares what it can do beyond the core in
``capabilities``; an optional part it lacks raises ``Unsupported``, whose message says
what this kind cannot do and what to use instead.  Callers ask the interface
(``supports``, ``require``, ``job_tracking``), never the concrete type.

Kinds today: ``runtime`` (our runtime server, ``client/http/backend.py``) and
``jupyter`` (a Jupyter Server, ``client/jupyter/server.py``).  A new kind is one
folder under ``client/`` and one factory in the registry.
"""

from __future__ import annotations

import enum
import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from smartcolab.client.http.transfer import DownloadResult
from smartcolab.client.http.transfer_dir import ArchiveResult
from smartcolab.client.local_files import ProgressFn
from smartcolab.shared.errors import Unsupported
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

__all__ = ["Attachment", "Capability", "JobsApi", "RuntimeBackend", "Unsupported"]


class Capability(str, enum.Enum):
    """An optional part of ``RuntimeBackend``."""

    FILES = "files"  # list_files, iter_files, stat, download, upload
    ARCHIVES = "archives"  # download_dir: a whole directory as one archive
    PERSISTENCE = "persistence"  # save_variables, restore_variables (snapshots on disk)
    JOB_STORE = "job_store"  # the runtime keeps job records; they outlive this process
    RELEASE = "release"  # release: hand the machine back to whoever assigned it (Colab)
    NOTEBOOK = "notebook"  # notebook: the cells of the user's notebook page (colab-tab)


# What a kind that lacks a capability cannot do, and what to use instead.
_LACKS: dict[Capability, tuple[str, str]] = {
    Capability.FILES: ("cannot move files", "read and write files with code instead"),
    Capability.ARCHIVES: ("cannot send a directory as one archive",
                          "download its files one by one (list_colab_files, then "
                          "download_from_colab for each)"),
    Capability.PERSISTENCE: ("cannot keep variable snapshots",
                             "save with code instead (e.g. pickle or joblib to a file, then "
                             "download_from_colab)"),
    Capability.RELEASE: ("was not assigned by a service, so there is nothing to release",
                         "stop it where it runs (its notebook, VM or container)"),
    Capability.NOTEBOOK: ("has no notebook page whose cells could be read or edited",
                          "connect a Colab tab (connect_runtime kind='colab-tab') to work "
                          "in a visible notebook"),
    Capability.JOB_STORE: ("keeps no job records of its own",
                           "use it through the MCP bridge (smartcolab mcp), which tracks its jobs"),
}


# Progress while ``attach`` waits: (seconds waited, what it waits for).
AttachProgress = Callable[[float, str], Awaitable[None]]


@dataclass(frozen=True)
class Attachment:
    """Where a runtime stands after ``attach``: ready, or waiting for the user (a tab to
    open: ``link`` is where, ``message`` says what to do)."""

    ready: bool
    link: str | None = None
    message: str = ""


class JobsApi(Protocol):
    """The four calls that submitting and following a job needs (``client/follow.py``)."""

    async def submit(self, job: JobSubmit, *, wait: float = 0.0) -> JobView: ...
    async def get_job(self, job_id: str, *, wait: float = 0.0,
                      since: int | None = None) -> JobView: ...
    async def cancel_job(self, job_id: str) -> JobView: ...
    async def create_session(self, name: str) -> SessionView: ...


class RuntimeBackend(ABC):
    """The calls the tools and the CLI make on a runtime, whatever serves it.

    Subclasses set ``name`` (the runtime's name, for messages), ``url``, ``kind_label``
    (how a message names this kind, e.g. "a Jupyter Server") and ``capabilities``, and
    override the optional parts they declare.
    """

    name: str
    url: str
    last_epoch: str | None
    kind_label: ClassVar[str] = "a runtime"
    capabilities: ClassVar[frozenset[Capability]] = frozenset()

    # ------------------------------------------------------------ capabilities
    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def unsupported(self, capability: Capability, *, instead: str | None = None) -> Unsupported:
        """The error for a capability this kind lacks: what it cannot do, what to use instead."""
        cannot, default_instead = _LACKS[capability]
        return Unsupported(f"runtime {self.name!r} is {self.kind_label}, which {cannot}; "
                           f"{instead or default_instead}",
                           details={"runtime": self.name, "capability": capability.value})

    def require(self, capability: Capability, *, instead: str | None = None) -> None:
        """Raise ``Unsupported`` unless this kind declares ``capability``."""
        if not self.supports(capability):
            raise self.unsupported(capability, instead=instead)

    @property
    def job_tracking(self) -> Literal["runtime", "bridge"]:
        """Who keeps the job records: the runtime, or this process (they die with it)."""
        return "runtime" if self.supports(Capability.JOB_STORE) else "bridge"

    @property
    def tracking_note(self) -> str | None:
        """What a result should say about who keeps the job (None: nothing to say)."""
        return None

    # ------------------------------------------------------------ the core
    @abstractmethod
    async def aclose(self) -> None: ...
    @abstractmethod
    async def health(self) -> Health: ...
    @abstractmethod
    async def probe(self) -> Probe: ...
    @abstractmethod
    async def submit(self, job: JobSubmit, *, wait: float = 0.0) -> JobView: ...
    @abstractmethod
    async def get_job(self, job_id: str, *, wait: float = 0.0,
                      since: int | None = None) -> JobView: ...
    @abstractmethod
    async def cancel_job(self, job_id: str) -> JobView: ...
    @abstractmethod
    async def list_jobs(self, *, limit: int = 50, session: str | None = None,
                        status: str | None = None) -> JobList: ...
    @abstractmethod
    async def job_output(self, job_id: str, *, offset: int = 0,
                         limit: int = 65536) -> OutputPage: ...
    @abstractmethod
    async def sessions(self) -> SessionList: ...
    @abstractmethod
    async def create_session(self, name: str) -> SessionView: ...
    @abstractmethod
    async def restart_session(self, name: str) -> SessionView: ...
    @abstractmethod
    async def delete_session(self, name: str) -> None: ...
    @abstractmethod
    async def variables(self, session: str = "main", *,
                        include_private: bool = False) -> VariableList: ...
    @abstractmethod
    async def cleanup(self, session: str = "main",
                      request: CleanupRequest | None = None) -> CleanupReport: ...

    async def job_file(self, job_id: str, name: str) -> bytes | None:
        """An output the runtime kept in a job's folder (an image over its size cap);
        None where this kind keeps none."""
        return None

    # ------------------------------------------------------------ files (Capability.FILES)
    async def list_files(self, path: str = "", *, recursive: bool = False,
                         pattern: str | None = None, limit: int = 1000) -> FileList:
        """One page of a listing (``total`` says how many matched)."""
        raise self.unsupported(Capability.FILES)

    async def iter_files(self, path: str = "", *, recursive: bool = False,
                         pattern: str | None = None) -> AsyncIterator[FileEntry]:
        """Every entry of a listing; by default the first page of ``list_files``."""
        page = await self.list_files(path, recursive=recursive, pattern=pattern)
        for entry in page.entries:
            yield entry

    async def stat(self, path: str, *, with_hash: bool = True) -> FileStat:
        raise self.unsupported(Capability.FILES)

    async def download(self, remote_path: str, save_dir: str | os.PathLike[str],
                       local_name: str | None = None, *, overwrite: bool = False,
                       progress: ProgressFn | None = None,
                       compress: bool = False) -> DownloadResult:
        """Resumable, sha256-verified, atomic; ``compress`` is a hint a kind may ignore."""
        raise self.unsupported(Capability.FILES)

    async def upload(self, local_path: str | os.PathLike[str], remote_path: str, *,
                     overwrite: bool = False, progress: ProgressFn | None = None
                     ) -> UploadResult:
        raise self.unsupported(Capability.FILES)

    # ------------------------------------------------------------ archives (Capability.ARCHIVES)
    async def download_dir(self, remote_dir: str, save_dir: str | os.PathLike[str],
                           local_name: str | None = None, *, overwrite: bool = False,
                           progress: ProgressFn | None = None) -> ArchiveResult:
        """A remote directory as one archive, extracted safely under ``save_dir``."""
        raise self.unsupported(Capability.ARCHIVES)

    # ------------------------------------------------------------ release (Capability.RELEASE)
    async def release(self) -> bool:
        """Give the machine back (Colab); False when none was held.  Its state is gone."""
        raise self.unsupported(Capability.RELEASE)

    # ------------------------------------------------------------ attach (every kind)
    async def attach(self, *, wait_s: float = 0.0,
                     progress: AttachProgress | None = None) -> Attachment:
        """Wait up to ``wait_s`` for the runtime to be reachable where that needs the user
        (a browser tab to connect); kinds that need nobody are ready at once."""
        return Attachment(ready=True)

    # ------------------------------------------------------------ notebook (Capability.NOTEBOOK)
    async def notebook(self) -> Any:
        """The typed tools of the notebook page (``client/colabtab/page.PageTools``) once the
        page is connected (a clear error with the link to open when it is not)."""
        raise self.unsupported(Capability.NOTEBOOK)

    # ------------------------------------------------------------ persistence
    async def save_variables(self, session: str = "main",
                             request: SaveRequest | None = None) -> PersistManifest:
        raise self.unsupported(Capability.PERSISTENCE)

    async def restore_variables(self, session: str = "main",
                                request: RestoreRequest | None = None) -> RestoreReport:
        raise self.unsupported(Capability.PERSISTENCE)
