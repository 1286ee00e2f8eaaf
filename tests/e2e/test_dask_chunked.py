"""Chunked operations on a real Dask LocalCluster (2 worker processes on loopback)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from smartcolab.client.http.client import RuntimeClient
from smartcolab.mcp.chunked.build import make_spec
from smartcolab.mcp.chunked.checkpoints import CheckpointStore
from smartcolab.mcp.chunked.dask_runner import DaskRunner
from smartcolab.mcp.chunked.runner import ChunkedRunner
from support.runtime_proc import RuntimeProc

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.anyio

SETUP = "import math, os, time\nscale = 3"
# Bodies on Dask must not depend on earlier indices (batches run in parallel).
BODY = """
value = None
if i % 7 == 3:
    continue
value = math.isqrt(i * scale) + i
"""


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       host="127.0.0.1", dashboard_address=None,
                                       worker_dashboard_address=None)
    try:
        yield str(cluster.scheduler_address)
    finally:
        cluster.close(timeout=20)


def spec(name: str, *, body: str = BODY, n: int = 40, batch: int = 5, setup: str = SETUP):
    return make_spec(checkpoint_name=name, loop_code=body, n_iterations=n, batch_size=batch,
                     setup_code=setup, collect="value")


def batch_rows(store: CheckpointStore, name: str) -> list[tuple[int, int]]:
    return sorted((b.start, b.stop) for b in store.batches(name, last=10_000))


async def test_same_values_as_the_single_kernel_path(scheduler: str, runtime: RuntimeProc,
                                                     tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    with anyio.fail_after(60):
        dask = await DaskRunner(store, scheduler=scheduler).run(spec("on-dask"))
        async with RuntimeClient(runtime.url, runtime.secret) as client:
            kernel = await ChunkedRunner(store, client, runtime="test").run(spec("in-kernel"))
    assert dask.status == "done" and kernel.status == "done", (dask.notes, kernel.notes)
    got = store.values("on-dask", limit=100)
    assert got == store.values("in-kernel", limit=100)
    assert [v for i, v, _ in got] == [None if i % 7 == 3 else 2 * i + (i * 3) ** 0.5 // 1 - i
                                      for i in range(40)]
    assert batch_rows(store, "on-dask") == [(s, s + 5) for s in range(0, 40, 5)]


async def test_a_failing_index_stops_at_the_contiguous_prefix(scheduler: str,
                                                              tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    body = "value = i\nif i == 23:\n    raise ValueError('bad 23')"
    with anyio.fail_after(60):
        out = await DaskRunner(store, scheduler=scheduler).run(spec("fails", body=body))
    assert out.status == "failed"
    cp = store.require("fails")
    assert cp.completed == 20 and cp.last_error is not None
    assert cp.last_error["failed_index"] == 23 and "bad 23" in cp.last_error["traceback"]


async def test_a_killed_worker_loses_no_iteration(scheduler: str, tmp_path: Path) -> None:
    flag = tmp_path / "killed-once"
    runs = tmp_path / "runs"
    runs.mkdir()
    # Index 12 kills its own worker process the first time; Dask runs the batch again.
    body = (f"open(os.path.join({str(runs)!r}, f'{{i}}-{{os.getpid()}}'), 'w').close()\n"
            f"if i == 12 and not os.path.exists({str(flag)!r}):\n"
            f"    open({str(flag)!r}, 'w').close()\n"
            "    os.kill(os.getpid(), 9)\n"
            "time.sleep(0.02)\nvalue = i * i")
    store = CheckpointStore(tmp_path)
    with anyio.fail_after(80):
        out = await DaskRunner(store, scheduler=scheduler).run(spec("killed", body=body))
    assert out.status == "done", out.notes
    assert flag.exists()
    assert [(i, v) for i, v, _ in store.values("killed", limit=100)] == [
        (i, i * i) for i in range(40)]
    assert batch_rows(store, "killed") == [(s, s + 5) for s in range(0, 40, 5)]
    ran_12 = [p.name for p in runs.iterdir() if p.name.startswith("12-")]
    assert len(ran_12) == 2  # the killed attempt and the retry, on different processes


DRIVER = """
import asyncio, sys
sys.path.insert(0, {src!r})
from pathlib import Path
from smartcolab.mcp.chunked.checkpoints import CheckpointStore
from smartcolab.mcp.chunked.build import make_spec
from smartcolab.mcp.chunked.dask_runner import DaskRunner
spec = make_spec(checkpoint_name="lost", loop_code={body!r}, n_iterations=40, batch_size=5,
                 setup_code="import time", collect="value")
asyncio.run(DaskRunner(CheckpointStore(Path({db!r})), scheduler={sched!r}).run(spec))
"""


SRC = str(Path(__file__).resolve().parents[2] / "src")


def start_driver(body: str, db: Path, scheduler: str) -> subprocess.Popen[bytes]:
    """A bridge-like process driving the operation, to be killed mid-run."""
    return subprocess.Popen([sys.executable, "-c", DRIVER.format(
        src=SRC, body=body, db=str(db), sched=scheduler)])


async def test_resume_after_the_client_is_killed(scheduler: str, tmp_path: Path) -> None:
    body = "time.sleep(0.15)\nvalue = -i"
    proc = start_driver(body, tmp_path, scheduler)
    store = CheckpointStore(tmp_path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            cp = store.get("lost")
            if cp is not None and cp.completed >= 10:
                break
            assert proc.poll() is None, "the driver ended before it could be killed"
            await anyio.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    before = store.require("lost")
    assert 10 <= before.completed < 40
    with anyio.fail_after(60):
        out = await DaskRunner(store, scheduler=scheduler).run(spec(
            "lost", body=body, setup="import time"))
    assert out.status == "done", out.notes
    assert [(i, v) for i, v, _ in store.values("lost", limit=100)] == [(i, -i) for i in range(40)]
    assert batch_rows(store, "lost") == [(s, s + 5) for s in range(0, 40, 5)]


async def test_the_tool_runs_on_dask(scheduler: str, runtime: RuntimeProc, tmp_path: Path) -> None:
    from support.bridge_helpers import bridge, make_config, text_of

    async with bridge(make_config(tmp_path, runtime)) as (client, _):
        with anyio.fail_after(60):
            done = await client.call_tool("run_chunked_operation", {
                "loop_code": "value = i * 10", "n_iterations": 12, "batch_size": 4,
                "checkpoint_name": "tool-dask", "collect": "value",
                "dask_scheduler": scheduler})
    assert not done.is_error, text_of(done)
    assert done.structured_content["status"] == "done"
    assert done.structured_content["completed"] == 12
    assert done.structured_content["runtime"] == f"dask:{scheduler}"
