"""Runtime benchmarks: API round trip vs raw jupyter_client, throughput, deadline-to-stop.

Run: ``python bench/bench_runtime.py`` (prints a table, writes bench/results/runtime.json).
Each ``bench_*`` function returns a dict so a report can import and call it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from runtime_proc import RuntimeProc, start_runtime  # noqa: E402
from smartcolab.bridge.client import RuntimeClient  # noqa: E402
from smartcolab.protocol import JobSubmit  # noqa: E402

KILL_GRACE_S = 2.0


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


def _stop_latency(rt: RuntimeProc, code: str, timeout: float) -> float:
    with httpx2.Client(base_url=rt.url, headers=rt.headers, timeout=60) as http:
        body = {"job_id": f"stop-{secrets.token_hex(6)}", "code": code, "timeout": timeout}
        view = http.post("/jobs", params={"wait": 50}, json=body).json()
        assert view["status"] == "timed_out", view
        return float(view["finished_at"] - view["started_at"] - timeout)


def bench_deadline_stop(rt: RuntimeProc, repeats: int = 3) -> dict[str, Any]:
    """Seconds from a job's deadline to its end: pure-Python loop, C loop (needs restart)."""
    py = [_stop_latency(rt, "while True: pass", 1.0) for _ in range(repeats)]
    c = [_stop_latency(rt, "sum(range(10**13))", 1.0) for _ in range(repeats)]
    return {"python_loop_s": round(statistics.median(py), 3), "python_target_s": 0.5,
            "c_loop_s": round(statistics.median(c), 3), "c_target_s": 5.0,
            "kill_grace_s": KILL_GRACE_S, "repeats": repeats}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="sc-bench-") as tmp:
        rt = start_runtime(Path(tmp) / "root", "--kill-grace", str(KILL_GRACE_S))
        try:
            results = {"round_trip": bench_round_trip(rt),
                       "throughput": bench_throughput(rt),
                       "deadline_stop": bench_deadline_stop(rt)}
        finally:
            rt.stop()
    rows = [
        ("1+1 via HTTP API (median)", f"{results['round_trip']['api_median_ms']} ms"),
        ("1+1 raw jupyter_client (median)", f"{results['round_trip']['raw_median_ms']} ms"),
        ("ratio (target <= 1.3)", f"{results['round_trip']['ratio']}x"),
        ("1000 pass jobs, 8 clients", f"{results['throughput']['jobs_per_s']} jobs/s"),
        ("lost / duplicated", f"{results['throughput']['lost']} / "
                              f"{results['throughput']['duplicated']}"),
        ("deadline->stop, Python loop (<= 0.5 s)", f"{results['deadline_stop']['python_loop_s']} s"),
        (f"deadline->stop, C loop, grace {KILL_GRACE_S:g} s (<= 5 s)",
         f"{results['deadline_stop']['c_loop_s']} s"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    out = ROOT / "bench" / "results" / "runtime.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
