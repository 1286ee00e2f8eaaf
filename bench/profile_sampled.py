"""Where a ``run_code_quick("1+1")`` spends CPU, in the runtime server and in the bridge,
sampled with py-spy (``pip install py-spy``): no instrumentation, so pure-Python layers
are not inflated the way cProfile inflates them.

Starts a runtime and the real stdio bridge, makes ``--calls`` ``run_code_quick`` calls
while py-spy samples both processes (on-CPU samples only), and splits each process's
samples by the owner of the innermost frame (own time) and by the layers present
anywhere in the stack (inclusive).  CPU seconds per call from ``psutil`` beside it, and
the kernel's, and the raw ``jupyter_client`` execute's client CPU for scale.

    python bench/profile_sampled.py [--calls 300] [--rate 250]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "src"), str(ROOT / "tests")]

from bench_latency import bridge_process, cpu_s  # noqa: E402
from mcp import Client, StdioServerParameters  # noqa: E402
from raw_kernel import raw_kernel, raw_samples  # noqa: E402
from support.runtime_proc import start_runtime, subprocess_env  # noqa: E402

# First match wins: (substring of the frame's file, owner).
OWNERS = (
    ("/smartcolab/runtime/security/", "ours: middleware (limits, audit, auth gate)"),
    ("/smartcolab/runtime/engine/", "ours: engine (jobs, kernel, store, output)"),
    ("/smartcolab/runtime/api/", "ours: routes"),
    ("/smartcolab/client/", "ours: HTTP client, follow, journal"),
    ("/smartcolab/mcp/", "ours: MCP tools, rendering, stdio"),
    ("/smartcolab/cli/", "entry (CLI, loop)"), ("/smartcolab/shared/loop", "entry (CLI, loop)"),
    ("/smartcolab/", "ours: other"),
    ("/mcp/", "MCP SDK"), ("/mcp_types/", "MCP SDK"),
    ("/pydantic", "pydantic"),
    ("/fastapi/", "FastAPI"), ("/starlette/", "starlette"),
    ("/uvicorn/", "uvicorn + h11"), ("/h11/", "uvicorn + h11"),
    ("/httpx2/", "httpx2 + httpcore2"), ("/httpcore2/", "httpx2 + httpcore2"),
    ("/jupyter_client/", "jupyter_client"), ("/zmq/", "pyzmq"), ("/traitlets/", "traitlets"),
    ("/anyio/", "anyio"), ("/asyncio/", "asyncio"), ("/uvloop/", "uvloop"),
    ("/logging/", "logging"), ("/json/", "json"), ("/sqlite3/", "sqlite3"),
)
CALL_NAMES = ("run_code_quick",)


def owner(frame: str) -> str:
    for mark, who in OWNERS:
        if mark in frame:
            return who
    return "other (stdlib, C)"


def split(raw: Path) -> dict[str, Any]:
    """py-spy's raw (collapsed) output -> sample shares by own and inclusive owner."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = stack.split(";")
        total += count
        own[owner(frames[-1])] += count
        for who in {owner(f) for f in frames}:
            incl[who] += count
    pct = lambda c: round(100 * c / total, 1) if total else 0.0  # noqa: E731
    return {"samples": total,
            "own_pct": {k: pct(v) for k, v in own.most_common()},
            "inclusive_pct": {k: pct(v) for k, v in incl.most_common()}}


async def drive(calls: int, rate: int, tmp: Path, pyspy: str) -> dict[str, Any]:
    rt = start_runtime(tmp / "rt", "--rate-limit", "0")
    try:
        env = subprocess_env({"COLAB_URL": rt.url, "COLAB_TOKEN": rt.secret,
                              "CHECKPOINT_DIR": str(tmp / "ck")})
        params = StdioServerParameters(command=sys.executable, env=env,
                                       args=["-m", "smartcolab", "mcp", "--log-level", "WARNING"])
        async with Client(params) as client:
            for _ in range(5):
                await client.call_tool("run_code_quick", {"code": "1+1"})
            server = psutil.Process(rt.proc.pid)
            bridge = bridge_process(tmp / "ck")
            kernels = server.children(recursive=True)
            spies = [subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited
                [pyspy, "record", "--pid", str(p.pid), "--rate", str(rate), "--format", "raw",
                 "--full-filenames", "--nonblocking", "-o", str(tmp / f"{name}.txt")],
                stdout=subprocess.DEVNULL, stderr=(tmp / f"{name}.log").open("wb"))
                for name, p in (("runtime", server), ("bridge", bridge))]
            await anyio.sleep(1.0)  # py-spy attaches
            me = psutil.Process()  # the MCP client: the SDK's Client, as a host app runs it
            before = [cpu_s(p) for p in (server, bridge, me, *kernels)]
            t0 = time.perf_counter()
            for _ in range(calls):
                result = await client.call_tool("run_code_quick", {"code": "1+1"})
                assert not result.is_error
            wall = time.perf_counter() - t0
            after = [cpu_s(p) for p in (server, bridge, me, *kernels)]
            for spy in spies:
                spy.send_signal(2)  # SIGINT: py-spy writes its file and exits
            for spy in spies:
                spy.wait(60)
            for name in ("runtime", "bridge"):
                if not (tmp / f"{name}.txt").exists():
                    log = (tmp / f"{name}.log").read_text(errors="replace")
                    raise RuntimeError(f"py-spy wrote nothing for the {name}: {log[-2000:]}")
    finally:
        rt.stop()
    for name in ("runtime", "bridge"):  # the stacks, for a closer look
        shutil.copy(tmp / f"{name}.txt", HERE / "results" / f"profile_sampled_{name}.txt")
    used = [(a - b) * 1000 / calls for a, b in zip(after, before, strict=True)]
    return {"calls": calls, "wall_ms_per_call": round(wall * 1000 / calls, 3),
            "cpu_ms_per_call": {"runtime": round(used[0], 3), "bridge": round(used[1], 3),
                                "mcp_client": round(used[2], 3),
                                "kernel": round(sum(used[3:]), 3)},
            "runtime": split(tmp / "runtime.txt"), "bridge": split(tmp / "bridge.txt")}


def raw_client_cpu(calls: int) -> dict[str, float]:
    """CPU of the raw jupyter_client execute's client (this process) and of its kernel per
    call, and the wall time."""
    with raw_kernel("ps-k-") as (km, kc):
        raw_samples(kc, 5)
        me = psutil.Process()
        kernel = psutil.Process(km.provisioner.process.pid)
        c0, k0, t0 = cpu_s(me), cpu_s(kernel), time.perf_counter()
        raw_samples(kc, calls)
        return {"client_cpu_ms_per_call": round((cpu_s(me) - c0) * 1000 / calls, 3),
                "kernel_cpu_ms_per_call": round((cpu_s(kernel) - k0) * 1000 / calls, 3),
                "wall_ms_per_call": round((time.perf_counter() - t0) * 1000 / calls, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = ap.parse_args()
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(pyspy).exists():
        sys.exit("py-spy is not installed: pip install py-spy")
    load = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="sc-spy-") as tmp_s:
        out = anyio.run(drive, args.calls, args.rate, Path(tmp_s), pyspy)
    out["raw_execute"] = raw_client_cpu(args.calls)
    out["load_before"], out["load_after"] = load, [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "profile_sampled.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
