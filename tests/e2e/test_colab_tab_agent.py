"""The thread-mode job agent in a real IPython kernel, driven by the very cells the
colab-tab backend writes (setup, job, control): the job cell returns at once, the kernel
answers control cells while the job runs, and the deadline stops a job that never ends."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

from smartcolab.client.colabtab import cells


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The setup cell, its agent keeping job files in a folder of this test run."""
    return cells.setup_cell(str(tmp_path_factory.mktemp("tab-jobs")))


@pytest.fixture(scope="module")
def kernel() -> Iterator[BlockingKernelClient]:
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run(kc: BlockingKernelClient, code: str, timeout: float = 60.0) -> tuple[str, list[Any]]:
    """Run a cell as the page would; its stdout and its error outputs."""
    out: list[str] = []
    errors: list[Any] = []

    def hook(msg: dict[str, Any]) -> None:
        kind, content = msg["header"]["msg_type"], msg["content"]
        if kind == "stream":
            out.append(content["text"])
        elif kind == "error":
            errors.append(content)

    kc.execute_interactive(code, timeout=timeout, output_hook=hook)
    return "".join(out), errors


def ask(kc: BlockingKernelClient, request: dict[str, Any]) -> dict[str, Any]:
    code, nonce = cells.control_cell(request)
    text, errors = run(kc, code)
    assert not errors, errors
    return cells.answer(text, nonce)


def test_without_the_agent_the_control_cell_says_so(kernel: BlockingKernelClient) -> None:
    assert ask(kernel, {"op": "hello"}) == {"agent": None}


def test_a_job_cell_returns_at_once_and_the_job_is_followed(
        kernel: BlockingKernelClient, setup: str) -> None:
    out, errors = run(kernel, setup)
    assert not errors, errors
    hello = ask(kernel, {"op": "hello"})
    assert hello["agent"] == 1 and hello["epoch"]
    run(kernel, "go = False")
    # The job waits for a cell run after its own: only a launcher that returned lets it end.
    out, errors = run(kernel, cells.job_cell(
        "j-real1", "import time\nx = 41\nfor i in range(3):\n    print('tick', i)\n"
        "while not go:\n    time.sleep(0.02)\nx + 1", timeout=60))
    assert not errors, errors
    assert "j-real1 started in a kernel thread" in out
    seen = ask(kernel, {"op": "poll", "job_id": "j-real1", "since": 0})
    assert seen["status"]["state"] == "running"
    run(kernel, "go = True")
    end = time.monotonic() + 60
    while seen["status"]["state"] != "ended" and time.monotonic() < end:
        seen = ask(kernel, {"op": "poll", "job_id": "j-real1", "since": 0, "wait": 2})
    assert seen["text"] == "tick 0\ntick 1\ntick 2\n42\n"
    assert seen["result"]["outputs"][0]["data"]["text/plain"] == "42"
    listed = ask(kernel, {"op": "call", "module": "variables", "function": "variables",
                          "args": {"private": False}})["value"]
    assert {"x", "go"} <= {v["name"] for v in listed}


def test_the_deadline_wins_over_a_cell_that_never_ends(kernel: BlockingKernelClient,
                                                        setup: str) -> None:
    run(kernel, setup)
    run(kernel, cells.job_cell("j-real2", "while True:\n    pass", timeout=1))
    end = time.monotonic() + 60
    seen = ask(kernel, {"op": "poll", "job_id": "j-real2", "since": 0})
    while seen["status"]["state"] != "ended" and time.monotonic() < end:
        seen = ask(kernel, {"op": "poll", "job_id": "j-real2", "since": 0, "wait": 2})
    assert seen["status"]["ending"]["reason"] == "timed_out"
    assert seen["status"]["ending"]["kind"] == "interrupted"
    assert ask(kernel, {"op": "hello"})["agent"] == 1  # the same kernel, still there


def test_a_blocked_thread_past_its_deadline_restarts_the_kernel(tmp_path: Path) -> None:
    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        run(kc, cells.setup_cell(str(tmp_path)))
        epoch = ask(kc, {"op": "hello"})["epoch"]
        run(kc, cells.job_cell("j-real3", "import time\ntime.sleep(600)", timeout=0.5))
        end = time.monotonic() + 60
        while km.is_alive() and time.monotonic() < end:
            time.sleep(0.2)
        assert not km.is_alive()  # ended by the agent: the page's server starts a new one
        ending = json.loads((tmp_path / "j-real3" / "status.json").read_text())["ending"]
        assert ending == {"kind": "restarted", "reason": "timed_out", "failed": True}
        assert epoch
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_new_kernel_reports_the_jobs_of_the_one_that_died(tmp_path: Path) -> None:
    setup = cells.setup_cell(str(tmp_path))
    first, kc1 = start_new_kernel(kernel_name="python3")
    try:
        run(kc1, setup)
        run(kc1, cells.job_cell("j-died", "import time\nprint('started')\ntime.sleep(600)", None))
        seen = ask(kc1, {"op": "poll", "job_id": "j-died", "since": 0, "wait": 5})
        assert seen["text"] == "started\n", seen
    finally:
        kc1.stop_channels()
        first.shutdown_kernel(now=True)  # the notebook's kernel restarted under the job
    second, kc2 = start_new_kernel(kernel_name="python3")
    try:
        assert ask(kc2, {"op": "poll", "job_id": "j-died"}) == {"agent": None}
        run(kc2, setup)
        seen = ask(kc2, {"op": "poll", "job_id": "j-died", "since": 0})
        assert seen["status"]["ending"]["kind"] == "died"
        assert seen["text"] == "started\n"  # its output outlived its kernel
    finally:
        kc2.stop_channels()
        second.shutdown_kernel(now=True)


def test_a_jobs_plot_comes_back_as_an_image(kernel: BlockingKernelClient, setup: str) -> None:
    run(kernel, setup)
    run(kernel, "%matplotlib inline")  # Colab's default
    run(kernel, cells.job_cell("j-plot", "import matplotlib.pyplot as plt\n"
                                         "plt.plot([1, 3, 2])\nprint('drawn')", timeout=60))
    end = time.monotonic() + 60
    seen = ask(kernel, {"op": "poll", "job_id": "j-plot", "since": 0})
    while seen["status"]["state"] != "ended" and time.monotonic() < end:
        seen = ask(kernel, {"op": "poll", "job_id": "j-plot", "since": 0, "wait": 2})
    assert seen["result"]["error"] is None
    assert any("image/png" in o["data"] for o in seen["result"]["outputs"])


def test_a_job_holding_the_gil_is_ended_by_the_watchdog_process(tmp_path: Path) -> None:
    """Native code that never releases the GIL starves the agent's monitor thread too; the
    watchdog process ends the kernel ``margin_s`` after the monitor would have."""
    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        run(kc, cells.setup_cell(str(tmp_path)))
        # A C-level loop: no bytecode boundary for an async exception, no GIL release
        # (not even for the launcher cell to finish: it is sent, not awaited).
        kc.execute(cells.job_cell("j-gil", "sum(range(10**14))", timeout=0.5))
        end = time.monotonic() + 120
        while km.is_alive() and time.monotonic() < end:
            time.sleep(0.2)
        assert not km.is_alive()
        ending = json.loads((tmp_path / "j-gil" / "status.json").read_text())["ending"]
        assert ending == {"kind": "restarted", "reason": "timed_out", "failed": True}
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
