"""Bridge overhead and cold start, measured in one run.

1. ``run_code_quick("1+1")`` through the real stdio bridge (``python -m smartcolab mcp``
   -> HTTP -> runtime -> kernel) vs a raw ``jupyter_client`` execute round trip on a
   kernel of our own (ipc transport): medians, and their ratio (target <= 1.5x).
2. Cold start: spawn ``smartcolab mcp`` with no runtime configured (embedded runtime)
   and time until the first ``run_code_quick`` result (target <= 3 s).

Run: ``python bench/bench_bridge.py [--repeats 40]``; JSON goes to bench/results/bridge.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from mcp import Client, StdioServerParameters  # noqa: E402
from raw_kernel import raw_kernel, raw_samples  # noqa: E402
from smartcolab.client.http.client import RuntimeClient  # noqa: E402
from smartcolab.shared.protocol import JobSubmit  # noqa: E402
from support.daemons import stop_daemons_under  # noqa: E402
from support.runtime_proc import start_runtime, subprocess_env  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "bridge.json"


def raw_kernel_roundtrip(repeats: int) -> dict[str, Any]:
    """Median wall time of execute('1+1') -> execute_reply on a bare kernel (ipc)."""
    with raw_kernel("bk-") as (_, kc):
        raw_samples(kc, 3)
        samples = raw_samples(kc, repeats)
    return {"median_ms": statistics.median(samples) * 1000, "samples": len(samples)}


async def http_roundtrip(client: RuntimeClient, repeats: int) -> dict[str, Any]:
    """The layer below the bridge: a signed POST /jobs?wait=5 of '1+1' (and run time)."""
    samples, runs = [], []
    for i in range(repeats + 3):
        t0 = time.perf_counter()
        view = await client.submit(JobSubmit(job_id=f"bench-{uuid.uuid4().hex}", code="1+1"),
                                   wait=5.0)
        if i >= 3:
            samples.append(time.perf_counter() - t0)
            runs.append(view.duration_s or 0.0)
        assert view.status == "succeeded"
    return {"median_ms": statistics.median(samples) * 1000,
            "runtime_job_duration_median_ms": statistics.median(runs) * 1000,
            "samples": len(samples)}


async def bridge_roundtrip(repeats: int, tmp: Path) -> dict[str, Any]:
    """Median wall time of a run_code_quick('1+1') tool call through the stdio bridge."""
    runtime = start_runtime(tmp / "rt")
    try:
        async with RuntimeClient(runtime.url, runtime.secret) as direct:
            http = await http_roundtrip(direct, repeats)
        env = subprocess_env({"COLAB_URL": runtime.url, "COLAB_TOKEN": runtime.secret,
                              "CHECKPOINT_DIR": str(tmp / "ck-remote")})
        params = StdioServerParameters(command=sys.executable, env=env,
                                       args=["-m", "smartcolab", "mcp", "--log-level", "WARNING"])
        async with Client(params) as client:
            for _ in range(3):
                await client.call_tool("run_code_quick", {"code": "1+1"})
            samples, local = await quick_and_local(client, repeats)
    finally:
        runtime.stop()
    return {"median_ms": statistics.median(samples) * 1000, "samples": len(samples),
            "http_layer": http, "mcp_stdio_only_median_ms": statistics.median(local) * 1000}


async def quick_and_local(client: Any, calls: int) -> tuple[list[float], list[float]]:
    """Seconds per ``run_code_quick`` of ``1+1``, and per ``list_runtimes``: a tool that
    never leaves the bridge, so the MCP + stdio share of a call."""
    quick: list[float] = []
    local: list[float] = []
    for _ in range(calls):
        t0 = time.perf_counter()
        result = await client.call_tool("run_code_quick", {"code": "1+1"})
        quick.append(time.perf_counter() - t0)
        assert not result.is_error
        t0 = time.perf_counter()
        await client.call_tool("list_runtimes", {})
        local.append(time.perf_counter() - t0)
    return quick, local


async def cold_start(repeats: int, tmp: Path) -> dict[str, Any]:
    """Spawn `smartcolab mcp` (no local daemon running) -> first run_code_quick result."""
    samples = []
    for i in range(repeats):
        env = subprocess_env({"CHECKPOINT_DIR": str(tmp / f"ck-cold-{i}")})
        env.pop("COLAB_URL", None)
        params = StdioServerParameters(command=sys.executable, env=env,
                                       args=["-m", "smartcolab", "mcp", "--log-level", "WARNING"])
        t0 = time.perf_counter()
        try:
            async with Client(params) as client:
                result = await client.call_tool("run_code_quick", {"code": "1+1"})
                samples.append(time.perf_counter() - t0)
                assert not result.is_error
        finally:  # the local runtime daemon outlives the bridge: every repeat starts cold
            stop_daemons_under(tmp / f"ck-cold-{i}")
    return {"median_s": statistics.median(samples), "min_s": min(samples),
            "max_s": max(samples), "samples": len(samples)}


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--cold-repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bridge-") as tmp_s:
        tmp = Path(tmp_s)
        raw = raw_kernel_roundtrip(args.repeats)
        through = anyio.run(bridge_roundtrip, args.repeats, tmp)
        cold = anyio.run(cold_start, args.cold_repeats, tmp)
    ratio = through["median_ms"] / raw["median_ms"]
    report = {
        "raw_jupyter_client_1p1": raw, "stdio_bridge_run_code_quick_1p1": through,
        "ratio": ratio, "ratio_target": 1.5,
        "cold_start_embedded": cold, "cold_start_target_s": 3.0,
        "cpus": os.cpu_count(), "python": sys.version.split()[0],
    }
    print(f"{'measure':<44}{'median':>12}")
    print(f"{'raw jupyter_client execute 1+1':<44}{raw['median_ms']:>10.2f}ms")
    http = through["http_layer"]
    print(f"{'  runtime: job duration (kernel + bookkeeping)':<44}"
          f"{http['runtime_job_duration_median_ms']:>10.2f}ms")
    print(f"{'  runtime: signed POST /jobs?wait (HTTP)':<44}{http['median_ms']:>10.2f}ms")
    print(f"{'  bridge: MCP over stdio alone (list_runtimes)':<44}"
          f"{through['mcp_stdio_only_median_ms']:>10.2f}ms")
    print(f"{'run_code_quick 1+1 via stdio bridge':<44}{through['median_ms']:>10.2f}ms")
    print(f"{'ratio (target <= 1.5x)':<44}{ratio:>11.2f}x")
    print(f"{'cold start to first result (target <= 3 s)':<44}{cold['median_s']:>11.2f}s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
