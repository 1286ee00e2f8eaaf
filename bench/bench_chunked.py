"""Chunked operations: overhead per batch over the loop body's own time, measured in one run.

10,000 iterations of a trivial body (``acc += i``) in batches of 100, through the real
runner (``mcp/chunked/runner.py``: job per batch, signed HTTP, kernel, checkpoint in
SQLite) against a real runtime on loopback.  Overhead per batch =
(wall time of the operation - the body's own time inside the kernel) / batches;
target <= 15 ms.  Baselines measured in the same run: one plain job running the same
10,000 iterations, a trivial job's round trip (the floor for any per-job design), and
one checkpoint write.

Run: ``python bench/bench_chunked.py [--repeats 3]``; JSON goes to bench/results/chunked.json.
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

from smartcolab.client.http.client import RuntimeClient  # noqa: E402
from smartcolab.mcp.chunked.build import make_spec  # noqa: E402
from smartcolab.mcp.chunked.checkpoints import CheckpointStore  # noqa: E402
from smartcolab.mcp.chunked.runner import ChunkedRunner  # noqa: E402
from smartcolab.shared.protocol import JobSubmit  # noqa: E402
from support.runtime_proc import start_runtime  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "chunked.json"
N_ITERATIONS = 10_000
BATCH_SIZE = 100
TARGET_MS = 15.0


async def trivial_job_roundtrip(client: RuntimeClient, repeats: int = 30) -> dict[str, Any]:
    """Median submit-with-wait round trip of ``pass``: what any job per batch costs at least."""
    samples = []
    for k in range(repeats + 3):
        t0 = time.perf_counter()
        view = await client.submit(JobSubmit(job_id=f"bench-{uuid.uuid4().hex}", code="pass"),
                                   wait=10)
        assert view.status == "succeeded", view
        if k >= 3:
            samples.append(time.perf_counter() - t0)
    return {"median_ms": statistics.median(samples) * 1000, "samples": len(samples)}


async def plain_loop(client: RuntimeClient) -> dict[str, Any]:
    """The whole loop as one job: the body's own time, no batching."""
    code = ("import time as _t\n_b_acc = 0\n_t0 = _t.perf_counter()\n"
            f"for i in range({N_ITERATIONS}):\n    _b_acc += i\n"
            "print(_t.perf_counter() - _t0)")
    t0 = time.perf_counter()
    view = await client.submit(JobSubmit(job_id=f"bench-{uuid.uuid4().hex}", code=code), wait=30)
    wall = time.perf_counter() - t0
    assert view.status == "succeeded" and view.result is not None, view
    return {"wall_ms": wall * 1000, "body_ms": float(view.result.stdout.text) * 1000}


def checkpoint_write(tmp: Path, repeats: int = 50) -> dict[str, Any]:
    """Median time of one recorded batch (one SQLite transaction, WAL, synchronous=NORMAL)."""
    store = CheckpointStore(tmp / "store-bench")
    store.create("w", fingerprint="f", inputs={}, run_id="r", total=10**9, batch_size=100,
                 runtime=None, session=None, owner=None)
    samples = []
    for k in range(repeats):
        t0 = time.perf_counter()
        store.update("w", pending_job=f"j{k}", pending_start=k * 100, pending_kind="batch")
        store.record_batch("w", start=k * 100, stop=k * 100 + 100, done=100, job_id=f"j{k}",
                           output="", wall_s=0, body_s=0, broke=False,
                           values=[(k * 100 + j, "1", False) for j in range(100)])
        samples.append(time.perf_counter() - t0)
    store.close()
    return {"median_ms": statistics.median(samples) * 1000, "samples": repeats}


async def chunked(client: RuntimeClient, tmp: Path, *, collect: str | None,
                  repeats: int) -> dict[str, Any]:
    """The chunked operation end to end; overhead per batch over the body's own time."""
    runs = []
    for _ in range(repeats):
        name = f"bench-{uuid.uuid4().hex[:8]}"
        spec = make_spec(checkpoint_name=name, setup_code="acc = 0", loop_code="acc += i",
                         n_iterations=N_ITERATIONS, batch_size=BATCH_SIZE, collect=collect)
        store = CheckpointStore(tmp / name)
        t0, cpu0 = time.perf_counter(), time.process_time()
        out = await ChunkedRunner(store, client, runtime="bench").run(spec)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        assert out.status == "done" and out.checkpoint.completed == N_ITERATIONS, out
        timing = store.timings(name)
        batches = int(timing["batches"])
        runs.append({"wall_ms": wall * 1000, "body_ms": timing["body_s"] * 1000,
                     "batches": batches,
                     "overhead_per_batch_ms": (wall - timing["body_s"]) / batches * 1000,
                     # CPU of this process (runner, HTTP client, SQLite) per batch
                     "bridge_cpu_per_batch_ms": cpu / batches * 1000})
        store.close()
    best = statistics.median(r["overhead_per_batch_ms"] for r in runs)
    return {"collect": collect, "runs": runs, "overhead_per_batch_ms_median": best,
            "bridge_cpu_per_batch_ms_median": statistics.median(
                r["bridge_cpu_per_batch_ms"] for r in runs),
            "wall_ms_median": statistics.median(r["wall_ms"] for r in runs)}


async def main_async(repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-chunked-") as tmp_name:
        tmp = Path(tmp_name)
        proc = start_runtime(tmp / "root")
        try:
            async with RuntimeClient(proc.url, proc.secret) as client:
                floor = await trivial_job_roundtrip(client)
                plain = await plain_loop(client)
                write = checkpoint_write(tmp)
                bare = await chunked(client, tmp, collect=None, repeats=repeats)
                collected = await chunked(client, tmp, collect="acc", repeats=repeats)
        finally:
            proc.stop()
    return {"n_iterations": N_ITERATIONS, "batch_size": BATCH_SIZE, "target_ms": TARGET_MS,
            "trivial_job_roundtrip": floor, "plain_loop_one_job": plain,
            "checkpoint_write": write, "chunked": bare, "chunked_with_collect": collected}


def print_table(res: dict[str, Any]) -> None:
    rows = [
        ("trivial job round trip (floor per batch)", res["trivial_job_roundtrip"]["median_ms"]),
        ("checkpoint write per batch", res["checkpoint_write"]["median_ms"]),
        ("plain loop, one job: wall", res["plain_loop_one_job"]["wall_ms"]),
        ("plain loop, one job: body", res["plain_loop_one_job"]["body_ms"]),
        ("chunked 100x100: wall (median)", res["chunked"]["wall_ms_median"]),
        ("chunked: overhead per batch (median)", res["chunked"]["overhead_per_batch_ms_median"]),
        ("chunked: bridge-side CPU per batch", res["chunked"]["bridge_cpu_per_batch_ms_median"]),
        ("chunked + collect: overhead per batch",
         res["chunked_with_collect"]["overhead_per_batch_ms_median"]),
    ]
    extra = (res["chunked"]["overhead_per_batch_ms_median"]
             - res["trivial_job_roundtrip"]["median_ms"])
    rows.append(("chunked overhead beyond a trivial job", extra))
    res["chunked_overhead_beyond_trivial_job_ms"] = extra
    print(f"{'measure':<44} {'ms':>10}")
    for label, ms in rows:
        print(f"{label:<44} {ms:>10.2f}")
    ok = res["chunked"]["overhead_per_batch_ms_median"] <= TARGET_MS
    print(f"target: overhead per batch <= {TARGET_MS:g} ms: {'met' if ok else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    res = asyncio.run(main_async(args.repeats))
    print_table(res)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2))
    print(f"JSON: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
