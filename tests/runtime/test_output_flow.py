"""Flow control of job output: a server that reads slower than a job prints stays small.

The kernel's iopub socket blocks (XPUB_NODROP) instead of queueing without bound in the
server or dropping output; these tests pause the server process (SIGSTOP) while a job
prints, the harshest form of "the server falls behind", and check that its memory does
not follow the backlog and that every byte arrives.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import psutil
import pytest

from support.jobs_helpers import Api, runtime_with_grace
from support.runtime_proc import RuntimeProc

MB = 2**20


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProc]:
    proc = runtime_with_grace(tmp_path_factory.mktemp("flow") / "root")
    yield proc
    proc.stop()


@pytest.fixture
def api(rt: RuntimeProc) -> Iterator[Api]:
    client = Api(rt)
    yield client
    client.close()


class PeakRss:
    """Samples a process's RSS every 10 ms in a thread; ``growth`` is peak minus start."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.start = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.01)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def growth(self) -> int:
        return self.peak - self.start


@pytest.mark.timing
def test_a_stalled_server_does_not_buffer_the_backlog_and_loses_nothing(
        api: Api, rt: RuntimeProc) -> None:
    api.submit("1")
    megabytes = 200
    code = f"line = 'z' * 1023\nfor _ in range({megabytes} * 1024):\n    print(line)"
    with PeakRss(rt.proc.pid) as rss:
        view = api.submit(code, wait=0, timeout=120)
        # Let the job get going, then freeze the server while the kernel keeps printing:
        # before flow control the backlog (up to 1,000 messages of 1 MB) poured into the
        # server's iopub queue when it resumed (+130 MB here).
        deadline = time.monotonic() + 30
        while api.get(view["job_id"])["output_bytes"] < 10 * MB:
            assert time.monotonic() < deadline, "the job printed nothing"
            time.sleep(0.02)
        os.kill(rt.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(1.5)
        finally:
            os.kill(rt.proc.pid, signal.SIGCONT)
        view = api.wait_done(view["job_id"], 90)
    assert view["status"] == "succeeded", view["result"]
    total = megabytes * MB
    assert view["output_bytes"] == total
    spill = rt.state_dir / "jobs" / view["job_id"] / "output.txt"
    assert spill.stat().st_size == total
    assert rss.growth < 40 * MB, f"server RSS grew by {rss.growth / MB:.0f} MiB"
    assert "IOStream.flush timed out" not in rt.log()


@pytest.mark.timing
def test_one_huge_write_is_split_into_bounded_messages(api: Api, rt: RuntimeProc) -> None:
    # A single 64 MB print used to become one 64 MB message (and three copies of it).
    with PeakRss(rt.proc.pid) as rss:
        view = api.submit("import sys\n_ = sys.stdout.write('q' * (64 * 2**20))", wait=60)
    assert view["status"] == "succeeded"
    assert view["output_bytes"] == 64 * MB
    assert rss.growth < 40 * MB, f"server RSS grew by {rss.growth / MB:.0f} MiB"


@pytest.mark.timing
def test_a_deadline_stops_a_print_loop_held_back_by_flow_control(api: Api) -> None:
    t0 = time.monotonic()
    view = api.submit("while True:\n    print('w' * 4000)", timeout=1.5, wait=30)
    assert view["status"] == "timed_out"
    assert time.monotonic() - t0 < 20  # well under the 30 s wait: the deadline stopped it
    assert view["output_bytes"] > 0
    # The kernel is usable at once, with its state kept (interrupted, not restarted).
    after = api.submit("print('next')")
    assert after["status"] == "succeeded" and after["output"] == "next\n"


@pytest.mark.timing
def test_output_from_a_forgotten_thread_between_jobs_does_not_block_the_next_job(
        api: Api, rt: RuntimeProc) -> None:
    # A thread prints between jobs while the server reads nothing (frozen): the kernel's
    # iopub queue fills and must block that thread, not the next job, which must run
    # normally once the server reads again.  One short line per message fills the queue
    # (1,000 messages) in kilobytes: 100 KB lines made the server drain a backlog of
    # about 250 MB before the next job's answer (30 s of CPU, 20 s of wall under load).
    api.submit("import threading\n_stop = threading.Event()\n"
               "def _spam():\n    while not _stop.is_set():\n        print('s', flush=True)\n"
               "threading.Thread(target=_spam, daemon=True).start()")
    os.kill(rt.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(1.0)
    finally:
        os.kill(rt.proc.pid, signal.SIGCONT)
    t0 = time.monotonic()
    view = api.submit("_stop.set()\n6 * 7", wait=30)
    assert view["status"] == "succeeded"
    assert time.monotonic() - t0 < 20  # under the 30 s wait: the job was not held up
    assert any(o.get("text") == "42" for o in view["result"]["outputs"])
