"""The function a Dask worker runs for one batch; standard library only.

It is shipped to the workers by value (``cloudpickle.register_pickle_by_value``), so a
Dask cluster needs nothing of ours installed.  Each worker process keeps one namespace
per operation (keyed by the checkpoint's run id and inputs): ``setup_code`` runs once
per worker and namespace, then each batch program (the same one a kernel runs, built
by ``chunked.build_batch``) runs in it.  Output is captured per thread, never by
swapping ``sys.stdout`` for the whole process, so two tasks on one worker (threads)
never mix their output.
"""

from __future__ import annotations

import io
import sys
import threading
import traceback
import types
from typing import Any

STATE_MODULE = "_smartcolab_dask_state"


class _ThreadStdout(io.TextIOBase):
    """Writes go to the calling thread's buffer when it has one, else to the real stream."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.local = threading.local()

    def write(self, text: str) -> int:
        buf = getattr(self.local, "buf", None)
        return buf.write(text) if buf is not None else int(self.real.write(text))

    def flush(self) -> None:
        if getattr(self.local, "buf", None) is None:
            self.real.flush()


def _state() -> Any:
    state: Any = sys.modules.get(STATE_MODULE)
    if state is None:
        # Kept in sys.modules: this module itself arrives by value, again with each task.
        state = types.ModuleType(STATE_MODULE)
        state.namespaces = {}
        state.lock = threading.Lock()
        state.stdout = _ThreadStdout(sys.stdout)
        sys.stdout = state.stdout
        sys.modules[STATE_MODULE] = state
    return state


def _run(code: str, ns: dict[str, Any], out: _ThreadStdout) -> dict[str, Any] | None:
    """Exec ``code`` in ``ns``; the error (ename, evalue, traceback) or None."""
    try:
        exec(compile(code, "<batch>", "exec"), ns)
    except BaseException as exc:
        return {"ename": type(exc).__name__, "evalue": str(exc),
                "traceback": traceback.format_exception(type(exc), exc, exc.__traceback__)}
    return None


def run_batch(key: str, setup_code: str, program: str) -> dict[str, Any]:
    """Run one batch on this worker; never raises (the error is returned)."""
    import os
    import socket

    state = _state()
    out = state.stdout
    buf = io.StringIO()
    out.local.buf = buf
    try:
        with state.lock:
            ns = state.namespaces.get(key)
            setup_ran = False
            if ns is None:
                ns = {"__name__": "__main__", "__builtins__": __builtins__}
                error = _run(setup_code, ns, out) if setup_code.strip() else None
                if error is not None:
                    return {"stdout": buf.getvalue(), "error": error, "setup_failed": True,
                            "worker": f"{socket.gethostname()}:{os.getpid()}"}
                state.namespaces[key] = ns
                setup_ran = True
        error = _run(program, ns, out)
        return {"stdout": buf.getvalue(), "error": error, "setup_failed": False,
                "setup_ran": setup_ran, "worker": f"{socket.gethostname()}:{os.getpid()}"}
    finally:
        out.local.buf = None
