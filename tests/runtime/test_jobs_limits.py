"""Deadlines, kernel death, big outputs and server restarts, on runtimes of their own."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil
import pytest

from support.jobs_helpers import KILL_GRACE, Api, runtime_with_grace
from support.runtime_proc import start_runtime


@pytest.mark.timing
def test_pure_python_loop_times_out_and_keeps_state(api: Api) -> None:
    api.submit("survivor = 'still here'")
    t0 = time.monotonic()
    view = api.submit("while True: pass", timeout=2)
    elapsed = time.monotonic() - t0
    assert view["status"] == "timed_out"
    # Interrupted at the deadline, not after the grace and a restart (state kept, below);
    # the bound only has to stay under the submit's 30 s wait.
    assert elapsed < 2 + 15, f"took {elapsed:.2f} s"
    assert not view["result"]["state_lost"]
    assert "deadline" in view["result"]["message"]
    assert api.submit("print(survivor)")["output"] == "still here\n"


@pytest.mark.timing
def test_c_level_loop_forces_a_restart_and_the_next_job_runs(api: Api) -> None:
    api.submit("before_restart = 1")
    epoch_before = api.http.get("/health").json()["epoch"]
    t0 = time.monotonic()
    view = api.submit("sum(range(10**13))", timeout=2)
    elapsed = time.monotonic() - t0
    assert view["status"] == "timed_out"
    assert view["result"]["state_lost"] is True
    assert "restarted" in view["result"]["message"] and "lost" in view["result"]["message"]
    # deadline + grace + a kernel restart (about 1 s idle; generous for a loaded machine)
    assert elapsed < 2 + float(KILL_GRACE) + 15, f"took {elapsed:.2f} s"
    after = api.submit("print('before_restart' in globals())")
    assert after["status"] == "succeeded" and after["output"] == "False\n"
    assert api.http.get("/health").json()["epoch"] != epoch_before


def test_kernel_death_fails_the_job_and_the_queue_goes_on(api: Api) -> None:
    epoch = api.submit("1")["epoch"]
    dying = api.submit("import os\nprint('about to die', flush=True)\nos._exit(1)", wait=0)
    queued = api.submit("print('next job ran')", wait=0)
    died = api.wait_done(dying["job_id"])
    assert died["status"] == "failed"
    err = died["result"]["error"]
    assert err["ename"] == "KernelDied" and "status 1" in err["evalue"]
    assert died["result"]["state_lost"]
    nxt = api.wait_done(queued["job_id"])
    assert nxt["status"] == "succeeded" and nxt["output"] == "next job ran\n"
    assert nxt["epoch"] != epoch


def test_sigkill_is_reported_as_probably_out_of_memory(api: Api) -> None:
    view = api.submit("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert view["status"] == "failed"
    assert "out of memory" in view["result"]["error"]["evalue"]


@pytest.mark.timing
def test_50_mb_output_keeps_server_memory_flat_and_is_pageable(tmp_path: Path) -> None:
    rt = start_runtime(tmp_path / "root")
    client = Api(rt)
    try:
        server = psutil.Process(rt.proc.pid)
        client.submit("1")
        rss_before = server.memory_info().rss
        peak = [rss_before]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], server.memory_info().rss)
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            line = "y" * 999 + "\n"
            view = client.submit(f"for i in range(500):\n    print({line!r} * 100, end='')",
                                 wait=50, timeout=120)
            view = client.wait_done(view["job_id"], 60)
        finally:
            stop.set()
            sampler.join()
        total = 500 * 100 * 1000
        assert view["status"] == "succeeded"
        assert view["output_bytes"] == total
        assert len(view["output"].encode()) < 70 * 1024
        growth = peak[0] - rss_before
        assert growth < 100 * 2**20, f"server RSS grew by {growth / 2**20:.0f} MiB"
        offset, pages = 0, 0
        while offset < total:
            page = client.http.get(f"/jobs/{view['job_id']}/output",
                                   params={"offset": offset, "limit": 4 * 2**20}).json()
            assert set(page["text"]) <= {"y", "\n"}
            assert len(page["text"]) == page["next_offset"] - offset
            offset, pages = page["next_offset"], pages + 1
        assert offset == total and page["complete"] and pages == 12
    finally:
        client.close()
        rt.stop()


def test_server_restart_reports_unfinished_jobs_lost(tmp_path: Path) -> None:
    root, state = tmp_path / "root", tmp_path / "state"
    first = runtime_with_grace(root, secret="first-run-secret-0001", state_dir=state)
    client = Api(first)
    try:
        running = client.submit("import time\nprint('working', flush=True)\ntime.sleep(60)",
                                job_id="long-one", wait=0)
        queued = client.submit("1", job_id="waiting-one", wait=0)
        done = client.submit("2", job_id="done-before", session="main", wait=0)
        deadline = time.monotonic() + 20
        # Kill only once the output reached the spill file, or the check below would race it.
        while "working" not in client.get(running["job_id"], since=0)["output"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        old_epoch = client.http.get("/health").json()["epoch"]
    finally:
        client.close()
        first.kill()
    second = runtime_with_grace(root, secret="second-run-secret-0002", state_dir=state)
    client = Api(second)
    try:
        for job_id in (running["job_id"], queued["job_id"], done["job_id"]):
            view = client.get(job_id)
            assert view["status"] == "lost"
            assert "stopped" in view["result"]["message"] and view["result"]["state_lost"]
        assert client.get(running["job_id"])["output"] == "working\n"
        assert client.http.get("/health").json()["epoch"] != old_epoch
        again = client.submit_raw("import time\nprint('working', flush=True)\ntime.sleep(60)",
                                  job_id="long-one", wait=0)
        assert again.status_code == 200 and again.json()["status"] == "lost"
    finally:
        client.close()
        second.stop()


def test_shutdown_cancels_queued_and_running_jobs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    rt = runtime_with_grace(root)
    client = Api(rt)
    try:
        running = client.submit("import time\ntime.sleep(60)", wait=0)
        queued = client.submit("1", wait=0)
        deadline = time.monotonic() + 10
        while client.get(running["job_id"])["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert client.http.post("/shutdown").status_code == 202
        rt.proc.wait(20)
    finally:
        client.close()
        rt.kill()
    again = runtime_with_grace(root, state_dir=rt.state_dir)
    client = Api(again)
    try:
        assert client.get(running["job_id"])["status"] == "cancelled"
        assert client.get(queued["job_id"])["status"] == "cancelled"
        assert "shut down" in client.get(queued["job_id"])["result"]["message"]
    finally:
        client.close()
        again.stop()


pytest_plugins = ["support.jobs_fixtures"]  # the module-scoped rt and api fixtures
pytestmark = pytest.mark.slow
