"""Killing and reaping a kernel process by pid, so a failed restart never leaks one.

jupyter_client's own shutdown can fail half-way (a restart that started a process
but never connected, a shutdown that timed out); the process then lives on, holding
memory (on a GPU host, device memory).  Before a session starts a new kernel, the
old one's process is SIGKILLed and reaped.  A pid is checked against the process's
start time first: a pid the OS has since given to another process is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass

import psutil

REAP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    create_time: float


def identify(pid: int | None) -> ProcessIdentity | None:
    """The identity of a live process, or None."""
    if pid is None:
        return None
    try:
        return ProcessIdentity(pid, psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return None


def _same(ident: ProcessIdentity) -> psutil.Process | None:
    try:
        proc = psutil.Process(ident.pid)
        if proc.create_time() != ident.create_time:
            return None
        return proc
    except (psutil.Error, OSError):
        return None


async def kill_and_reap(ident: ProcessIdentity | None, timeout: float = REAP_TIMEOUT_S) -> bool:
    """SIGKILL the process (and its children) unless it is gone; reap it. True if it is gone."""
    if ident is None:
        return True
    proc = _same(ident)
    if proc is None:
        return True
    with contextlib.suppress(psutil.Error, OSError):
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error, OSError):
                child.kill()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(ident.pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(ident.pid, os.WNOHANG)  # noqa: ASYNC222 - WNOHANG never blocks
            if done == ident.pid:
                return True
        except ChildProcessError:
            # Not our child (or reaped by jupyter_client's Popen): wait for it to vanish.
            if _same(ident) is None or _zombie(ident):
                return True
        await asyncio.sleep(0.05)
    return _same(ident) is None


def _zombie(ident: ProcessIdentity) -> bool:
    proc = _same(ident)
    try:
        return proc is not None and proc.status() == psutil.STATUS_ZOMBIE
    except (psutil.Error, OSError):
        return True
