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
import signal
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

from bench_bridge import http_roundtrip, quick_and_local, raw_kernel_roundtrip  # noqa: E402
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
    if filename == "~":  # C functions, by what they are
        if "poll" in name:
            return "idle (epoll wait)"
        if "pydantic_core" in name:
            return "pydantic"
        if "socket" in name or "_io." in name or "os.read" in name or "os.write" in name:
            return "I/O syscalls (stdio, socket)"
        if "json" in name:
            return "JSON"
        return "other C builtins"
    return "other (typing, stdlib)"


async def measure(calls: int, tmp: Path, prof: Path) -> dict[str, Any]:
    runtime = start_runtime(tmp / "rt")
    try:
        async with RuntimeClient(runtime.url, runtime.secret) as direct:
            http = await http_roundtrip(direct, min(calls, 100))
        env = subprocess_env({"COLAB_URL": runtime.url, "COLAB_TOKEN": runtime.secret,
                              "CHECKPOINT_DIR": str(tmp / "ck")})
        params = StdioServerParameters(command=sys.executable, env=env, args=[
            str(HERE / "_profiled_bridge.py"), str(prof), "mcp", "--log-level", "WARNING"])
        profiled: list[float] = []
        async with Client(params) as client:
            for _ in range(5):
                await client.call_tool("run_code_quick", {"code": "1+1"})
            quick, local = await quick_and_local(client, calls)  # not profiled: wall times
            pid = int(prof.with_name(prof.name + ".pid").read_text())
            os.kill(pid, signal.SIGUSR1)
            await asyncio.sleep(0.2)
            for _ in range(calls):  # profiled: where the bridge's CPU goes
                t0 = time.perf_counter()
                await client.call_tool("run_code_quick", {"code": "1+1"})
                profiled.append(time.perf_counter() - t0)
            os.kill(pid, signal.SIGUSR2)
            await asyncio.sleep(1.0)
    finally:
        runtime.stop()
    return {"http_median_ms": http["median_ms"],
            "run_code_quick_median_ms": statistics.median(quick) * 1000,
            "list_runtimes_median_ms": statistics.median(local) * 1000,
            "profiled_run_code_quick_median_ms": statistics.median(profiled) * 1000}


def split(prof: Path, calls: int, top: int) -> dict[str, Any]:
    for _ in range(100):  # written when the bridge gets SIGUSR2
        if prof.exists():
            break
        time.sleep(0.1)
    stats = pstats.Stats(str(prof))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    by_owner: dict[str, float] = defaultdict(float)
    rows = []
    for (filename, _line, name), (_cc, _nc, tt, ct, _callers) in raw.items():
        who = owner(filename, name)
        by_owner[who] += tt
        rows.append((tt, ct, f"{Path(filename).name}:{name}", who))
    busy = sum(v for k, v in by_owner.items() if not k.startswith("idle"))
    rows.sort(reverse=True)
    return {"busy_cpu_ms_per_call": busy * 1000 / calls,
            "ms_per_call_by_owner": {k: round(v * 1000 / calls, 3) for k, v in
                                     sorted(by_owner.items(), key=lambda kv: -kv[1])},
            "top_own_time_ms_per_call": [
                {"own": round(tt * 1000 / calls, 3), "cum": round(ct * 1000 / calls, 3),
                 "function": fn, "owner": who} for tt, ct, fn, who in rows[:top]]}


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
        (HERE / "results").mkdir(exist_ok=True)
        prof.replace(HERE / "results" / "profile_bridge.prof")  # for pstats: callers, callees
    out = {"raw_kernel_median_ms": raw["median_ms"], **walls, **where,
           "load_avg": [round(x, 2) for x in os.getloadavg()],
           "note": "CPU split: the bridge's main thread under cProfile during the profiled "
                   "calls only (cProfile itself slows those calls)"}
    print(json.dumps(out, indent=2))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "profile_bridge.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
