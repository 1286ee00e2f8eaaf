"""Runtime job figures no other bench module measures, each in the same run as its baseline.

1. Latency of a signed ``POST /jobs?wait`` of ``1+1``, one client at a time (samples kept
   for the report's plot).
2. Throughput: N jobs of ``1+1`` from 8 concurrent clients (each its own connection pool
   and session, i.e. its own kernel): jobs/s and each job's latency.
3. Deadline to stop: a job with ``timeout=T`` running a pure-Python loop (stopped by the
   interrupt) and a C-level loop (``sum(range(10**12))`` ignores SIGINT: stopped by the
   kernel restart after the runtime's kill grace); seconds from the deadline to the end.
4. Memory under a big output: the runtime server's RSS growth while a job prints N MB
   (output is spilled to a file; the server must not hold it in memory).

Run: ``python bench/bench_jobs.py [--quick]``; JSON goes to bench/results/jobs.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from runtime_proc import RuntimeProc, start_runtime  # noqa: E402
from smartcolab.bridge.client import RuntimeClient  # noqa: E402
from smartcolab.protocol import JobSubmit  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "jobs.json"
CLIENTS = 8


def _job(code: str, session: str = "main", timeout: float | None = 60.0) -> JobSubmit:
    return JobSubmit(job_id=f"bench-{uuid.uuid4().hex}", code=code, session=session,
                     timeout=timeout)


async def _ensure_session(client: RuntimeClient, name: str) -> None:
    names = {s.name for s in (await client.sessions()).sessions}
    if name not in names:
        await client.create_session(name)


async def sequential_latency(rt: RuntimeProc, repeats: int) -> dict[str, Any]:
    """One client, one job at a time: POST /jobs?wait of 1+1 until it has succeeded."""
    async with RuntimeClient(rt.url, rt.secret) as client:
        for _ in range(3):
            await client.submit(_job("1+1"), wait=5)
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            view = await client.submit(_job("1+1"), wait=5)
            samples.append((time.perf_counter() - t0) * 1000)
            assert view.status == "succeeded", view.status
    return {"median_ms": statistics.median(samples), "p95_ms": _pct(samples, 95),
            "samples_ms": samples}


async def throughput(rt: RuntimeProc, jobs: int, clients: int = CLIENTS) -> dict[str, Any]:
    """``jobs`` jobs of 1+1 shared among ``clients`` concurrent clients, one session each."""
    latencies: list[float] = []
    failures = 0
    per_client = jobs // clients

    async def worker(k: int) -> None:
        nonlocal failures
        async with RuntimeClient(rt.url, rt.secret) as client:
            session = f"bench{k}"
            await _ensure_session(client, session)
            await client.submit(_job("1+1", session), wait=30)  # warm the kernel
            await ready.wait()
            for _ in range(per_client):
                t0 = time.perf_counter()
                view = await client.submit(_job("1+1", session), wait=30)
                while view.status not in ("succeeded", "failed", "timed_out", "cancelled", "lost"):
                    view = await client.get_job(view.job_id, wait=30)
                latencies.append((time.perf_counter() - t0) * 1000)
                failures += view.status != "succeeded"

    ready = anyio.Event()
    async with anyio.create_task_group() as tg:
        for k in range(clients):
            tg.start_soon(worker, k)
        # Start the clock once every client has warmed its kernel.
        async with RuntimeClient(rt.url, rt.secret) as probe:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                sessions = (await probe.sessions()).sessions
                if sum(1 for s in sessions if s.name.startswith("bench") and s.execution_count) >= clients:
                    break
                await anyio.sleep(0.05)
        t0 = time.perf_counter()
        ready.set()
    wall = time.perf_counter() - t0
    done = per_client * clients
    return {"jobs": done, "clients": clients, "wall_s": wall, "jobs_per_s": done / wall,
            "latency_median_ms": statistics.median(latencies),
            "latency_p95_ms": _pct(latencies, 95), "failures": failures,
            "latency_samples_ms": latencies}


async def deadline_to_stop(rt: RuntimeProc, job_timeout: float) -> dict[str, Any]:
    """Seconds from a job's deadline to its end, for a Python loop and a C-level loop."""
    timeout = job_timeout
    out: dict[str, Any] = {"timeout_s": timeout}
    async with RuntimeClient(rt.url, rt.secret) as client:
        await _ensure_session(client, "deadline")
        for label, code in (("python_loop", "while True:\n    pass"),
                            ("c_loop", "sum(range(10**12))")):
            view = await client.submit(_job(code, "deadline", timeout), wait=0)
            while view.status not in ("succeeded", "failed", "timed_out", "cancelled", "lost"):
                view = await client.get_job(view.job_id, wait=30)
            assert view.started_at is not None and view.finished_at is not None
            out[label] = {"status": view.status,
                          "after_deadline_s": view.finished_at - view.started_at - timeout,
                          "note": (view.result.message if view.result else None)}
    return out


async def big_output(rt: RuntimeProc, megabytes: int) -> dict[str, Any]:
    """Peak growth of the server's RSS while a job prints ``megabytes`` MB."""
    server = psutil.Process(rt.proc.pid)
    base = server.memory_info().rss
    peak = base
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, server.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = (f"line = 'x' * 1023\nfor _ in range({megabytes} * 1024):\n    print(line)")
    t0 = time.perf_counter()
    try:
        async with RuntimeClient(rt.url, rt.secret) as client:
            view = await client.submit(_job(code, "main", 1800), wait=0)
            while view.status not in ("succeeded", "failed", "timed_out", "cancelled", "lost"):
                view = await client.get_job(view.job_id, wait=30)
    finally:
        stop.set()
        sampler.join()
    wall = time.perf_counter() - t0
    return {"output_mb": megabytes, "status": view.status, "output_bytes": view.output_bytes,
            "server_rss_before_mb": base / 1e6, "server_rss_growth_mb": (peak - base) / 1e6,
            "wall_s": wall, "mb_per_s": megabytes / wall}


def _pct(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def run(*, quick: bool = False) -> dict[str, Any]:
    """Every measurement above on one fresh runtime (kill grace 2 s in quick mode)."""
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        grace = "2" if quick else "5"
        rt = start_runtime(Path(tmp) / "root", "--kill-grace", grace)
        try:
            seq = anyio.run(sequential_latency, rt, 10 if quick else 100)
            thr = anyio.run(throughput, rt, 40 if quick else 1000)
            stop = anyio.run(deadline_to_stop, rt, 0.5 if quick else 2.0)
            big = anyio.run(big_output, rt, 5 if quick else 500)
        finally:
            rt.stop()
    return {"sequential": seq, "throughput": thr, "deadline": stop, "big_output": big,
            "kill_grace_s": float(grace)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    res = run(quick=ap.parse_args().quick)
    s, t, d, b = res["sequential"], res["throughput"], res["deadline"], res["big_output"]
    print(f"1+1 via POST /jobs?wait, sequential: median {s['median_ms']:.2f} ms, p95 {s['p95_ms']:.2f} ms")
    print(f"{t['jobs']} jobs from {t['clients']} clients: {t['jobs_per_s']:.0f} jobs/s, "
          f"latency median {t['latency_median_ms']:.1f} ms, p95 {t['latency_p95_ms']:.1f} ms")
    for k in ("python_loop", "c_loop"):
        print(f"deadline to stop, {k}: {d[k]['after_deadline_s']:.2f} s ({d[k]['status']})")
    print(f"{b['output_mb']} MB output: server RSS +{b['server_rss_growth_mb']:.1f} MB, "
          f"{b['mb_per_s']:.0f} MB/s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
