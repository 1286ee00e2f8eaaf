"""The thread-mode job agent (kernelside/tab/agent.py, jobs.py) in this process: jobs in threads,
output routed by thread, deadline and cancel by async exception, restart when a thread
ignores them, and the control cell's answers."""

from __future__ import annotations

import builtins
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smartcolab.client.colabtab import cells
from smartcolab.kernelside.tab import agent as tab_agent
from smartcolab.kernelside.tab import jobs as tab_jobs
from smartcolab.kernelside.tab import watchdog as tab_watchdog
from smartcolab.kernelside.tab.agent import TabAgent


@pytest.fixture
def streams(capsys: pytest.CaptureFixture[str]) -> pytest.CaptureFixture[str]:
    """pytest's own stdout/stderr, which the agent wraps (pytest puts them back)."""
    return capsys


AGENTS: list[TabAgent] = []


@pytest.fixture(autouse=True)
def _agents_closed() -> Iterator[None]:
    """Each test's agents stop their monitors at its end: a monitor polls every 50 ms
    for good, and on a loaded machine threads that wake that often slow the CPU-bound
    tests that follow on the same worker (each wake-up takes the GIL)."""
    yield
    while AGENTS:
        AGENTS.pop().close()


def make(tmp_path: Path, kills: list[int], grace_s: float = 5.0) -> TabAgent:
    agent = TabAgent(str(tmp_path), grace_s=grace_s, repeat_s=0.2, margin_s=1.0, epoch="e1",
                     kill=lambda: kills.append(1))
    AGENTS.append(agent)
    return agent


def wait_ended(agent: TabAgent, job_id: str, limit: float = 30.0) -> dict[str, Any]:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        got = agent.poll(job_id, 0, 0.5, 10_000)
        if got["status"].get("state") == "ended":
            return got
    raise AssertionError(f"job {job_id} did not end: {got}")


def test_a_job_runs_in_a_thread_and_keeps_only_its_own_output(
        tmp_path: Path, streams: pytest.CaptureFixture[str]) -> None:
    agent = make(tmp_path, [])
    started = agent.start("j-1", "import time\nprint('from the job')\ntime.sleep(0.3)\n6 * 7",
                          timeout=30)
    assert started == {"job_id": "j-1", "started": True, "duplicate": False}
    print("from another cell")  # the main thread: the kernel's stream only
    got = wait_ended(agent, "j-1")
    assert got["text"] == "from the job\n42\n"
    assert got["status"]["ending"] == {"kind": "completed", "reason": None, "failed": False}
    result = got["result"]
    assert result["stdout"]["text"] == "from the job\n"
    assert result["outputs"][0]["type"] == "execute_result"
    assert result["outputs"][0]["data"]["text/plain"] == "42"
    shown = streams.readouterr().out
    assert "from another cell" in shown and "from the job" in shown
    assert agent.start("j-1", "print('again')")["duplicate"] is True


def test_an_error_is_the_jobs_result(tmp_path: Path, streams: pytest.CaptureFixture[str]) -> None:
    agent = make(tmp_path, [])
    agent.start("j-err", "print('before')\n1 / 0", timeout=30)
    got = wait_ended(agent, "j-err")
    assert got["result"]["error"]["ename"] == "ZeroDivisionError"
    assert got["status"]["ending"]["failed"] is True
    assert got["status"]["ending"]["kind"] == "completed"


def test_the_deadline_interrupts_a_loop_that_never_ends(
        tmp_path: Path, streams: pytest.CaptureFixture[str]) -> None:
    kills: list[int] = []
    agent = make(tmp_path, kills)
    agent.start("j-loop", "import time\nwhile True:\n    time.sleep(0.01)", timeout=0.3)
    got = wait_ended(agent, "j-loop")
    assert got["status"]["ending"] == {"kind": "interrupted", "reason": "timed_out",
                                       "failed": True}
    assert got["result"]["error"]["ename"] == "KeyboardInterrupt"
    assert kills == []


def test_cancel_stops_a_job_and_keeps_the_kernel(tmp_path: Path, streams: pytest.CaptureFixture[str]) -> None:
    kills: list[int] = []
    agent = make(tmp_path, kills)
    agent.start("j-c", "import time\nwhile True:\n    time.sleep(0.01)", timeout=None)
    assert agent.poll("j-c", 0, 0.0, 100)["status"]["state"] == "running"
    agent.stop("j-c")
    got = wait_ended(agent, "j-c")
    assert got["status"]["ending"]["kind"] == "interrupted"
    assert got["status"]["ending"]["reason"] == "cancelled"
    assert json.loads((tmp_path / "j-c" / "stop.json").read_text())["reason"] == "cancelled"
    assert kills == []


def test_a_thread_that_ignores_the_interrupt_ends_the_kernel(
        tmp_path: Path, streams: pytest.CaptureFixture[str]) -> None:
    # Also under a tracer (coverage here, a debugger for a user): on Python 3.11 a traced
    # monitor stalled on its first interrupt of a blocked thread (tab_jobs.JobThreads._monitor).
    held = threading.Lock()
    held.acquire()
    kills: list[int] = []

    def kill() -> None:  # in process, the kernel's end must also end the blocked call
        kills.append(1)
        held.release()

    agent = TabAgent(str(tmp_path), grace_s=0.5, repeat_s=0.2, margin_s=1.0, epoch="e1",
                     kill=kill)
    AGENTS.append(agent)
    # A call blocked in C: an async exception reaches the thread only when it returns.
    builtins.__dict__["_tab_test_held"] = held
    try:
        agent.start("j-block", "import builtins\nbuiltins._tab_test_held.acquire(timeout=60)",
                    timeout=None)
        # The stop comes once the thread is on the line of the call: from there to the
        # call nothing checks for an async exception (a stop that came earlier would just
        # interrupt the job, and this test would fail).
        thread = agent.runs["j-block"].thread
        assert thread is not None
        end = time.monotonic() + 30
        while time.monotonic() < end:
            frame = sys._current_frames().get(thread.ident or 0)
            if frame is not None and frame.f_code.co_filename == "<job>" and frame.f_lineno == 2:
                break
            time.sleep(0.02)
        agent.stop("j-block")
        while not kills and time.monotonic() < end + 30:
            time.sleep(0.05)
        assert kills == [1]
        thread.join(30)
    finally:
        del builtins.__dict__["_tab_test_held"]
    status = agent.summary("j-block")
    assert status["state"] == "ended"
    assert status["ending"] == {"kind": "restarted", "reason": "cancelled", "failed": True}
    running = json.loads((tmp_path / tab_jobs.running_name(agent.pid)).read_text())
    assert running == {"jobs": []}


def test_the_control_answer_round_trips_and_refuses_a_foreign_nonce(
        tmp_path: Path, streams: pytest.CaptureFixture[str]) -> None:
    agent = make(tmp_path, [])
    agent.control(json.dumps({"op": "hello"}), "n1")
    agent.control("{not json", "n2")
    text = streams.readouterr().out
    hello = cells.answer(text, "n1")
    assert hello["agent"] == tab_agent.VERSION and hello["epoch"] == "e1"
    assert "error" in cells.answer(text, "n2")
    with pytest.raises(Exception, match="no answer"):
        cells.answer(text, "n3")


def test_the_watchdog_decides_from_deadline_and_stop_request() -> None:
    status = {"deadline": 100.0}
    assert tab_watchdog.overdue(status, None, 105.0, grace=5, margin=1) is None
    assert tab_watchdog.overdue(status, None, 106.0, grace=5, margin=1) == "timed_out"
    stop = {"reason": "cancelled", "at": 50.0}
    assert tab_watchdog.overdue({"deadline": None}, stop, 56.0, grace=5, margin=1) == "cancelled"


def test_jobs_run_one_at_a_time_and_a_queued_one_can_be_cancelled(
        tmp_path: Path, streams: pytest.CaptureFixture[str]) -> None:
    agent = make(tmp_path, [])
    gate = builtins.__dict__.setdefault("_tab_test_gate", {"go": False})
    agent.start("j-first", "import builtins, time\n"
                "while not builtins._tab_test_gate['go']:\n    time.sleep(0.01)", timeout=30)
    agent.start("j-second", "print('second ran')", timeout=30)
    agent.start("j-third", "print('third ran')", timeout=30)
    assert agent.poll("j-second", 0, 0.2, 100)["status"]["state"] == "queued"
    agent.stop("j-third")
    third = wait_ended(agent, "j-third")
    assert third["status"]["ending"] == {"kind": "interrupted", "reason": "cancelled",
                                         "failed": True}
    assert third["text"] == ""
    gate["go"] = True
    assert wait_ended(agent, "j-second")["text"] == "second ran\n"
    assert wait_ended(agent, "j-first")["status"]["ending"]["kind"] == "completed"
    del builtins.__dict__["_tab_test_gate"]


def test_a_closed_agent_stops_its_monitor(tmp_path: Path) -> None:
    agent = make(tmp_path, [])
    assert agent.monitor.is_alive()
    agent.close()
    agent.monitor.join(10)
    assert not agent.monitor.is_alive()
