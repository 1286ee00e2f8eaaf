"""Jobs in threads of a kernel that only a notebook page drives, and how they are stopped.

A Colab tab offers no interrupt and runs one cell at a time, so a job cannot be the cell
itself: its cell (``%%smartcolab_job JOB_ID --timeout S``, then the user's code exactly as
written) starts a **thread** and returns at once, and the kernel stays free for the
control cell that reads the job (``tab/agent.py``).  Output is recorded as in
``job_agent.py`` (the same spill files and status file under ``root``), routed by thread:
what the job's thread prints goes to the job, what other cells print does not.

Stops: a monitor thread raises ``KeyboardInterrupt`` in the job's thread at its deadline
or on a stop request (``PyThreadState_SetAsyncExc``), again every ``repeat_s``; a thread
still running ``grace_s`` later (blocked in native code, which an async exception does
not reach) ends the kernel process (the page's server starts a fresh one), recorded as a
restart.  If the job holds the GIL the monitor cannot run: ``tab/watchdog.py``, a separate
process, does the same ``margin_s`` later.  Stdlib only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from ..job_agent import (
    STATUS,
    STOP,
    Capped,
    Job,
    _error_of,
    _shell,
    read_json,
    write_json,
)
from .execute import Router, _run_code, _without_agent_frames, hold_figures

RESULT_CHARS = 50_000  # per stream in a result: the answer travels through a page's output
MONITOR_S = 0.05


def running_name(pid: int) -> str:
    """The file listing the jobs a kernel process runs now (read by ``tab/watchdog.py``)."""
    return f"running-{pid}.json"


class Run:
    """One job of this kernel: its record, its thread, its stop state."""

    def __init__(self, job: Job, timeout: float | None) -> None:
        self.job = job
        self.timeout = timeout
        self.deadline: float | None = None  # set when the job starts
        self.thread: threading.Thread | None = None
        self.reason: str | None = None  # why it is being stopped: timed_out / cancelled
        self.stopping_since: float | None = None
        self.signalled_at = 0.0
        # True only while the thread runs the job's code; an interrupt is sent only then
        # (a thread that ended may have handed its id to another thread).
        self.in_code = False
        self.signal_lock = threading.Lock()


class JobThreads:
    """Runs jobs in threads of this kernel, one at a time, and stops them as the policy says."""

    def __init__(self, root: str, *, grace_s: float, repeat_s: float, margin_s: float,
                 epoch: str, calls: dict[str, list[tuple[str, str]]] | None = None,
                 kill: Callable[[], None] | None = None) -> None:
        self.root = os.path.abspath(root)
        self.grace_s, self.repeat_s, self.margin_s = grace_s, repeat_s, margin_s
        self.epoch, self.pid = epoch, os.getpid()
        self.calls = dict(calls or {})  # module -> its kernelside bundle (probe, variables ...)
        self.kill = kill or (lambda: os.kill(os.getpid(), signal.SIGKILL))
        self.runs: dict[str, Run] = {}
        self.by_thread: dict[int, Job] = {}
        self.lock = threading.Lock()
        self.serial = threading.Lock()  # held by the job that runs
        self.watchdog: Any = None
        os.makedirs(self.root, exist_ok=True)
        self._save_running()
        self.closed = threading.Event()
        self.monitor = threading.Thread(target=self._monitor, name="smartcolab-monitor",
                                        daemon=True)
        self.monitor.start()

    # ------------------------------------------------------------ streams
    def hook_streams(self) -> None:
        """Route ``sys.stdout``/``sys.stderr`` (again: a kernel may have replaced them)."""
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if not getattr(stream, "smartcolab_router", False):
                setattr(sys, name, Router(stream, name, self))
        shell = _shell()
        pub = None if shell is None else shell.display_pub
        if pub is not None and not getattr(pub.publish, "smartcolab_router", False):
            publish = pub.publish

            def routed(data: Any, metadata: Any = None, *args: Any, **kwargs: Any) -> Any:
                job = self.by_thread.get(threading.get_ident())
                if job is not None and job.open and isinstance(data, dict):
                    job.add_display("display_data", data, metadata)
                return publish(data, metadata, *args, **kwargs)

            routed.smartcolab_router = True  # type: ignore[attr-defined]
            pub.publish = routed
        hold_figures(self.busy)

    def busy(self) -> bool:
        """A job of this kernel is running (or waiting to)."""
        return any(r.job.open for r in list(self.runs.values()))

    # ------------------------------------------------------------ jobs
    def start(self, job_id: str, code: str, timeout: float | None = None, session: str = "main",
              created_at: float | None = None) -> dict[str, Any]:
        """Start ``code`` in a thread as job ``job_id``; a known id is not run again."""
        known = read_json(os.path.join(self.root, job_id, STATUS))
        if known is not None or job_id in self.runs:
            return {"job_id": job_id, "started": False, "duplicate": True}
        self.hook_streams()
        now = time.time()
        status = {"job_id": job_id, "session": session, "code": code, "state": "queued",
                  "mode": "thread", "epoch": self.epoch, "pid": self.pid, "timeout": timeout,
                  "created_at": created_at or now, "started_at": None, "finished_at": None,
                  "deadline": None}
        job = Job(self.root, job_id, status)
        job.streams = {"stdout": Capped(RESULT_CHARS), "stderr": Capped(RESULT_CHARS)}
        run = Run(job, timeout)
        thread = threading.Thread(target=self._execute, args=(run, code), daemon=True,
                                  name=f"smartcolab-{job_id}")
        with self.lock:
            self.runs[job_id] = run
            run.thread = thread
        thread.start()
        self._save_running()
        return {"job_id": job_id, "started": True, "duplicate": False}

    def _execute(self, run: Run, code: str) -> None:
        job = run.job
        ending: dict[str, Any] = {"kind": "completed", "reason": None, "failed": False}
        # One job at a time, as a session's jobs elsewhere; a cancel reaches a queued one.
        while not self.serial.acquire(timeout=MONITOR_S):
            if run.reason is not None:
                job.open = False
                ending.update(kind="interrupted", reason=run.reason, failed=True)
                self._finish(run, ending)
                return
        try:
            self._run(run, code, ending)
        finally:
            self.serial.release()

    def _run(self, run: Run, code: str, ending: dict[str, Any]) -> None:
        job = run.job
        now = time.time()
        run.deadline = None if run.timeout is None else now + run.timeout
        job.spill.save_status(state="running", started_at=now, deadline=run.deadline)
        self._save_running()
        self.by_thread[threading.get_ident()] = job
        try:
            with run.signal_lock:
                run.in_code = True
            try:
                _run_code(job, code)
            finally:
                with run.signal_lock:
                    run.in_code = False
        except BaseException as exc:
            job.error = _error_of(_without_agent_frames(exc))
            ending["failed"] = True
            if isinstance(exc, KeyboardInterrupt) and run.reason is not None:
                ending.update(kind="interrupted", reason=run.reason)
            sys.stderr.write("".join(job.error["traceback"]))
        finally:
            job.open = False
            self.by_thread.pop(threading.get_ident(), None)
            self._finish(run, ending)

    def _finish(self, run: Run, ending: dict[str, Any]) -> None:
        job = run.job
        if job.spill.status.get("state") not in ("running", "queued"):
            return  # already recorded as restarted
        job.end(None)
        job.spill.save_status(state="ended", ending=ending, finished_at=time.time())
        self._save_running()

    def _save_running(self) -> None:
        with self.lock:
            running = [{"job_id": k, "dir": r.job.dir} for k, r in self.runs.items()
                       if r.job.spill.status.get("state") == "running"]
        write_json(os.path.join(self.root, running_name(self.pid)), {"jobs": running})

    # ------------------------------------------------------------ stops
    def stop(self, job_id: str, reason: str = "cancelled") -> None:
        run = self.runs.get(job_id)
        if run is not None and run.reason is None:
            run.reason = reason
            write_json(os.path.join(run.job.dir, STOP), {"reason": reason, "at": time.time()})

    def close(self) -> None:
        """Stop watching jobs (the monitor ends within ``MONITOR_S``); jobs still running
        go on unwatched.  For an agent that is dropped while its process lives on."""
        self.closed.set()

    def _monitor(self) -> None:
        # Untraced, whatever traces the other threads (a debugger, coverage): on CPython
        # 3.11 a traced thread cannot enter a Python function while an async exception
        # waits for a thread blocked in C (its tracing dispatch re-checks the pending
        # exception at the function's start forever), so a traced monitor stalls from its
        # first interrupt of a blocked job until the blocked call returns: the very case
        # it must end by a restart.  3.10 and 3.12+ are not affected.
        sys.settrace(None)
        sys.setprofile(None)
        while not self.closed.wait(MONITOR_S):
            # Never let the monitor die, not even of a stray KeyboardInterrupt.
            with contextlib.suppress(Exception, KeyboardInterrupt):
                self.check()

    def check(self, now: float | None = None) -> None:
        """One look at every running job: interrupt or restart as the policy says."""
        now = time.time() if now is None else now
        for run in list(self.runs.values()):
            if run.job.spill.status.get("state") != "running":
                continue
            if run.reason is None and run.deadline is not None and now >= run.deadline:
                run.reason = "timed_out"
            if run.reason is None:
                continue
            if run.stopping_since is None:
                run.stopping_since = now
            if now - run.stopping_since >= self.grace_s:
                self.restart(run)
                return
            if now - run.signalled_at >= self.repeat_s:
                run.signalled_at = now
                self._interrupt(run)

    @staticmethod
    def _interrupt(run: Run) -> None:
        """A KeyboardInterrupt into the job's thread, only while it runs the job's code: not
        into the agent's own bookkeeping, and never into a thread that took a dead one's id."""
        with run.signal_lock:
            thread = run.thread
            if run.in_code and thread is not None and thread.is_alive() and thread.ident:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt))

    def restart(self, culprit: Run) -> None:
        """Record every running job as ended by a restart, then end this kernel process."""
        now = time.time()
        for run in list(self.runs.values()):
            if run.job.spill.status.get("state") == "running":
                reason = culprit.reason if run is culprit else "restart"
                run.job.open = False
                run.job.spill.save_status(state="ended", finished_at=now, ending={
                    "kind": "restarted", "reason": reason, "failed": True})
        self._save_running()
        self.kill()

