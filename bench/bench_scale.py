"""Scaling out: a Jupyter Server runtime and the Dask engine, against baselines from the same run.

1. Job round trip of ``1+1`` (submit with wait, medians): our runtime server over signed
   HTTP vs. a plain Jupyter Server driven by ``JupyterBackend`` (REST + WebSocket, jobs
   tracked in the bridge, one epoch check per job), and, as the floor, one bare
   ``execute_request`` on the same Jupyter kernel WebSocket.
2. A chunked operation whose body waits 20 ms per iteration (I/O-bound, like fetching
   files), 200 iterations in batches of 10: the single-kernel path vs. ``engine="dask"``
   on a LocalCluster of 2 worker processes (the machine here has 2 cores).

Run: ``python bench/bench_scale.py [--repeats 30]``; JSON goes to bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from smartcolab.client.backend import RuntimeBackend  # noqa: E402
from smartcolab.client.http.client import RuntimeClient  # noqa: E402
from smartcolab.client.jupyter.jobs import JobRecord, run_cell  # noqa: E402
from smartcolab.client.jupyter.server import JupyterBackend  # noqa: E402
from smartcolab.mcp.chunked.build import make_spec  # noqa: E402
from smartcolab.mcp.chunked.checkpoints import CheckpointStore  # noqa: E402
from smartcolab.mcp.chunked.dask_runner import DaskRunner  # noqa: E402
from smartcolab.mcp.chunked.runner import ChunkedRunner  # noqa: E402
from smartcolab.shared.protocol import JobSubmit  # noqa: E402
from support.jupyter_helpers import start_jupyter  # noqa: E402
from support.runtime_proc import start_runtime  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "scale.json"


async def job_roundtrip(backend: RuntimeBackend, repeats: int) -> float:
    samples = []
    for k in range(repeats + 3):
        t0 = time.perf_counter()
        view = await backend.submit(JobSubmit(job_id=f"b-{uuid.uuid4().hex[:20]}", code="1+1"),
                                    wait=10)
        assert view.status == "succeeded", view
        if k >= 3:
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


async def bare_execute(backend: JupyterBackend, repeats: int) -> float:
    sess = await backend._session("main")
    samples = []
    for k in range(repeats + 3):
        rec = JobRecord(job_id="bare", session="main", code="1+1", timeout=None, client=None)
        t0 = time.perf_counter()
        async with sess.lock:
            await run_cell(backend.rest, sess.channel, rec)
        assert rec.status == "succeeded"
        if k >= 3:
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


def chunk_spec(name: str) -> Any:
    return make_spec(checkpoint_name=name, loop_code="time.sleep(0.02)\nvalue = i",
                     n_iterations=200, batch_size=10, setup_code="import time", collect="value")


async def main_async(repeats: int) -> dict[str, Any]:
    import distributed

    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        proc = start_runtime(tmp / "rt")
        try:
            with start_jupyter(tmp / "jroot") as jp:
                async with RuntimeClient(proc.url, proc.secret) as client:
                    res["runtime_job_ms"] = await job_roundtrip(client, repeats)
                    store = CheckpointStore(tmp / "ck")
                    t0 = time.perf_counter()
                    out = await ChunkedRunner(store, client, runtime="rt").run(chunk_spec("k"))
                    assert out.status == "done"
                    res["chunked_kernel_s"] = time.perf_counter() - t0
                jb = JupyterBackend(jp.url, jp.token)
                try:
                    res["jupyter_job_ms"] = await job_roundtrip(jb, repeats)
                    res["jupyter_bare_execute_ms"] = await bare_execute(jb, repeats)
                finally:
                    await jb.aclose()
            # asynchronous=True: a blocking LocalCluster inside a running loop deadlocks.
            async with distributed.LocalCluster(n_workers=2, processes=True,
                                                threads_per_worker=1, host="127.0.0.1",
                                                dashboard_address=None,
                                                asynchronous=True) as cluster:
                t0 = time.perf_counter()
                out = await DaskRunner(store, scheduler=cluster.scheduler_address).run(
                    chunk_spec("d"))
                assert out.status == "done"
                res["chunked_dask_s"] = time.perf_counter() - t0
        finally:
            proc.stop()
    res["repeats"] = repeats
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    res = asyncio.run(main_async(args.repeats))
    rows = [
        ("job 1+1, runtime server (signed HTTP), ms", res["runtime_job_ms"]),
        ("job 1+1, Jupyter Server via JupyterBackend, ms", res["jupyter_job_ms"]),
        ("bare execute on the same kernel WebSocket, ms", res["jupyter_bare_execute_ms"]),
        ("chunked 200 x 20 ms, single kernel, s", res["chunked_kernel_s"]),
        ("chunked 200 x 20 ms, Dask 2 workers, s", res["chunked_dask_s"]),
    ]
    print(f"{'measure (medians)':<50} {'value':>10}")
    for label, value in rows:
        print(f"{label:<50} {value:>10.2f}")
    print(f"Dask speed-up: {res['chunked_kernel_s'] / res['chunked_dask_s']:.2f}x")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
