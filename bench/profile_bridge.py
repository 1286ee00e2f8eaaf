"""Where a ``run_code_quick("1+1")`` through the stdio bridge spends its milliseconds.

Starts a runtime on loopback and the real bridge (``python -m smartcolab mcp``) under
cProfile, makes N calls, and splits the bridge process's CPU time by who owns the
function (MCP SDK, pydantic, HTTP client, JSON, asyncio/anyio, our code), by each
frame's own time.  Beside it, wall-time medians from the same run: the raw kernel
execute, the signed HTTP call the bridge makes, a bridge-only tool (``list_runtimes``:
MCP + stdio, no runtime), and ``run_code_quick``.

    python bench/profile_bridge.py [--calls 300] [--top 25]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "src"), str(ROOT / "tests")]

from bench_bridge import http_roundtrip, raw_kernel_roundtrip  # noqa: E402
from mcp import Client, StdioServerParameters  # noqa: E402
from smartcolab.client.http.client import RuntimeClient  # noqa: E402
from support.runtime_proc import start_runtime, subprocess_env  # noqa: E402

OWNERS = (("/mcp/", "MCP SDK"), ("/pydantic", "pydantic"), ("/httpx", "HTTP client (httpx)"),
          ("/httpcore", "HTTP client (httpx)"), ("/h11/", "HTTP client (httpx)"),
          ("/smartcolab/", "ours"), ("/json/", "JSON"), ("/anyio/", "asyncio/anyio"),
          ("/asyncio/", "asyncio/anyio"), ("/selectors", "asyncio/anyio"),
          ("/starlette", "MCP SDK"), ("/jsonschema", "jsonschema"), ("/logging/", "logging"))


def owner(filename: str, name: str) -> str:
    for mark, who in OWNERS:
        if mark in filename:
            return who
    if filename == "~":
        return "builtins (I/O, select, json C)" if name else "builtins"
    return "other"


async def measure(calls: int, tmp: Path, prof: Path) -> dict[str, Any]:
    runtime = start_runtime(tmp / "rt")
    try:
        async with RuntimeClient(runtime.url, runtime.secret) as direct:
            http = await http_roundtrip(direct, min(calls, 100))
        env = subprocess_env({"COLAB_URL": runtime.url, "COLAB_TOKEN": runtime.secret,
                              "CHECKPOINT_DIR": str(tmp / "ck")})
        params = StdioServerParameters(command=sys.executable, env=env, args=[
            "-m", "cProfile", "-o", str(prof), "-m", "smartcolab", "mcp", "--log-level",
            "WARNING"])
        quick, local = [], []
        async with Client(params) as client:
            for _ in range(5):
                await client.call_tool("run_code_quick", {"code": "1+1"})
            for _ in range(calls):
                t0 = time.perf_counter()
                result = await client.call_tool("run_code_quick", {"code": "1+1"})
                quick.append(time.perf_counter() - t0)
                assert not result.is_error
                t0 = time.perf_counter()
                await client.call_tool("list_runtimes", {})
                local.append(time.perf_counter() - t0)
    finally:
        runtime.stop()
    return {"http_median_ms": http["median_ms"],
            "run_code_quick_median_ms": statistics.median(quick) * 1000,
            "list_runtimes_median_ms": statistics.median(local) * 1000}


def split(prof: Path, calls: int, top: int) -> dict[str, Any]:
    for _ in range(100):  # the profile is written as the bridge exits
        if prof.exists():
            break
        time.sleep(0.1)
    stats = pstats.Stats(str(prof))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    by_owner: dict[str, float] = defaultdict(float)
    rows = []
    for (filename, _line, name), (_cc, _nc, tt, ct, _callers) in raw.items():
        by_owner[owner(filename, name)] += tt
        rows.append((tt, ct, f"{Path(filename).name}:{name}", owner(filename, name)))
    total = sum(by_owner.values())
    rows.sort(reverse=True)
    return {"total_cpu_s": total, "calls": calls * 2 + 5,
            "per_owner_ms_per_call_pair": {k: v * 1000 / (calls * 2 + 5) for k, v in
                                           sorted(by_owner.items(), key=lambda kv: -kv[1])},
            "top_own_time": [{"own_ms_total": round(tt * 1000, 1), "cum_ms_total":
                              round(ct * 1000, 1), "function": fn, "owner": who}
                             for tt, ct, fn, who in rows[:top]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sc-prof-") as tmp_s:
        tmp = Path(tmp_s)
        prof = tmp / "bridge.prof"
        raw = raw_kernel_roundtrip(min(args.calls, 100))
        walls = asyncio.run(measure(args.calls, tmp, prof))
        where = split(prof, args.calls, args.top)
    out = {"raw_kernel_median_ms": raw["median_ms"], **walls, **where,
           "load_avg": [round(x, 2) for x in os.getloadavg()],
           "note": "wall times with the bridge under cProfile (slower than without it)"}
    print(json.dumps(out, indent=2))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "profile_bridge.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
