"""The ``colab-tab`` kind: the Colab notebook the user has open in a browser tab.

The tab connects to this runtime's relay (``relay.py``: loopback, Origin lock, token)
and serves its seven tools; jobs, probe and variables go through visible cells
(``jobs.py``, ``control.py``).  One kernel, the notebook's: the only session is
``main``.  Several tabs are several runtime names, each with its own relay.

The tab may be absent: not opened yet (``attach`` opens the link and waits, with
progress), reloading (a call waits ``reconnect_s`` for it), or closed (a clear error
with the link to open it again).  Jobs run on in the kernel meanwhile.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from smartcolab import __version__
from smartcolab.client.backend import Attachment, AttachProgress, Capability, RuntimeBackend
from smartcolab.client.colabtab.control import Control
from smartcolab.client.colabtab.files import TabFiles
from smartcolab.client.colabtab.jobs import TabJobs, _check_session
from smartcolab.client.colabtab.page import PageTools
from smartcolab.client.colabtab.relay import Relay
from smartcolab.client.http.transfer import DownloadResult
from smartcolab.client.local_files import ProgressFn
from smartcolab.shared.errors import (
    RuntimeMisbehaved,
    TabDisconnected,
    Unsupported,
)
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
    VariableInfo,
    VariableList,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

RECONNECT_S = 10.0  # a call waits this long for a reloading tab to come back
PROGRESS_EVERY_S = 2.0
GONE_S = 1.0  # how long a call that lost its page waits for the relay to see it go
Opener = Callable[[str], bool]  # webbrowser.open: True when a browser took the link


class TabBackend(RuntimeBackend):
    """A runtime that is a Colab notebook open in the user's browser."""

    kind_label: ClassVar[str] = "a Colab tab"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.NOTEBOOK,
                                                                Capability.FILES})

    def __init__(self, name: str, *, opener: Opener | None = None, root: str | None = None,
                 reconnect_s: float = RECONNECT_S, relay: Relay | None = None) -> None:
        self.name = name
        self.relay = relay or Relay()
        self.url = "(the relay starts on first use)"
        self.last_epoch: str | None = None
        self.opener = opener
        self.reconnect_s = reconnect_s
        self.opened = False
        self.control = Control(self._page, root=root)
        self.jobs = TabJobs(self.control)
        self.files = TabFiles(self.control)
        self.started_at = time.time()

    @property
    def tracking_note(self) -> str | None:
        return ("This runtime is a Colab tab: the job runs in a thread of the notebook's "
                "kernel, started by a visible cell; the kernel's agent enforces its deadline.")

    # ------------------------------------------------------------ the tab
    async def _relay(self) -> Relay:
        if not self.relay.started:
            await self.relay.start()
            self.url = f"ws://127.0.0.1:{self.relay.port}"
        return self.relay

    def _open(self, link: str) -> bool:
        if self.opened:
            return True
        self.opened = True
        try:
            return bool(self.opener and self.opener(link))
        except Exception:  # a broken browser setup: the link is printed instead
            return False

    def _absent(self) -> TabDisconnected:
        relay = self.relay
        why = (f"its page failed the check: {relay.last_error.message}. " if relay.last_error
               else "its tab was closed or is reloading. " if relay.connections
               else "no Colab tab has connected yet. ")
        return TabDisconnected(
            f"runtime {self.name!r} (a Colab tab) is not connected: {why}Open {relay.link} in "
            "the browser where you use Colab (it connects by itself), then try again; jobs "
            "already started go on in the notebook's kernel.",
            details={"runtime": self.name, "link": relay.link})

    async def _on_page(self, call: Awaitable[T]) -> T:
        """``call``, its ending by a tab that went away told with the link to reopen it."""
        try:
            return await call
        except TabDisconnected as exc:
            # A socket that ended is seen by the relay a moment later; a page that is
            # still there was only slow, and the error's own words say so.
            if exc.details.get("link") or not await self.relay.wait_gone(GONE_S):
                raise
            raise self._absent() from exc

    async def _page(self) -> PageTools:
        relay = await self._relay()
        page = await relay.wait_page(self.reconnect_s if relay.connections or relay.connecting
                                     else 0.0)
        if page is None:
            raise self._absent()
        return page

    async def attach(self, *, wait_s: float = 0.0,
                     progress: AttachProgress | None = None) -> Attachment:
        relay = await self._relay()
        if relay.page is not None:
            return Attachment(ready=True, link=relay.link)
        opened = self._open(relay.link)
        if not opened:
            log.warning("open this link in your browser to connect runtime %r: %s",
                        self.name, relay.link)
        started = time.monotonic()
        while relay.page is None:
            waited = time.monotonic() - started
            if waited >= wait_s:
                break
            if progress is not None:
                await progress(waited, f"waiting for the Colab tab of {self.name!r} "
                                       f"to connect ({relay.link})")
            await relay.wait_page(min(PROGRESS_EVERY_S, wait_s - waited))
        if relay.page is not None:
            return Attachment(ready=True, link=relay.link)
        how = ("a browser tab was opened with it" if opened else "no browser could be opened here")
        return Attachment(ready=False, link=relay.link, message=(
            f"the Colab tab of runtime {self.name!r} has not connected yet ({how}). Open "
            f"{relay.link} in the browser where you use Colab; it connects by itself, and the "
            f"next call on {self.name!r} (or connect_runtime again) picks it up."))

    async def notebook(self) -> PageTools:
        return await self._page()

    async def aclose(self) -> None:
        await self.relay.aclose()

    # ------------------------------------------------------------ the core
    async def _epoch(self) -> str:
        hello = await self.control.ensure_agent()
        self.last_epoch = f"tab-{hello.get('epoch', '')}"
        return self.last_epoch

    async def health(self) -> Health:
        return Health(status="ok", version=__version__, epoch=await self._on_page(self._epoch()))

    async def _call(self, module: str, function: str, args: dict[str, Any] | None = None) -> Any:
        await self._on_page(self.control.ensure_agent())
        answer = await self._on_page(self.control.ask({
            "op": "call", "module": module, "function": function, "args": args or {}}))
        if "error" in answer:
            raise RuntimeMisbehaved(f"the Colab page's kernel failed {module}: "
                                    f"{str(answer['error'])[:300]}")
        return answer.get("value")

    async def probe(self) -> Probe:
        value = await self._call("probe", "probe")
        if not isinstance(value, dict):
            raise RuntimeMisbehaved("the Colab page's kernel answered the probe with no object")
        return Probe(**value, epoch=await self._epoch(), version=__version__,
                     notes=["measured inside the kernel of the Colab tab; server_uptime_s is "
                            "that kernel's age"])

    async def submit(self, job: JobSubmit, *, wait: float = 0.0) -> JobView:
        return await self._on_page(self.jobs.submit(job, wait=wait))

    async def get_job(self, job_id: str, *, wait: float = 0.0,
                      since: int | None = None) -> JobView:
        return await self._on_page(self.jobs.get_job(job_id, wait=wait, since=since))

    async def cancel_job(self, job_id: str) -> JobView:
        return await self._on_page(self.jobs.cancel_job(job_id))

    async def list_jobs(self, *, limit: int = 50, session: str | None = None,
                        status: str | None = None) -> JobList:
        views = await self._on_page(self.jobs.list_jobs(limit))
        return JobList(jobs=[v for v in views if status is None or v.status == status])

    async def job_output(self, job_id: str, *, offset: int = 0,
                         limit: int = 65536) -> OutputPage:
        return await self._on_page(self.jobs.job_output(job_id, offset=offset, limit=limit))

    async def sessions(self) -> SessionList:
        return SessionList(sessions=[await self.create_session("main")])

    async def create_session(self, name: str) -> SessionView:
        _check_session(name)
        hello = await self._on_page(self.control.ensure_agent())
        epoch = f"tab-{hello.get('epoch', '')}"
        self.last_epoch = epoch
        running = [j.get("job_id") for j in hello.get("jobs") or []
                   if isinstance(j, dict) and j.get("state") == "running"]
        return SessionView(name="main", epoch=epoch, status="busy" if running else "idle",
                           queued=0, running_job=str(running[0]) if running else None,
                           kernel_pid=hello.get("pid") if isinstance(hello.get("pid"), int)
                           else None, started_at=self.started_at)

    async def restart_session(self, name: str) -> SessionView:
        raise Unsupported("a Colab tab offers no restart to smartcolab: restart from the "
                          "notebook (Runtime > Restart session); the next call reinstalls "
                          "the job agent", details={"runtime": self.name})

    async def delete_session(self, name: str) -> None:
        raise Unsupported("a Colab tab has one kernel, the notebook's: it cannot be deleted "
                          "from here", details={"runtime": self.name})

    async def variables(self, session: str = "main", *,
                        include_private: bool = False) -> VariableList:
        _check_session(session)
        value = await self._call("variables", "variables", {"private": include_private})
        return VariableList(session=session, epoch=await self._epoch(),
                            variables=[VariableInfo.model_validate(v) for v in value or []])

    async def cleanup(self, session: str = "main",
                      request: CleanupRequest | None = None) -> CleanupReport:
        _check_session(session)
        req = request or CleanupRequest()
        value = await self._call("cleanup", "cleanup", {"reset": req.reset, "names": req.names})
        if not isinstance(value, dict):
            raise RuntimeMisbehaved("the Colab page's kernel answered the cleanup with no object")
        return CleanupReport(session=session, epoch=await self._epoch(), **value)

    # ------------------------------------------------------------ files (small only)
    async def list_files(self, path: str = "", *, recursive: bool = False,
                         pattern: str | None = None, limit: int = 1000) -> FileList:
        return await self._on_page(self.files.list_files(path, recursive=recursive,
                                                         pattern=pattern, limit=limit))

    async def stat(self, path: str, *, with_hash: bool = True) -> FileStat:
        return await self._on_page(self.files.stat(path, with_hash=with_hash))

    async def download(self, remote_path: str, save_dir: str | os.PathLike[str],
                       local_name: str | None = None, *, overwrite: bool = False,
                       progress: ProgressFn | None = None,
                       compress: bool = False) -> DownloadResult:
        return await self._on_page(self.files.download(
            remote_path, save_dir, local_name, overwrite=overwrite, progress=progress))

    async def upload(self, local_path: str | os.PathLike[str], remote_path: str, *,
                     overwrite: bool = False, progress: ProgressFn | None = None
                     ) -> UploadResult:
        return await self._on_page(self.files.upload(local_path, remote_path,
                                                     overwrite=overwrite, progress=progress))
