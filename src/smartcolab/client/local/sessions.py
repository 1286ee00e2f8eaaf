"""Several clients on one local runtime: a default session per client, others by name.

Every bridge holds a *client lease*: an fcntl lock on ``clients/LABEL.lock`` (or
``LABEL-2.lock``, ``LABEL-3.lock``... when that one is held) in its checkpoint
directory, taken on first use and released by the OS when the bridge ends, even by
kill -9. The lease's name is the bridge's own session on the local runtime: a model
that uses the session ``main`` (every tool's default) works in the session named
after its lease, so conversation B never sees or overwrites conversation A's
variables. A bridge restarted after its predecessor ended gets the same lease back,
hence the same session and variables. Any other session name is shared by name:
two clients that both say ``session="data"`` share that kernel on purpose.

The label is the bridge's ``--client`` (``$SMARTCOLAB_CLIENT``); ``smartcolab config``
writes one per MCP client. Its default, ``main``, keeps a single client's session
named ``main``, as it always was.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from pathlib import Path

from smartcolab.client.http.backend import HttpBackend
from smartcolab.client.retry import RetryPolicy
from smartcolab.shared.errors import InvalidInput
from smartcolab.shared.private import private_dir
from smartcolab.shared.protocol import (
    CleanupReport,
    CleanupRequest,
    JobList,
    JobSubmit,
    JobView,
    PersistManifest,
    RestoreReport,
    RestoreRequest,
    SaveRequest,
    SessionView,
    VariableList,
)

if sys.platform != "win32":
    import fcntl

DEFAULT_LABEL = "main"
MAIN = "main"
MAX_LEASES = 64
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,40}$"


def check_label(label: str) -> str:
    if not re.match(LABEL_PATTERN, label):
        raise InvalidInput(f"client label {label[:60]!r} is invalid: use up to 41 letters, "
                           "digits, '_', '.', '-'")
    return label


class ClientLease:
    """This bridge's name among the clients sharing a checkpoint directory."""

    def __init__(self, directory: Path, label: str = DEFAULT_LABEL) -> None:
        self.directory = directory
        self.label = check_label(label)
        self._name: str | None = None
        self._fd: int | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """The lease's name, taking the first free one on first use."""
        with self._lock:
            if self._name is None:
                self._name = self._acquire()
            return self._name

    def _acquire(self) -> str:
        folder = private_dir(self.directory / "clients")
        for n in range(1, MAX_LEASES + 1):
            name = self.label if n == 1 else f"{self.label}-{n}"
            fd = os.open(folder / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if sys.platform != "win32":
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self._fd = fd
            return name
        raise InvalidInput(f"more than {MAX_LEASES} bridges labelled {self.label!r} are running")

    def release(self) -> None:
        with self._lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
            self._fd = None
            self._name = None


class LocalClient(HttpBackend):
    """Our runtime's backend (a ``RuntimeClient``) whose session ``main`` is this client's own.

    Jobs are labelled with the client's name, so ``list_jobs`` shows who submitted each.
    """

    def __init__(self, url: str, secret: str | None, *, lease: ClientLease | None,
                 retry: RetryPolicy | None = None, uds: str | None = None) -> None:
        super().__init__(url, secret, retry=retry or RetryPolicy(), name="local", uds=uds)
        self.lease = lease

    def own(self, session: str) -> str:
        """The real session name behind ``session``."""
        if session == MAIN and self.lease is not None:
            return self.lease.name
        return session

    async def submit(self, job: JobSubmit, *, wait: float = 0.0) -> JobView:
        who = self.lease.name if self.lease is not None else None
        label = f"{job.client or 'client'}/{who}"[:200] if who else job.client
        return await super().submit(replace_job(job, self.own(job.session), label), wait=wait)

    async def list_jobs(self, *, limit: int = 50, session: str | None = None,
                        status: str | None = None) -> JobList:
        return await super().list_jobs(limit=limit, status=status,
                                       session=None if session is None else self.own(session))

    async def create_session(self, name: str) -> SessionView:
        return await super().create_session(self.own(name))

    async def restart_session(self, name: str) -> SessionView:
        return await super().restart_session(self.own(name))

    async def delete_session(self, name: str) -> None:
        await super().delete_session(self.own(name))

    async def variables(self, session: str = MAIN, *, include_private: bool = False
                        ) -> VariableList:
        return await super().variables(self.own(session), include_private=include_private)

    async def cleanup(self, session: str = MAIN,
                      request: CleanupRequest | None = None) -> CleanupReport:
        return await super().cleanup(self.own(session), request)

    async def save_variables(self, session: str = MAIN,
                             request: SaveRequest | None = None) -> PersistManifest:
        return await super().save_variables(self.own(session), request)

    async def restore_variables(self, session: str = MAIN,
                                request: RestoreRequest | None = None) -> RestoreReport:
        return await super().restore_variables(self.own(session), request)


def replace_job(job: JobSubmit, session: str, client: str | None) -> JobSubmit:
    if session == job.session and client == job.client:
        return job
    return job.model_copy(update={"session": session, "client": client})


