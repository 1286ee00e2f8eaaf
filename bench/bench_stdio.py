"""The stdio transport, A/B in one run: the SDK's (a worker-thread hop per read, write
and flush) against ours (mcp/transports/stdio.py, asyncio pipes), beside a raw kernel execute.

One runtime and one bare kernel serve every round; each round spawns one bridge per
transport (order alternating) and times ``run_code_quick("1+1")`` and
``list_runtimes`` (never leaves the bridge: MCP + stdio alone), then the raw
``jupyter_client`` execute; medians over all rounds.  Load moves every figure on a
shared machine, so only figures from the same run are compared.

Run: ``python bench/bench_stdio.py [--rounds 4] [--calls 25]``; JSON goes to
bench/results/stdio.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from bench_bridge import quick_and_local  # noqa: E402
from mcp import Client, StdioServerParameters  # noqa: E402
from raw_kernel import ms, raw_kernel, raw_samples  # noqa: E402
from support.runtime_proc import start_runtime, subprocess_env  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "stdio.json"
VARIANTS = {"sdk": "sdk", "ours": ""}  # value of SMARTCOLAB_STDIO


async def bridge_samples(env: dict[str, str], calls: int) -> tuple[list[float], list[float]]:
    params = StdioServerParameters(command=sys.executable, env=env,
                                   args=["-m", "smartcolab", "mcp", "--log-level", "WARNING"])
    async with Client(params) as client:
        for _ in range(3):
            await client.call_tool("run_code_quick", {"code": "1+1"})
        return await quick_and_local(client, calls)


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--calls", type=int, default=25)
    args = parser.parse_args()
    load = os.getloadavg()
    got: dict[str, dict[str, list[float]]] = {v: {"quick": [], "local": []} for v in VARIANTS}
    raw: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-stdio-", dir="/tmp") as tmp_s:
        tmp = Path(tmp_s)
        runtime = start_runtime(tmp / "rt")
        try:
            with raw_kernel("bench-stdio-k-") as (_, kc):
                raw_samples(kc, 3)
                for r in range(args.rounds):
                    order = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
                    for name in order:
                        env = subprocess_env({
                            "COLAB_URL": runtime.url, "COLAB_TOKEN": runtime.secret,
                            "CHECKPOINT_DIR": str(tmp / f"ck-{name}-{r}"),
                            "SMARTCOLAB_STDIO": VARIANTS[name]})
                        quick, local = anyio.run(bridge_samples, env, args.calls)
                        got[name]["quick"] += quick
                        got[name]["local"] += local
                    raw += raw_samples(kc, args.calls)
        finally:
            runtime.stop()
    base = statistics.median(raw) * 1000
    report: dict[str, Any] = {"load_before": [round(x, 2) for x in load],
                              "load_after": [round(x, 2) for x in os.getloadavg()],
                              "raw_execute_ms": round(base, 2), "samples_each": len(raw)}
    print(f"load {report['load_before']} -> {report['load_after']}; raw jupyter_client "
          f"execute 1+1: {base:.2f} ms (median of {len(raw)})")
    for name in VARIANTS:
        quick, local = ms(got[name]["quick"]), ms(got[name]["local"])
        report[name] = {"run_code_quick_ms": quick, "list_runtimes_ms": local,
                        "ratio_to_raw": round(quick / base, 2)}
        print(f"{name:>5} transport: run_code_quick {quick:.2f} ms ({quick / base:.2f}x raw), "
              f"list_runtimes {local:.2f} ms")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
