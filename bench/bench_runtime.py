"""Runtime benchmarks, each against a baseline measured in the same run.

1. Round trip of ``1+1`` through ``POST /jobs?wait`` (bearer, keep-alive) vs a raw
   ``jupyter_client`` execute on a kernel of its own (issue #2 target: <= 1.3x).
2. Sequential latency of a signed ``POST /jobs?wait`` of ``1+1`` (samples kept for the
   report's plot), and throughput of the same jobs from 8 concurrent clients, each with
   its own session (kernel): jobs/s and each job's latency.
3. 1,000 ``pass`` jobs from 8 concurrent clients on ONE session: jobs/s, 0 lost,
   0 duplicated (resubmitted ids must not run again).
4. Deadline to stop: a pure-Python loop (stopped by the interrupt) and a C-level loop
   (``sum(range(10**12))`` ignores SIGINT: stopped by the kernel restart after the kill
   grace); seconds from the deadline to the end.
5. Memory under a big output: the runtime server's RSS growth while a job prints N MB
   (the output is spilled to a file; flow control keeps the server's queue short).

Run: ``python bench/bench_runtime.py [--quick]`` (prints a table, writes
bench/results/runtime.json); ``bench/report.py`` calls ``run(quick=...)``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx2
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from smartcolab.client.http.client import RuntimeClient  # noqa: E402
from smartcolab.shared.protocol import JobSubmit  # noqa: E402
from support.runtime_proc import RuntimeProc, start_runtime  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "runtime.json"
CLIENTS = 8


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


async def _raw_kernel_round_trips(repeats: int) -> list[float]:
    from jupyter_client.manager import AsyncKernelManager

    ipc = Path(tempfile.mkdtemp(prefix="sc-b-", dir="/tmp"))
    km = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=str(ipc / "k"),
                            connection_file=str(ipc / "kernel.json"))
    await km.start_kernel()
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=60)
    samples = []
    try:
        for _ in range(repeats + 5):
            t0 = time.perf_counter()
            msg_id = kc.execute("1+1")
            while True:
                msg = await kc.get_iopub_msg(timeout=10)
                if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                        and msg["content"]["execution_state"] == "idle"):
                    break
            await kc.get_shell_msg(timeout=10)
            samples.append(time.perf_counter() - t0)
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
    return samples[5:]


def bench_round_trip(rt: RuntimeProc, repeats: int = 200) -> dict[str, Any]:
    """Median ``1+1`` via POST /jobs?wait (bearer, keep-alive) vs a raw kernel execute."""
    api = []
    with httpx2.Client(base_url=rt.url, headers=rt.headers, timeout=60) as http:
        for i in range(repeats + 5):
            body = {"job_id": f"rt-{i}-{secrets.token_hex(4)}", "code": "1+1"}
            t0 = time.perf_counter()
            r = http.post("/jobs", params={"wait": 10}, json=body)
            api.append(time.perf_counter() - t0)
            assert r.json()["status"] == "succeeded", r.text
    raw = asyncio.run(_raw_kernel_round_trips(repeats))
    api_ms, raw_ms = _median_ms(api[5:]), _median_ms(raw)
    return {"api_median_ms": api_ms, "raw_median_ms": raw_ms,
            "ratio": round(api_ms / raw_ms, 3), "target_ratio": 1.3, "repeats": repeats}


async def _throughput(rt: RuntimeProc, jobs: int, clients: int) -> dict[str, Any]:
    tag = secrets.token_hex(4)
    ids = [f"tp-{tag}-{i}" for i in range(jobs)]
    views: dict[str, Any] = {}

    async def client_loop(part: list[str]) -> None:
        async with RuntimeClient(rt.url, rt.secret) as client:
            for job_id in part:
                view = await client.submit(JobSubmit(job_id=job_id, code="pass"), wait=30)
                while view.status in ("queued", "running"):
                    view = await client.get_job(job_id, wait=30)
                views[job_id] = view

    t0 = time.perf_counter()
    await asyncio.gather(*(client_loop(ids[c::clients]) for c in range(clients)))
    elapsed = time.perf_counter() - t0
    async with RuntimeClient(rt.url, rt.secret) as client:  # resubmits must not run again
        for job_id in ids[:20]:
            await client.submit(JobSubmit(job_id=job_id, code="pass"))
        listed = await client.list_jobs(limit=1000, session="main")
    counts = [v.result.execution_count for v in views.values() if v.result]
    succeeded = sum(1 for v in views.values() if v.status == "succeeded")
    mine = [j for j in listed.jobs if j.job_id.startswith(f"tp-{tag}-")]
    return {"jobs": jobs, "clients": clients, "seconds": round(elapsed, 3),
            "jobs_per_s": round(jobs / elapsed, 1), "succeeded": succeeded,
            "lost": jobs - succeeded, "duplicated": len(counts) - len(set(counts)),
            "stored_records": len(mine)}


def bench_throughput(rt: RuntimeProc, jobs: int = 1000, clients: int = 8) -> dict[str, Any]:
    """``jobs`` ``pass`` jobs from ``clients`` concurrent signed clients on one session."""
    return asyncio.run(_throughput(rt, jobs, clients))


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
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
        grace = "2" if quick else "5"
        # No rate limit: 8 clients on loopback would otherwise measure the limiter.
        rt = start_runtime(Path(tmp) / "root", "--kill-grace", grace, "--rate-limit", "0")
        try:
            rtt = bench_round_trip(rt, 20 if quick else 200)
            seq = anyio.run(sequential_latency, rt, 10 if quick else 100)
            thr = anyio.run(throughput, rt, 40 if quick else 1000)
            one = bench_throughput(rt, 40 if quick else 1000, CLIENTS)
            stop = anyio.run(deadline_to_stop, rt, 0.5 if quick else 2.0)
            big = anyio.run(big_output, rt, 5 if quick else 500)
        finally:
            rt.stop()
    return {"round_trip": rtt, "sequential": seq, "throughput": thr,
            "throughput_one_session": one, "deadline": stop, "big_output": big,
            "kill_grace_s": float(grace)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    res = run(quick=ap.parse_args().quick)
    r, s, t, o = res["round_trip"], res["sequential"], res["throughput"], res["throughput_one_session"]
    d, b = res["deadline"], res["big_output"]
    rows = [
        ("1+1 via POST /jobs?wait (median)", f"{r['api_median_ms']} ms"),
        ("1+1 raw jupyter_client (median)", f"{r['raw_median_ms']} ms"),
        ("ratio (target <= 1.3)", f"{r['ratio']}x"),
        ("1+1 signed, sequential (median / p95)", f"{s['median_ms']:.2f} / {s['p95_ms']:.2f} ms"),
        (f"{t['jobs']} jobs, {t['clients']} clients, own sessions", f"{t['jobs_per_s']:.0f} jobs/s"),
        (f"{o['jobs']} pass jobs, {o['clients']} clients, one session",
         f"{o['jobs_per_s']} jobs/s, lost {o['lost']}, duplicated {o['duplicated']}"),
        ("deadline->stop, Python loop (<= 0.5 s)", f"{d['python_loop']['after_deadline_s']:.3f} s"),
        (f"deadline->stop, C loop, grace {res['kill_grace_s']:g} s",
         f"{d['c_loop']['after_deadline_s']:.3f} s"),
        (f"server RSS growth, {b['output_mb']} MB printed", f"{b['server_rss_growth_mb']:.1f} MB"),
    ]
    width = max(len(n) for n, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
