"""The job agent: durable jobs inside any Jupyter kernel, with no bridge needed to finish them.

Installed once per kernel process (``install``: kept in ``builtins``, so ``%reset`` leaves
it and a restart drops it, like the epoch token).  A job is one execute request whose
code calls ``Agent.run``: the job's code runs in the kernel's main thread through
IPython's ``run_cell``, as a cell would (state shared, magics, interrupts).  Everything
it prints or displays is also written, in order, to spill files on the runtime's disk::

    <root>/<job_id>/status.json     status and timings (atomic writes)
    <root>/<job_id>/out-000000.txt  the combined text, SEGMENT_CHARS per segment
    <root>/<job_id>/result.json     stdout/stderr (head + tail), rich outputs, error
    <root>/<job_id>/stop.json       written by a bridge: stop this job (cancel)

so a bridge that restarts reads the whole output through the Jupyter Server's contents
API, which answers while the kernel is busy.

The deadline is enforced by a watchdog *process* (a thread would be starved by native
code that holds the GIL), started with the agent: ``grace_s`` after the deadline (or a
stop request) it sends SIGINT every ``repeat_s``, the policy of ``shared/stop.py``; if
the job still runs ``grace_s`` later it records the restart and kills the kernel, which
the Jupyter Server then restarts.  A connected bridge enforces the same deadline
first; the watchdog waits ``margin_s`` longer, so it acts only when no bridge does.

The status file records how the run ended (``ending``: completed / interrupted /
restarted, with the stop ``reason``); the bridge maps that to a job status with the
one ``verdict`` of ``shared/stop.py``.  Stdlib only.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from typing import Any

NAME = "__smartcolab_agent__"
SEGMENT_CHARS = 256 * 1024
STATUS, RESULT, STOP = "status.json", "result.json", "stop.json"
CAP_CHARS = 200_000  # stdout / stderr kept in result.json (head + tail)
STATUS_EVERY_S = 0.25  # a running job's status (its output size) is rewritten at most this often
POLL_S = 0.1


def active_name(pid: int) -> str:
    """The file naming the job a kernel process runs now (one per kernel: the root is shared)."""
    return f"active-{pid}.json"


def segment_name(index: int) -> str:
    return f"out-{index:06d}.txt"


def write_json(path: str, data: dict[str, Any]) -> None:
    """Write atomically: a reader sees the old file or the new one, never half."""
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


class Capped:
    """A text kept whole up to ``limit`` characters, else its head and its tail."""

    def __init__(self, limit: int = CAP_CHARS) -> None:
        self.limit, self.head, self.tail, self.total = limit, "", "", 0

    def add(self, text: str) -> None:
        self.total += len(text)
        room = self.limit // 2 - len(self.head)
        if room > 0:
            self.head += text[:room]
            text = text[room:]
        self.tail = (self.tail + text)[-(self.limit - self.limit // 2):]

    def block(self) -> dict[str, Any]:
        if self.total <= self.limit:
            return {"text": self.head + self.tail, "total_chars": self.total, "truncated": False}
        return {"text": self.head + "\n... [output truncated] ...\n" + self.tail,
                "total_chars": self.total, "truncated": True}


class Spill:
    """The job's combined text in bounded segment files, and its status file."""

    def __init__(self, directory: str, status: dict[str, Any]) -> None:
        self.dir, self.status = directory, status
        self.total = 0
        self.lock = threading.Lock()  # background threads print too
        self._fh: Any = None
        self._written_at = 0.0
        os.makedirs(directory, exist_ok=True)
        self.save_status()

    def write(self, text: str) -> None:
        with self.lock:
            while text:
                index, used = divmod(self.total, SEGMENT_CHARS)
                if self._fh is None or used == 0:
                    if self._fh is not None:
                        self._fh.close()
                    self._fh = open(os.path.join(self.dir, segment_name(index)), "a",  # noqa: SIM115
                                    encoding="utf-8", newline="")
                part, text = text[:SEGMENT_CHARS - used], text[SEGMENT_CHARS - used:]
                self._fh.write(part)
                self._fh.flush()
                self.total += len(part)
            if time.time() - self._written_at >= STATUS_EVERY_S:
                self.save_status()

    def save_status(self, **changes: Any) -> None:
        self.status.update(changes, total_chars=self.total, updated_at=time.time())
        self._written_at = time.time()
        write_json(os.path.join(self.dir, STATUS), self.status)

    def close(self) -> None:
        with self.lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


class Tee:
    """Stands in for ``sys.stdout``/``sys.stderr`` during a job: the kernel's stream as before,
    and a copy to the job (until the job ends; a thread that kept it writes through)."""

    def __init__(self, stream: Any, name: str, job: Job) -> None:
        self._stream, self._name, self._job = stream, name, job

    def write(self, text: str) -> int:
        written: int = self._stream.write(text)
        if self._job.open and isinstance(text, str) and text:
            self._job.add_text(self._name, text)
        return written

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._stream, attr)


class Job:
    """One job's output as the agent records it."""

    def __init__(self, root: str, job_id: str, status: dict[str, Any]) -> None:
        self.dir = os.path.join(root, job_id)
        self.spill = Spill(self.dir, status)
        self.streams = {"stdout": Capped(), "stderr": Capped()}
        self.outputs: list[dict[str, Any]] = []
        self.error: dict[str, Any] | None = None
        self.open = True

    def add_text(self, name: str, text: str) -> None:
        self.streams[name].add(text)
        self.spill.write(text)

    def add_display(self, kind: str, data: dict[str, Any], metadata: Any = None) -> None:
        self.outputs.append({"type": kind, "data": data, "metadata": metadata or {}})
        text = data.get("text/plain")
        if isinstance(text, str) and text:
            self.spill.write(text + "\n")

    def end(self, count: Any) -> None:
        """Write the job's result file and close its spill (the status is the caller's)."""
        result = {"stdout": self.streams["stdout"].block(),
                  "stderr": self.streams["stderr"].block(), "outputs": self.outputs,
                  "error": self.error, "execution_count": count}
        try:
            write_json(os.path.join(self.dir, RESULT), result)
        except (TypeError, ValueError):  # a display bundle that is not JSON
            result["outputs"] = []
            write_json(os.path.join(self.dir, RESULT), result)
        self.spill.close()


def _shell() -> Any:
    """The kernel's IPython shell, when there is one (a plain Python kernel has none)."""
    ipython = sys.modules.get("IPython")
    return None if ipython is None else ipython.get_ipython()


class Agent:
    """Runs jobs and writes their spill files under ``root``; one per kernel process."""

    def __init__(self, root: str, *, grace_s: float, repeat_s: float, margin_s: float,
                 epoch: str) -> None:
        self.root = os.path.abspath(root)
        self.grace_s, self.repeat_s, self.margin_s = grace_s, repeat_s, margin_s
        self.epoch = epoch
        self.pid = os.getpid()
        self.jobs: dict[str, dict[str, Any]] = {}  # job id -> the summary of its run
        self.watchdog: Any = None
        os.makedirs(self.root, exist_ok=True)

    # ------------------------------------------------------------ the watchdog process
    def start_watchdog(self, source: str) -> None:
        """Start the watchdog in its own session (a group SIGINT to the kernel misses it)."""
        boot = ("import sys, types\nm = types.ModuleType('smartcolab_watchdog')\n"
                "exec(compile(sys.stdin.read(), '<smartcolab.job_agent>', 'exec'), vars(m))\n"
                "m.watchdog(*sys.argv[1:])\n")
        proc = subprocess.Popen(
            [sys.executable, "-c", boot, self.root, str(self.pid), repr(self.grace_s),
             repr(self.repeat_s), repr(self.margin_s)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True)
        assert proc.stdin is not None
        proc.stdin.write(source.encode("utf-8"))
        proc.stdin.close()
        self.watchdog = proc

    # ------------------------------------------------------------ jobs
    def run(self, job_id: str, code: str, timeout: float | None = None,
            session: str = "", created_at: float | None = None) -> None:
        """Run ``code`` as a cell, recording it under ``root/job_id``; never raises.  A job id
        that already has files is not run again (a bridge may resend a request it thinks
        lost)."""
        known = read_json(os.path.join(self.root, job_id, STATUS))
        if known is not None:
            self.jobs[job_id] = {**self.summary_of(known), "duplicate": True}
            return
        now = time.time()
        status = {"job_id": job_id, "session": session, "code": code, "state": "running",
                  "epoch": self.epoch,
                  "pid": self.pid, "timeout": timeout, "created_at": created_at or now,
                  "started_at": now, "finished_at": None,
                  "deadline": None if timeout is None else now + timeout}
        job = Job(self.root, job_id, status)
        write_json(os.path.join(self.root, active_name(self.pid)),
                   {"job_id": job_id, "dir": job.dir})
        shell = _shell()
        ending: dict[str, Any] = {"kind": "completed", "reason": None, "failed": False}
        count = None
        try:
            if shell is None:
                self._run_plain(job, code, ending)
            else:
                count = self._run_ipython(shell, job, code, ending)
        except BaseException as exc:  # a SIGINT between our own lines, or our own fault
            job.error = job.error or _error_of(exc)
            ending.update(failed=True, kind="interrupted" if isinstance(
                exc, KeyboardInterrupt) else "completed")
        finally:
            job.open = False
            self._finish(job, ending, count)

    def _run_ipython(self, shell: Any, job: Job, code: str, ending: dict[str, Any]) -> Any:
        out, err = sys.stdout, sys.stderr
        pub = shell.display_pub
        show = shell._showtraceback
        had_publish = "publish" in vars(pub)
        publish = pub.publish

        def tee_publish(data: Any, metadata: Any = None, *args: Any, **kwargs: Any) -> Any:
            if job.open and isinstance(data, dict):
                job.add_display("display_data", data, metadata)
            return publish(data, metadata, *args, **kwargs)

        def tee_traceback(etype: Any, evalue: Any, stb: Any) -> Any:
            job.error = {"ename": getattr(etype, "__name__", str(etype)), "evalue": str(evalue),
                         "traceback": [str(line) for line in stb]}
            return show(etype, evalue, stb)

        sys.stdout, sys.stderr = Tee(out, "stdout", job), Tee(err, "stderr", job)
        pub.publish, shell._showtraceback = tee_publish, tee_traceback
        try:
            result = shell.run_cell(code, store_history=True)
        finally:
            sys.stdout, sys.stderr = out, err
            shell._showtraceback = show
            if had_publish:
                pub.publish = publish
            else:
                del pub.publish
        failure = result.error_before_exec or result.error_in_exec
        if result.result is not None:
            data, metadata = shell.display_formatter.format(result.result)
            job.add_display("execute_result", data, metadata)
        if failure is not None:
            job.error = job.error or _error_of(failure)
            ending["failed"] = True
            if isinstance(failure, KeyboardInterrupt):
                ending["kind"] = "interrupted"
        return shell.execution_count - 1

    def _run_plain(self, job: Job, code: str, ending: dict[str, Any]) -> None:
        """A kernel without IPython: exec in ``__main__``, output teed the same way."""
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = Tee(out, "stdout", job), Tee(err, "stderr", job)
        try:
            exec(compile(code, "<job>", "exec"), vars(sys.modules["__main__"]))
        except BaseException as exc:
            job.error = _error_of(exc)
            ending.update(failed=True, kind="interrupted" if isinstance(
                exc, KeyboardInterrupt) else "completed")
            traceback.print_exception(type(exc), exc, exc.__traceback__)
        finally:
            sys.stdout, sys.stderr = out, err

    def _finish(self, job: Job, ending: dict[str, Any], count: Any) -> None:
        status = job.spill.status
        now = time.time()
        if ending["kind"] == "interrupted":
            stop = read_json(os.path.join(job.dir, STOP))
            deadline = status.get("deadline")
            ending["reason"] = (str(stop.get("reason")) if stop else
                                "timed_out" if deadline is not None and now >= deadline
                                else "cancelled")
        job.end(count)
        job.spill.save_status(state="ended", ending=ending, finished_at=now,
                              execution_count=count)
        self.jobs[str(status["job_id"])] = self.summary_of(status)
        with contextlib.suppress(OSError):
            os.remove(os.path.join(self.root, active_name(self.pid)))

    @staticmethod
    def summary_of(status: dict[str, Any]) -> dict[str, Any]:
        return {key: status.get(key) for key in (
            "job_id", "state", "ending", "total_chars", "started_at", "finished_at")}

    def summary(self, job_id: str) -> dict[str, Any] | None:
        """What a bridge reads in the job's own execute_reply (a user expression)."""
        return self.jobs.get(job_id)


def _error_of(exc: BaseException) -> dict[str, Any]:
    return {"ename": type(exc).__name__, "evalue": str(exc),
            "traceback": traceback.format_exception(type(exc), exc, exc.__traceback__)}


def install(root: str, source: str, grace_s: float, repeat_s: float, margin_s: float,
            watchdog: bool = True) -> dict[str, Any]:
    """Entry point in a kernel: the agent of this process (created and started on first use)."""
    from .epoch import epoch

    agent = vars(builtins).get(NAME)
    if agent is None or getattr(agent, "pid", None) != os.getpid():
        agent = Agent(root, grace_s=grace_s, repeat_s=repeat_s, margin_s=margin_s,
                      epoch=epoch())
        if watchdog:
            agent.start_watchdog(source)
        setattr(builtins, NAME, agent)
    return {"root": agent.root, "epoch": agent.epoch, "pid": agent.pid}


# ---------------------------------------------------------------- the watchdog process
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def watchdog(root: str, pid: str, grace_s: str, repeat_s: str, margin_s: str) -> None:
    """Entry point of the watchdog process: stop the kernel's job past its deadline."""
    kernel = int(pid)
    grace, repeat, margin = float(grace_s), float(repeat_s), float(margin_s)
    stopping: dict[str, float] = {}  # job id -> when the first interrupt was decided
    signalled: dict[str, float] = {}
    while _alive(kernel) and os.getppid() == kernel:
        time.sleep(POLL_S)
        active = read_json(os.path.join(root, active_name(kernel)))
        if not active:
            continue
        job_id, directory = str(active.get("job_id")), str(active.get("dir"))
        status = read_json(os.path.join(directory, STATUS))
        if not status or status.get("state") != "running" or status.get("pid") != kernel:
            continue
        now = time.time()
        stop = read_json(os.path.join(directory, STOP))
        deadline = status.get("deadline")
        due = deadline is not None and now >= float(deadline) + margin
        if stop is None and not due:
            continue
        first = stopping.setdefault(job_id, now)
        if now - first >= grace:
            status.update(state="ended", finished_at=now, updated_at=now, ending={
                "kind": "restarted", "reason": str(stop.get("reason")) if stop else "timed_out",
                "failed": True})
            write_json(os.path.join(directory, STATUS), status)
            os.kill(kernel, signal.SIGKILL)  # the Jupyter Server starts a fresh kernel
            return
        if now - signalled.get(job_id, 0.0) >= repeat:
            signalled[job_id] = now
            os.kill(kernel, signal.SIGINT)
