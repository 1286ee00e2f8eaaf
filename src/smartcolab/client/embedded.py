"""The runtime named ``local``: the local runtime daemon, as one bridge or command sees it.

With no runtime configured, ``smartcolab mcp`` still works on a laptop: the first call
that needs the local runtime connects to the daemon already running for this user and
configuration, or starts one detached (``client/local/daemon.py``). The daemon
outlives this bridge: jobs keep running, and the next bridge (or another one running
at the same time) finds them. ``stop()`` only lets go of this bridge's client lease.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import anyio

from smartcolab.client.http.client import RetryPolicy
from smartcolab.client.local.daemon import DaemonInfo, DaemonSpec, ensure_daemon, still_running
from smartcolab.client.local.sessions import ClientLease, LocalClient
from smartcolab.shared.local_daemon import DEFAULT_IDLE_TIMEOUT_S

log = logging.getLogger(__name__)
# How long a check that the daemon still runs holds (``EmbeddedRuntime.start``).
RECHECK_S = 1.0


class EmbeddedRuntime:
    """Where the local daemon is; ``start`` connects (or starts it) and is cheap when warm."""

    def __init__(self, root: Path, base_dir: Path, *, python: str | None = None,
                 kernel: str = "python3", idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
                 lease: ClientLease | None = None, retry: RetryPolicy | None = None,
                 strip_names: tuple[str, ...] = (), strip_values: tuple[str, ...] = ()) -> None:
        self.spec = DaemonSpec(base=base_dir, root=root, python=python, kernel=kernel,
                               idle_timeout_s=idle_timeout_s, strip_names=strip_names,
                               strip_values=strip_values)
        self.lease = lease
        self.retry = retry
        self.info: DaemonInfo | None = None
        self.started_daemon = False
        self._lock = anyio.Lock()
        self._checked_at = -RECHECK_S

    @property
    def root(self) -> Path:
        return self.spec.root

    @property
    def url(self) -> str | None:
        return self.info.url if self.info else None

    @property
    def secret(self) -> str | None:
        return self.info.secret if self.info else None

    @property
    def running(self) -> bool:
        return self.info is not None and still_running(self.info)

    async def start(self) -> str:
        """The daemon's URL; connects to (or starts) one when ours is gone."""
        if self.info is not None:
            # Every call asks, so a check holds a moment: it reads the daemon's /proc
            # entry (0.1-0.4 ms a call). A daemon gone within that moment fails the
            # request as unreachable, and the next call finds or starts another.
            now = time.monotonic()
            if now - self._checked_at < RECHECK_S:
                return self.info.url
            if still_running(self.info):
                self._checked_at = now
                return self.info.url
        async with self._lock:
            if self.info is not None and still_running(self.info):
                return self.info.url
            self.info, started = await ensure_daemon(self.spec)
            self._checked_at = time.monotonic()
            self.started_daemon = self.started_daemon or started
            log.info("local runtime %s at %s (pid %d)", "started" if started else "found",
                     self.info.url, self.info.pid)
            return self.info.url

    def client(self, url: str, secret: str | None) -> LocalClient:
        """A client of the daemon whose session ``main`` is this bridge's own."""
        uds = self.info.socket if self.info is not None and self.info.url == url else None
        return LocalClient(url, secret, lease=self.lease, retry=self.retry, uds=uds)

    def stop(self) -> None:
        """Let go of this bridge's lease; the daemon and its jobs keep running."""
        if self.lease is not None:
            self.lease.release()
