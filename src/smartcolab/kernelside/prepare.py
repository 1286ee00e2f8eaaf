"""Set up a fresh kernel for a server that reads its output: bounded messages, flow control.

Run once in every kernel our runtime starts.  (1) IPython 9 copies every stream write
of every cell into an in-memory history (``_tee``): a kernel that prints 50 MB keeps
50 MB forever; it is switched off.  (0) ``%pip`` and friends raise when the tool
fails (``magics.py``).  (2) ipykernel buffers stream output until a 0.2 s
timer fires, so a fast print loop becomes one giant message that the server must hold
whole; the write below flushes every ``flush_bytes`` characters (splitting one huge
write too), which bounds the size of a message.  (3) Flow control: the kernel's XPUB
socket gets ``XPUB_NODROP``, so when its queue is full it blocks instead of dropping,
``flush()`` waits, and the printing code slows to the server's pace.  The option is set
on the IOPub thread (zmq sockets are not thread-safe).  An older ipykernel with a lossy
PUB socket is left as it is; ``prepare`` says which.  (4) A thread runs in a copy of the
context of the code that started it: ipykernel keeps the parent header of output in a
``ContextVar``, and a plain thread has none, so its output would be sent under the
header of whatever cell runs at the time (and the server could not tell it from that
cell's own).  With the copy, a thread's output names the cell that started it, also
after that cell has ended.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import sys
import threading
from collections.abc import Callable
from typing import Any

from .magics import guard_install_magics

NODROP_WAIT_S = 5.0


def bound_writes(cls: Any, flush_bytes: int) -> Callable[..., int]:
    """Patch ``cls.write`` to flush every ``flush_bytes`` characters; the new write."""
    inner = cls.write
    pending: dict[int, int] = {}

    def write(self: Any, string: str) -> int:
        if len(string) > flush_bytes:
            for i in range(0, len(string), flush_bytes):
                write(self, string[i:i + flush_bytes])
            return len(string)
        n: int = inner(self, string)
        key = id(self)
        pending[key] = pending.get(key, 0) + len(string)
        if pending[key] >= flush_bytes:
            pending[key] = 0
            self.flush()
        return n

    cls.write = write
    cls._sc_bounded = True
    return write


def _unshadow(cls: Any) -> Callable[..., None]:
    """A pre-cell hook: an instance attribute ``write`` would bypass the patched class."""
    def unshadow(*args: Any) -> None:
        for stream in (sys.stdout, sys.stderr):
            if type(stream) is cls:
                vars(stream).pop("write", None)
    return unshadow


def _no_drop(ip: Any) -> bool:
    """Set XPUB_NODROP on the kernel's IOPub socket, from its own thread; True if set."""
    thread = getattr(ip.kernel, "iopub_thread", None)
    sock = getattr(thread, "socket", None)
    if sock is None or not hasattr(sock, "setsockopt"):
        return False
    zmq: Any = importlib.import_module("zmq")
    applied: list[bool] = []
    done = threading.Event()

    def bound() -> None:
        try:
            if sock.getsockopt(zmq.TYPE) == zmq.XPUB:
                sock.setsockopt(zmq.XPUB_NODROP, 1)
                applied.append(True)
        finally:
            done.set()

    assert thread is not None
    thread.schedule(bound)
    done.wait(NODROP_WAIT_S)
    return bool(applied)


def inherit_context(cls: Any = threading.Thread) -> None:
    """Patch ``cls.start`` so every thread runs in a copy of its starter's context."""
    if getattr(cls, "_sc_context", False):
        return
    start = cls.start

    def patched(self: Any) -> None:
        ctx = contextvars.copy_context()
        run = self.run
        self.run = lambda: ctx.run(run)
        start(self)

    cls.start = patched
    cls._sc_context = True


def prepare(flush_bytes: int) -> bool:
    """Entry point in a kernel; True when the IOPub socket now blocks instead of dropping."""
    ip = importlib.import_module("IPython").get_ipython()
    ip._tee = lambda channel: contextlib.nullcontext()
    guard_install_magics(ip)  # a failed %pip install fails its job
    cls = type(sys.stdout)
    if not getattr(cls, "_sc_bounded", False):
        bound_writes(cls, flush_bytes)
        ip.events.register("pre_run_cell", _unshadow(cls))
    inherit_context()
    return _no_drop(ip)
