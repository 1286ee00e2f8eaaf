"""The local runtime daemon: first call with and without a daemon running, idle memory.

1. Cold: spawn ``smartcolab mcp`` with a fresh CHECKPOINT_DIR (no daemon) and time until
   the first ``run_code_quick`` result: bridge start + daemon start + kernel start.
0. Floor: spawn the bridge and answer a tool that never leaves it (``list_runtimes``).
2. Warm: a daemon already runs (with this client's session, as after a client restart):
   spawn a new bridge and time its first result.
3. Memory of an idle daemon: its RSS with no kernel (just started), and with the one
   kernel of a finished session (daemon + kernel).

Every daemon started here is stopped before the function returns.
Run: ``python bench/bench_local.py [--repeats 3]``; JSON goes to bench/results/local.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from mcp import Client, StdioServerParameters  # noqa: E402
from smartcolab.client.local.daemon import DaemonSpec, ensure_daemon  # noqa: E402
from support.daemons import daemon_pids, stop_daemons_under  # noqa: E402
from support.runtime_proc import subprocess_env  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "local.json"


def _params(ckpt: Path) -> StdioServerParameters:
    env = subprocess_env({"CHECKPOINT_DIR": str(ckpt),
                          "SMARTCOLAB_RUNTIMES": str(ckpt / "none.toml")})
    env.pop("COLAB_URL", None)
    return StdioServerParameters(command=sys.executable, env=env,
                                 args=["-m", "smartcolab", "mcp", "--log-level", "WARNING"])


async def _first_call(ckpt: Path) -> float:
    t0 = time.perf_counter()
    async with Client(_params(ckpt)) as client:
        result = await client.call_tool("run_code_quick", {"code": "1+1"})
        took = time.perf_counter() - t0
        assert not result.is_error
    return took


async def _bridge_alone(ckpt: Path) -> float:
    """Spawn to the first answer of a tool that never leaves the bridge: the floor."""
    t0 = time.perf_counter()
    async with Client(_params(ckpt)) as client:
        await client.call_tool("list_runtimes", {})
        return time.perf_counter() - t0


async def first_calls(repeats: int, tmp: Path) -> dict[str, Any]:
    cold, warm, alone = [], [], []
    for i in range(repeats):
        ckpt = tmp / f"ck-{i}"
        try:
            alone.append(await _bridge_alone(ckpt))
            cold.append(await _first_call(ckpt))  # starts the daemon
            warm.append(await _first_call(ckpt))  # finds it, session and kernel ready
        finally:
            stop_daemons_under(ckpt)
    return {"cold_median_s": statistics.median(cold), "cold_s": cold,
            "warm_median_s": statistics.median(warm), "warm_s": warm,
            "bridge_alone_median_s": statistics.median(alone), "bridge_alone_s": alone}


def _rss_mb(pid: int, *, children: bool) -> float:
    proc = psutil.Process(pid)
    procs = [proc, *(proc.children(recursive=True) if children else [])]
    return sum(p.memory_info().rss for p in procs) / 2**20


async def idle_memory(tmp: Path) -> dict[str, Any]:
    ckpt = tmp / "ck-mem"
    try:
        info, _ = await ensure_daemon(DaemonSpec(base=ckpt / "local", root=ckpt / "ws"))
        await anyio.sleep(1.0)
        bare = _rss_mb(info.pid, children=False)
        stop_daemons_under(ckpt)
        await _first_call(ckpt)  # a daemon with one finished session
        [pid] = daemon_pids(ckpt)
        await anyio.sleep(1.0)
        daemon_only = _rss_mb(pid, children=False)
        # Kernels run in their own process groups but remain the daemon's children.
        with_kernel = _rss_mb(pid, children=True)
    finally:
        stop_daemons_under(ckpt)
    return {"daemon_no_kernel_mb": bare, "daemon_with_session_mb": daemon_only,
            "daemon_plus_kernel_mb": with_kernel}


def run(quick: bool = False, repeats: int | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp_s:
        tmp = Path(tmp_s)
        calls = anyio.run(first_calls, repeats or (1 if quick else 3), tmp)
        memory = anyio.run(idle_memory, tmp)
    return {"first_call": calls, "memory": memory}


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    report = run(repeats=parser.parse_args().repeats)
    calls, memory = report["first_call"], report["memory"]
    print(f"first call, no daemon running:   {calls['cold_median_s']:.2f} s (median)")
    print(f"first call, daemon running:      {calls['warm_median_s']:.2f} s (median)")
    print(f"bridge alone (list_runtimes):    {calls['bridge_alone_median_s']:.2f} s (median)")
    print(f"idle daemon RSS, no kernel:      {memory['daemon_no_kernel_mb']:.0f} MB")
    print(f"idle daemon RSS, one session:    {memory['daemon_with_session_mb']:.0f} MB "
          f"(+ kernel: {memory['daemon_plus_kernel_mb']:.0f} MB)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
