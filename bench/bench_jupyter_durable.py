"""The ``jupyter`` kind with the kernel's job agent: ``1+1`` round trips and re-attach time.

On one real Jupyter Server (loopback, then behind ``wan_proxy.py`` adding ``--delay`` s
each way), medians of:

* ``before``: the old path, one silent epoch read and then the job (two execute requests);
* ``after``: ``JupyterBackend.submit`` today: one execute request through the job agent,
  the epoch as a user expression of the same request;
* ``floor``: one bare ``execute_request`` of ``1+1`` on the same kernel WebSocket;
* ``reattach``: a new ``JupyterBackend`` (a restarted bridge) reading a running job it
  did not start: the first ``get_job`` view, from the spill files via the contents API.

Run: ``python bench/bench_jupyter_durable.py [--repeats 20] [--delay 0.05]``;
JSON goes to bench/results/jupyter_durable.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from smartcolab.client.jupyter.jobs import JobRecord, run_cell  # noqa: E402
from smartcolab.client.jupyter.server import JupyterBackend  # noqa: E402
from smartcolab.shared.protocol import JobSubmit  # noqa: E402
from support.jupyter_helpers import start_jupyter  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "jupyter_durable.json"
WARMUP = 3


async def median_ms(step: Callable[[], Awaitable[None]], repeats: int) -> float:
    samples = []
    for k in range(repeats + WARMUP):
        t0 = time.perf_counter()
        await step()
        if k >= WARMUP:
            samples.append(time.perf_counter() - t0)
    return round(statistics.median(samples) * 1000, 2)


async def measure(url: str, token: str, repeats: int) -> dict[str, float]:
    backend = JupyterBackend(url, token)
    try:
        sess = await backend._session("main")

        async def after() -> None:
            view = await backend.submit(JobSubmit(job_id=f"b-{uuid.uuid4().hex[:20]}",
                                                  code="1+1"), wait=30)
            assert view.status == "succeeded", view

        async def before() -> None:  # the path of the previous release
            rec = JobRecord(job_id="old", session="main", code="1+1", timeout=None, client=None)
            async with sess.lock:
                await backend._epoch(sess)
                await run_cell(backend.rest, sess.channel, rec)
            assert rec.status == "succeeded"

        async def floor() -> None:
            rec = JobRecord(job_id="bare", session="main", code="1+1", timeout=None, client=None)
            async with sess.lock:
                await run_cell(backend.rest, sess.channel, rec)
            assert rec.status == "succeeded"

        res = {"after_ms": await median_ms(after, repeats),
               "before_ms": await median_ms(before, repeats),
               "floor_ms": await median_ms(floor, repeats)}
        long_id = f"b-{uuid.uuid4().hex[:20]}"
        await backend.submit(JobSubmit(job_id=long_id, session="long", code=(
            "import time\nfor i in range(2000):\n    print('x' * 60)\ntime.sleep(600)")))
        seen = await backend.get_job(long_id, wait=60, since=0)
        while seen.cursor == 0:  # a new kernel: started, agent installed, then output
            seen = await backend.get_job(long_id, wait=60, since=0)
        await asyncio.sleep(1.0)  # the status file is rewritten every 0.25 s

        async def reattach() -> None:
            fresh = JupyterBackend(url, token)
            try:
                view = await fresh.get_job(long_id)
                assert view.status == "running" and view.cursor > 0, view
            finally:
                await fresh.aclose()

        res["reattach_ms"] = await median_ms(reattach, max(3, repeats // 4))
        await backend.cancel_job(long_id)
        return res
    finally:
        await backend.aclose()


def start_proxy(target: str, delay: float) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "wan_proxy.py"),
                             "--target", target, "--delay", str(delay)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, int(json.loads(proc.stdout.readline())["port"])


async def main_async(repeats: int, delay: float) -> dict[str, Any]:
    out: dict[str, Any] = {"repeats": repeats, "delay_s_each_way": delay}
    with tempfile.TemporaryDirectory() as tmp, start_jupyter(Path(tmp) / "root") as jp:
        out["loopback"] = await measure(jp.url, jp.token, repeats)
        hostport = jp.url.split("//", 1)[1].split("/", 1)[0]
        proxy, port = start_proxy(hostport, delay)
        try:
            out["wan"] = await measure(f"http://127.0.0.1:{port}", jp.token, repeats)
        finally:
            proxy.terminate()
            proxy.wait(10)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--delay", type=float, default=0.05)
    args = ap.parse_args()
    res = asyncio.run(main_async(args.repeats, args.delay))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
