"""How a thread-mode job runs its code (``tab/jobs.py``): output routed by thread, the last
expression shown, figures displayed at the job's end, a traceback without our frames, a
result fitted to one page output.  Stdlib only (IPython and matplotlib when present).
"""

from __future__ import annotations

import ast
import json
import sys
import threading
from collections.abc import Callable
from typing import Any

from ..job_agent import Job, _shell

OUTPUTS_BUDGET = 600_000  # characters of rich outputs (images) in one answer


class Router:
    """Stands for ``sys.stdout``/``sys.stderr``: the kernel's stream as before, and a copy
    to the job whose thread writes (other threads' writes go only to the kernel)."""

    smartcolab_router = True

    def __init__(self, stream: Any, name: str, agent: Any) -> None:
        self._stream, self._name, self._agent = stream, name, agent

    def write(self, text: str) -> int:
        written: int = self._stream.write(text)
        job = self._agent.by_thread.get(threading.get_ident())
        if job is not None and job.open and isinstance(text, str) and text:
            job.add_text(self._name, text)
        return written

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._stream, attr)


def _run_code(job: Job, code: str) -> None:
    """Run a cell's code in this thread: IPython's transforms (magics, ``!``), the last
    expression's value shown as a cell's would be."""
    shell = _shell()
    before = _figures()
    source = code if shell is None else shell.transform_cell(code)
    namespace = vars(sys.modules["__main__"]) if shell is None else shell.user_ns
    tree = ast.parse(source, filename=f"<job {job.spill.status['job_id']}>")
    last = None
    tail = tree.body[-1] if tree.body else None
    if isinstance(tail, ast.Expr):
        tree.body.pop()
        last = ast.Expression(tail.value)
    exec(compile(tree, "<job>", "exec"), namespace)
    if last is not None:
        value = eval(compile(last, "<job>", "eval"), namespace)
        if value is not None:
            if shell is not None:
                data, metadata = shell.display_formatter.format(value)
            else:
                data, metadata = {"text/plain": repr(value)}, {}
            job.add_display("execute_result", data, metadata)
    if shell is not None:
        _show_figures(before)


def _figures() -> set[int]:
    pyplot = sys.modules.get("matplotlib.pyplot")
    return set(pyplot.get_fignums()) if pyplot is not None else set()


def _show_figures(before: set[int]) -> None:
    """Display and close the figures the job drew, as the inline backend does at a cell's
    end (a job's thread ends no cell), when that backend is in use."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None or "inline" not in str(pyplot.get_backend()):
        return
    shell = _shell()
    for num in sorted(_figures() - before):
        data, metadata = shell.display_formatter.format(pyplot.figure(num))
        shell.display_pub.publish(data, metadata)  # as IPython's display() does
        pyplot.close(num)


def hold_figures(busy: Callable[[], bool]) -> None:
    """Keep the inline backend from showing a running job's figures under another cell: it
    shows whatever was drawn after every cell, whichever thread drew it.  Its hook is
    wrapped to wait while ``busy()``; the job shows its own figures when it ends."""
    shell = _shell()
    hooks: list[Any] = [] if shell is None else shell.events.callbacks.get("post_execute", [])
    for index, hook in enumerate(hooks):
        if getattr(hook, "__name__", "") != "flush_figures":
            continue

        def held(hook: Any = hook) -> Any:
            return None if busy() else hook()

        held.__name__ = "smartcolab_held_flush"
        hooks[index] = held


def _fit(result: dict[str, Any] | None, budget: int = OUTPUTS_BUDGET) -> dict[str, Any] | None:
    """The result with its rich outputs' big values dropped past ``budget`` characters: an
    answer travels as one page output, which the bridge caps."""
    if result is None:
        return None
    for output in result.get("outputs") or []:
        data = output.get("data") or {}
        for mime in [m for m in data if m != "text/plain"]:
            size = len(json.dumps(data[mime]))
            if size > budget:
                del data[mime]
                data.setdefault("text/plain", f"[{mime} output of {size:,} characters left out "
                                              "of this answer]")
            else:
                budget -= size
    return result


def _without_agent_frames(exc: BaseException) -> BaseException:
    """The exception with its traceback starting at the job's own code."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith("<smartcolab"):
        tb = tb.tb_next
    return exc.with_traceback(tb) if tb is not None else exc


