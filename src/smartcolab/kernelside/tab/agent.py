"""The job agent's thread mode, as a kernel holds it: the agent that answers the control cell.

``install`` (the setup cell's entry point) makes this kernel process's ``TabAgent``
(kept in builtins), registers the ``%%smartcolab_job`` cell magic that starts a job and
starts the watchdog process.  The agent runs jobs in threads (``tab/jobs.py``) and
answers each control cell: one JSON request in, one marker-delimited line out
(``answer_line``): hello, poll a job's status and text, stop it, page its output, or
call a kernelside entry point the bridge sent at install.  Stdlib only.
"""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from ..boot import load, unload
from ..job_agent import RESULT, SEGMENT_CHARS, STATUS, _shell, read_json, segment_name
from .execute import _fit, hold_figures
from .jobs import JobThreads

NAME = "__smartcolab_tab__"
MAGIC = "smartcolab_job"
VERSION = 1
MAX_TEXT = 64_000  # characters of text in one answer
MAX_WAIT_S = 5.0


def answer_line(nonce: str, data: Any) -> str:
    """One answer as the bridge finds it in the control cell's output."""
    return f"[smartcolab {nonce}]{json.dumps(data)}[/smartcolab {nonce}]"


class TabAgent(JobThreads):
    """Runs jobs in threads of this kernel and answers the control cell."""

    # ------------------------------------------------------------ the control cell
    def control(self, request: str, nonce: str) -> None:
        """Answer one request of the bridge (JSON) with one marker-delimited line."""
        try:
            req = json.loads(request)
            answer = self.answer(req)
        except Exception as exc:  # a bad request is answered, not raised
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        answer.setdefault("epoch", self.epoch)
        print(answer_line(nonce, answer))
        hold_figures(self.busy)  # a job may have loaded matplotlib since it started

    def answer(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "hello":
            return {"agent": VERSION, "pid": self.pid, "root": self.root,
                    "jobs": [self.summary(k) for k in self.runs]}
        if op == "poll":
            return self.poll(str(req["job_id"]), int(req.get("since", 0)),
                             min(float(req.get("wait", 0.0)), MAX_WAIT_S),
                             min(int(req.get("limit", MAX_TEXT)), MAX_TEXT))
        if op == "stop":
            self.stop(str(req["job_id"]), str(req.get("reason", "cancelled")))
            return self.poll(str(req["job_id"]), int(req.get("since", 0)), 0.0, MAX_TEXT)
        if op == "page":
            return self.page(str(req["job_id"]), int(req.get("offset", 0)),
                             min(int(req.get("limit", MAX_TEXT)), MAX_TEXT))
        if op == "call":
            return {"value": self.call(str(req["module"]), str(req["function"]),
                                       dict(req.get("args") or {}))}
        raise ValueError(f"unknown op {op!r}")

    def summary(self, job_id: str) -> dict[str, Any]:
        """The job's status; a live one's output size as of now (its file lags behind)."""
        run = self.runs.get(job_id)
        if run is not None:
            with run.job.spill.lock:
                status = {**run.job.spill.status, "total_chars": run.job.spill.total}
        else:
            status = read_json(os.path.join(self.root, job_id, STATUS)) or {}
            if status.get("state") in ("running", "queued") and status.get("pid") != self.pid:
                # Its kernel process is gone (a restart from the notebook, a crash); its
                # status file lags its output by up to STATUS_EVERY_S.
                status.update(state="ended", total_chars=self._spilled(job_id),
                              ending={"kind": "died", "reason": None, "failed": True})
        status.pop("code", None)
        return status

    def poll(self, job_id: str, since: int, wait: float, limit: int) -> dict[str, Any]:
        """The job's status, its text from ``since`` (the last ``limit`` characters when
        more came), its result once ended; waits up to ``wait`` s for something new."""
        end = time.time() + wait
        status = self.summary(job_id)
        while (status and status.get("state") in ("running", "queued") and time.time() < end
               and int(status.get("total_chars") or 0) <= since):
            time.sleep(0.05)
            status = self.summary(job_id)
        if not status:
            return {"job_id": job_id, "found": False}
        total = int(status.get("total_chars") or 0)
        start = max(since, total - limit)
        answer: dict[str, Any] = {"job_id": job_id, "found": True, "status": status,
                                  "offset": start,
                                  "text": self._text(job_id, start, total)}
        if status.get("state") == "ended":
            answer["result"] = _fit(read_json(os.path.join(self.root, job_id, RESULT)))
        return answer

    def page(self, job_id: str, offset: int, limit: int) -> dict[str, Any]:
        status = self.summary(job_id)
        total = int(status.get("total_chars") or 0)
        return {"job_id": job_id, "found": bool(status), "status": status, "offset": offset,
                "text": self._text(job_id, offset, min(total, offset + limit))}

    def _spilled(self, job_id: str) -> int:
        """The characters in a job's segment files."""
        total, index = 0, 0
        while True:
            try:
                with open(os.path.join(self.root, job_id, segment_name(index)),
                          encoding="utf-8", newline="") as fh:
                    total += len(fh.read())
            except OSError:
                return total
            index += 1

    def _text(self, job_id: str, start: int, end: int) -> str:
        parts: list[str] = []
        index = start // SEGMENT_CHARS
        while index * SEGMENT_CHARS < end:
            try:
                with open(os.path.join(self.root, job_id, segment_name(index)),
                          encoding="utf-8", newline="") as fh:
                    seg = fh.read()
            except OSError:
                seg = ""
            base = index * SEGMENT_CHARS
            parts.append(seg[max(0, start - base):max(0, end - base)])
            index += 1
        return "".join(parts)

    def call(self, module: str, function: str, args: dict[str, Any]) -> Any:
        """Run a kernelside entry point the bridge sent at install (probe, variables ...)."""
        sources = self.calls[module]
        try:
            return getattr(load(sources)[module], function)(**args)
        finally:
            unload([name for name, _ in sources])


def _job_magic(agent: TabAgent) -> Callable[[str, str], None]:
    def smartcolab_job(line: str, cell: str) -> None:
        args = line.split()
        job_id, opts = args[0], dict(zip(args[1::2], args[2::2], strict=False))
        timeout = opts.get("--timeout")
        started = agent.start(job_id, cell, None if timeout in (None, "none") else float(timeout),
                              opts.get("--session", "main"))
        what = ("already ran: not run again" if started["duplicate"]
                else "started in a kernel thread" + (
                    f" (deadline {timeout} s)" if timeout not in (None, "none") else ""))
        print(f"smartcolab job {job_id} {what}; the bridge follows its output.")
    return smartcolab_job


def install(root: str, grace_s: float, repeat_s: float, margin_s: float,
            calls: dict[str, list[list[str]]] | None = None,
            watchdog_source: str | None = None) -> dict[str, Any]:
    """Entry point in a kernel: this process's agent (created on first use), its cell magic
    and its watchdog process."""
    from ..epoch import epoch

    agent = vars(builtins).get(NAME)
    if agent is None or getattr(agent, "pid", None) != os.getpid():
        agent = TabAgent(root, grace_s=grace_s, repeat_s=repeat_s, margin_s=margin_s,
                         epoch=epoch(), calls={k: [(n, s) for n, s in v]
                                               for k, v in (calls or {}).items()})
        if watchdog_source is not None:
            agent.watchdog = subprocess.Popen(
                [sys.executable, "-c", watchdog_source, agent.root, str(agent.pid),
                 repr(grace_s), repr(margin_s)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, close_fds=True)
        setattr(builtins, NAME, agent)
    shell = _shell()
    if shell is not None:
        shell.register_magic_function(_job_magic(agent), magic_kind="cell", magic_name=MAGIC)
    return {"agent": VERSION, "root": agent.root, "epoch": agent.epoch, "pid": agent.pid}
