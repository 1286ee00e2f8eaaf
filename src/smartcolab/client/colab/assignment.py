"""One Colab assignment held under a runtime name: found or assigned, kept, released.

``ColabAssignment`` is the half of ``ColabBackend`` that deals with Colab rather than
with the runtime: it holds one assignment (``service.Lease``) and a ``JupyterBackend``
on its proxy URL, whose requests carry the proxy token (``ColabAuth``: the
``colab-runtime-proxy-token`` and ``authuser=0`` query parameters and the
``X-Colab-Runtime-Proxy-Token`` header, on REST and on the kernel WebSocket).

* First use: the runtime this name held (its lease file) if Colab still lists it,
  else one of this account's runtimes of the same accelerator that no other name on
  this machine holds, else a new assignment.
* The proxy token is renewed from Colab's listing ``refresh_margin_s`` before it
  expires (checked before every request).
* While a job runs, or for ``idle_release_s`` after the last call, a keeper tells Colab
  the runtime is in use every ``keepalive_s``; past that it releases the runtime.
* A runtime Colab no longer lists (released, idle-reclaimed, past its lifetime) or
  whose kernels vanished (a new VM behind the endpoint) is reported as STATE LOST,
  with what to do; the next call starts afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from smartcolab.client.backend import RuntimeBackend
from smartcolab.client.colab.service import ColabService, ColabSettings, Lease
from smartcolab.client.jupyter.kernel import RequestAuth
from smartcolab.client.jupyter.server import JupyterBackend
from smartcolab.shared.errors import (
    KernelUnavailable,
    NotFound,
    RuntimeUnreachable,
    StateLost,
    Unauthorized,
)
from smartcolab.shared.protocol import JobView

log = logging.getLogger(__name__)
T = TypeVar("T")
# A failure of the proxied server that may mean the runtime went away.
_SUSPECT = (RuntimeUnreachable, Unauthorized, NotFound, KernelUnavailable)


class ColabAuth(RequestAuth):
    """The proxy token on every request; renewed by the backend before it expires."""

    def __init__(self, backend: ColabAssignment) -> None:
        super().__init__(None)
        self._backend = backend

    def headers(self) -> dict[str, str]:
        lease = self._backend.lease
        return {"X-Colab-Runtime-Proxy-Token": lease.token} if lease else {}

    def params(self) -> dict[str, str]:
        lease = self._backend.lease
        return {"authuser": "0", "colab-runtime-proxy-token": lease.token} if lease else {}

    async def fresh(self) -> None:
        await self._backend.fresh_token()


class ColabAssignment(RuntimeBackend):
    """The runtime's assignment: acquired on first use, its token kept fresh, kept alive
    while used, released when idle, reported as STATE LOST when gone."""

    def __init__(self, name: str, settings: ColabSettings, *,
                 service: ColabService | None = None, kernel_name: str = "python3") -> None:
        self.name, self.settings = name, settings
        self.url = settings.domain
        self.service = service or ColabService(settings)
        self.kernel_name = kernel_name
        self.lease: Lease | None = None
        self.last_epoch: str | None = None
        self._inner: JupyterBackend | None = None
        self._lock = asyncio.Lock()
        self._token_lock = asyncio.Lock()
        self._keeper: asyncio.Task[None] | None = None
        self._last_call = time.monotonic()
        self._inflight = 0
        self._last_keepalive = 0.0
        self._lost: str | None = None  # said once, then the next call starts afresh

    # ------------------------------------------------------------ the assignment
    async def _backend(self) -> JupyterBackend:
        self._last_call = time.monotonic()
        if self._lost is not None:
            lost, self._lost = self._lost, None
            raise StateLost(lost, details={"runtime": self.name})
        if self._inner is not None:
            return self._inner
        async with self._lock:
            if self._inner is None:
                self.lease = await self._acquire()
                self.url = self.lease.url
                self._inner = JupyterBackend(self.lease.url, None, kernel_name=self.kernel_name,
                                             name=self.name, auth=ColabAuth(self))
                if self._keeper is None or self._keeper.done():
                    self._keeper = asyncio.create_task(self._keep())
            return self._inner

    async def _acquire(self) -> Lease:
        listed = {a["endpoint"]: a for a in await self.service.list()}
        held = self.service.load(self.name)
        if held is not None and held.endpoint in listed:
            held.renew(listed[held.endpoint])
            self.service.save(self.name, held)
            return held
        accelerator = self.settings.accelerator
        wanted = "NONE" if accelerator == "CPU" else accelerator
        claimed = self.service.claimed()
        for a in listed.values():  # this account's runtime of that shape that no name holds
            if a["accelerator"] == wanted and a["endpoint"] not in claimed:
                lease = Lease(a["endpoint"], accelerator, "", "", 0.0, time.time())
                lease.renew(a)
                break
        else:
            got = await self.service.assign(accelerator)
            lease = Lease(got["endpoint"], accelerator, "", "", 0.0, time.time())
            lease.renew(got)
        self.service.save(self.name, lease)
        return lease

    async def fresh_token(self) -> None:
        """Renew the proxy token when it is within the margin of its expiry."""
        lease = self.lease
        if lease is None or lease.expires_at - time.time() > self.settings.refresh_margin_s:
            return
        async with self._token_lock:
            if lease.expires_at - time.time() > self.settings.refresh_margin_s:
                return
            listed = {a["endpoint"]: a for a in await self.service.list()}
            if lease.endpoint not in listed:
                raise await self._gone("Colab no longer lists it")
            lease.renew(listed[lease.endpoint])
            self.service.save(self.name, lease)

    async def _gone(self, why: str, *, recycled: bool = False) -> StateLost:
        """Forget the runtime; the error to raise now (the next call starts afresh)."""
        lease = self.lease
        shape = lease.accelerator if lease else self.settings.accelerator
        await self._drop()
        if not recycled:  # the endpoint itself is gone; a recycled one is still ours
            self.service.forget(self.name)
            self.lease = None
        what = ("its kernels are gone (Colab gave the endpoint a new machine)" if recycled
                else f"the runtime is gone: {why} (released, reclaimed when idle, or past "
                "Colab's lifetime limit)")
        then = ("a new kernel on that machine" if recycled
                else "a fresh runtime of the same shape")
        return StateLost(
            f"STATE LOST: Colab runtime {self.name!r} ({shape}): {what}. Its variables and its "
            f"files outside Drive are lost. The next call starts {then}: run your setup code "
            "again (imports, data loading); keep results on Drive or download them to survive "
            "this.", details={"runtime": self.name})

    async def _drop(self) -> None:
        inner, self._inner = self._inner, None
        if inner is not None:
            with contextlib.suppress(Exception):
                await inner.aclose()

    async def _diagnose(self, exc: BaseException) -> BaseException:
        """Say STATE LOST when the failure means the runtime (or its machine) went away."""
        lease, inner = self.lease, self._inner
        if lease is None or inner is None:
            return exc
        try:
            listed = {a["endpoint"] for a in await self.service.list()}
        except Exception:
            return exc
        if lease.endpoint not in listed:
            return await self._gone("Colab no longer lists it")
        try:
            kernels = await inner.rest.call("GET", "/api/kernels", what="list kernels")
        except Exception:
            return exc
        # The kernels this bridge used (a new machine behind the endpoint has none of them).
        known = {s.kernel_id for s in getattr(inner, "_sessions", {}).values()}
        alive = {str(k.get("id")) for k in kernels or []}
        if known and not known & alive:
            return await self._gone("", recycled=True)
        return exc

    async def _run(self, call: Callable[[JupyterBackend], Awaitable[T]]) -> T:
        self._inflight += 1  # a call under way (a kernel starting, a long poll) is use
        try:
            inner = await self._backend()
            try:
                result = await call(inner)
            except _SUSPECT as exc:
                raise await self._diagnose(exc) from exc
        finally:
            self._inflight -= 1
            self._last_call = time.monotonic()
        self.last_epoch = inner.last_epoch
        return result

    async def _job(self, call: Callable[[JupyterBackend], Awaitable[JobView]]) -> JobView:
        view = await self._run(call)
        if view.status == "lost":
            diagnosis = await self._diagnose(RuntimeError("job lost"))
            if isinstance(diagnosis, StateLost):
                raise diagnosis
        return view

    # ------------------------------------------------------------ lifetime
    async def _busy(self) -> bool:
        inner = self._inner
        if inner is None:
            return False
        if self._inflight:
            return True
        return bool((await inner.list_jobs(limit=1, status="running")).jobs)

    async def _keep(self) -> None:
        """Keep-alive while used; release after ``idle_release_s`` without use."""
        tick = max(0.2, min(self.settings.keepalive_s, self.settings.idle_release_s or 60.0) / 4)
        while self._inner is not None and self.lease is not None:
            await asyncio.sleep(tick)
            lease = self.lease
            if lease is None or self._inner is None:
                return
            try:
                idle = time.monotonic() - self._last_call
                if await self._busy():
                    self._last_call, idle = time.monotonic(), 0.0
                if self.settings.idle_release_s and idle > self.settings.idle_release_s:
                    minutes = self.settings.idle_release_s / 60
                    # Said before the release starts: a call meanwhile must not reuse it.
                    self._lost = (f"STATE LOST: Colab runtime {self.name!r} was released after "
                                  f"{minutes:g} min without use (idle_release_minutes). The next "
                                  "call assigns a fresh runtime: run your setup code again.")
                    await self.release()
                    return
                await self.fresh_token()  # also for a WebSocket that opens later
                if time.monotonic() - self._last_keepalive >= self.settings.keepalive_s:
                    await self.service.keepalive(lease.endpoint)
                    self._last_keepalive = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next call reports it; the keeper carries on
                log.warning("colab runtime %s: keep-alive failed: %s", self.name, exc)

    def lifetime(self) -> dict[str, Any]:
        """How long this runtime may still live, as far as this bridge can tell."""
        lease, now = self.lease, time.time()
        if lease is None:
            return {"assigned": False, "accelerator": self.settings.accelerator}
        idle_left = (self.settings.idle_release_s - (time.monotonic() - self._last_call)
                     if self.settings.idle_release_s else None)
        return {"assigned": True, "accelerator": lease.accelerator, "endpoint": lease.endpoint,
                "assigned_at": lease.assigned_at,
                "max_lifetime_left_s": max(0.0, lease.assigned_at + self.settings.max_lifetime_s - now),
                "idle_release_in_s": None if idle_left is None else max(0.0, idle_left),
                "proxy_token_expires_in_s": max(0.0, lease.expires_at - now)}

    def _notes(self) -> list[str]:
        life = self.lifetime()
        notes = [f"Colab runtime {life.get('endpoint')} ({life['accelerator']}); Colab ends a "
                 f"runtime after at most about {self.settings.max_lifetime_s / 3600:g} h "
                 f"(about {life.get('max_lifetime_left_s', 0) / 3600:.1f} h left)"]
        if life.get("idle_release_in_s") is not None:
            notes.append(f"released after {self.settings.idle_release_s / 60:g} min without use "
                         f"(in {life['idle_release_in_s'] / 60:.0f} min unless used)")
        return notes

    async def release(self) -> bool:
        """Give the runtime back to Colab; False when this name held none."""
        lease = self.lease or self.service.load(self.name)
        await self._drop()
        self.lease = None
        self.service.forget(self.name)
        if lease is None:
            return False
        with contextlib.suppress(StateLost):  # already gone is released too
            await self.service.unassign(lease.endpoint)
        return True

    async def aclose(self) -> None:
        # The runtime outlives this bridge (its lease file finds it again); only the
        # keeper stops here, and Colab's own idle rules apply meanwhile.
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(BaseException):
                await keeper
        inner, self._inner = self._inner, None
        if inner is not None:
            await inner.aclose()

