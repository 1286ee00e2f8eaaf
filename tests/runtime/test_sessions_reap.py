"""Kernel restarts never leak kernels: failed restarts are killed and reaped by pid.

The server runs in a thread of this process, so its kernels are our children and
can be counted.  A failed restart is made real by failing the kernel's connection
step (after jupyter_client has started a new process) and by making the polite
shutdown a no-op (as when it times out): only the kill-and-reap by pid can then
remove the process.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import psutil
import pytest

from smartcolab.runtime.engine.kernel import Kernel
from smartcolab.runtime.server import ServerHandle, serve_in_thread
from smartcolab.shared.errors import KernelUnavailable

SECRET = "reap-test-secret-0123456789"


ROOT: list[Path] = []  # this test's runtime root: kernels run there


def kernels() -> list[psutil.Process]:
    """This test's kernels: other tests' runtimes in this process run kernels elsewhere."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if (child.status() != psutil.STATUS_ZOMBIE
                    and "ipykernel" in " ".join(child.cmdline())
                    and Path(child.cwd()).resolve().is_relative_to(ROOT[0])):
                found.append(child)
        except psutil.Error:
            continue
    return found


def settle(expected: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while len(kernels()) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return len(kernels())


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[ServerHandle]:
    ROOT[:] = [tmp_path.resolve()]
    handle = serve_in_thread(root=tmp_path, port=0, secret=SECRET, banner=False, max_sessions=3)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def failing(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """``failing["connect"] = n``: the next n kernel connections fail, and shutdowns are
    no-ops while any are pending (the process is left to the reaper)."""
    state = {"connect": 0}
    connect, shutdown = Kernel._connect, Kernel.shutdown

    async def flaky_connect(self: Kernel) -> None:
        if state["connect"] > 0:
            state["connect"] -= 1
            raise KernelUnavailable("injected: the kernel did not become ready")
        await connect(self)

    async def lazy_shutdown(self: Kernel) -> None:
        if state["connect"] > 0 or getattr(self, "_sc_lazy", False):
            self.kc, self.km = None, None  # forget it, as a timed-out shutdown does
            return
        await shutdown(self)

    monkeypatch.setattr(Kernel, "_connect", flaky_connect)
    monkeypatch.setattr(Kernel, "shutdown", lazy_shutdown)
    return state


def api(handle: ServerHandle) -> httpx2.Client:
    return httpx2.Client(base_url=handle.url, timeout=120,
                         headers={"Authorization": f"Bearer {SECRET}"})


def test_failed_restart_leaves_no_kernel_behind(rt: ServerHandle, failing: dict[str, Any]) -> None:
    with api(rt) as http:
        for name in ("a", "b"):
            assert http.post("/sessions", json={"name": name}).status_code == 201
        assert settle(3) == 3
        failing["connect"] = 1  # the restart's new kernel never connects
        r = http.post("/sessions/a/restart")
        assert r.status_code == 200 and r.json()["status"] == "idle", r.text
        assert settle(3) == 3, "a kernel of the failed restart was leaked"
        failing["connect"] = 2  # restart fails, and so does the replacement
        r = http.post("/sessions/a/restart")
        assert r.status_code == 200 and r.json()["status"] == "dead", r.text
        assert settle(2) == 2, "a kernel of the failed restart was leaked"
        # The session can always be recovered.
        r = http.post("/sessions/a/restart")
        assert r.json()["status"] == "idle"
        assert settle(3) == 3
        job = http.post("/jobs", params={"wait": 60},
                        json={"job_id": "after-reap", "session": "a", "code": "print(7*6)"})
        assert "42" in job.json()["output"]


def test_concurrent_restarts_are_serialized(rt: ServerHandle) -> None:
    """Six restart requests at once on one session: one kernel at the end, no leak."""
    with api(rt) as http:
        assert settle(1) == 1
        pids = set()
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            for r in pool.map(lambda _: http.post("/sessions/main/restart"), range(6)):
                assert r.status_code == 200, r.text
                pids.add(r.json()["kernel_pid"])
        assert settle(1) == 1
        assert http.get("/sessions").json()["sessions"][0]["status"] == "idle"
