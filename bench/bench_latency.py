"""Per-call overhead, A/B in one run: the runtime alone and the stdio bridge, for one or
more source trees, each against a raw ``jupyter_client`` execute measured in the same rounds.

For every variant (a ``src`` directory: this tree, or an older commit exported with
``git archive``) one runtime server and one stdio bridge run from that tree.  The
calls are interleaved one by one (variant order rotating), so that every variant and
the baseline meet the same load: per variant a signed ``POST /jobs?wait`` of ``1+1``
(this tree's client, so only the server differs), a bearer one (plain httpx2: no client
code of ours), ``run_code_quick("1+1")`` and ``list_runtimes`` (MCP + stdio alone)
through the bridge, and ``run_code_quick`` through a second bridge that a bare JSON-RPC
client drives (one line written, one read: no MCP SDK on the client's side, so the
bridge's own cost is told apart from the client SDK's), and the same bare call through
a bridge on the default runtime, the local daemon (which that tree's bridge starts, and
reaches through its Unix socket where the tree has one); then one raw execute on a bare
kernel.  Every timed call starts ``PAUSE_S`` after the one before, so none meets the
tail of work of the kernel before it.  ``rounds * calls`` samples
of each; medians; only ratios to the raw execute of the same run are compared (the
machine is shared and loaded).

Run: ``python bench/bench_latency.py [--rounds 6] [--calls 20] [--variant base=/tmp/base/src]``;
JSON goes to bench/results/latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx2
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from mcp import Client, StdioServerParameters  # noqa: E402
from raw_kernel import ms, raw_kernel, raw_samples  # noqa: E402
from smartcolab.client.http.client import RuntimeClient  # noqa: E402
from smartcolab.shared.protocol import JobSubmit  # noqa: E402
from support.daemons import stop_daemons_under  # noqa: E402
from support.runtime_proc import RuntimeProc, start_runtime, subprocess_env  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "latency.json"
# Before each timed call: the kernel of the call before still works after it answered
# (its idle status is sent before the reply's tail of work), and a call that starts then
# shares the cores with it. A model's calls are seconds apart; so are these, a little.
PAUSE_S = 0.03
MEASURES = ("signed", "bearer", "quick", "local", "bare", "daemon")
INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {},
    "clientInfo": {"name": "bench-bare", "version": "0"}}}


class BareBridge:
    """A bridge over stdio driven by hand: a request is one JSON line, its answer one line."""

    def __init__(self, proc: anyio.abc.Process) -> None:
        self.proc = proc
        self.ids = 0
        self.pending = b""

    async def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send(json.dumps(message).encode() + b"\n")

    async def answer(self, request_id: int) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            while b"\n" not in self.pending:
                self.pending += await self.proc.stdout.receive()
            raw, _, self.pending = self.pending.partition(b"\n")
            message = json.loads(raw)
            if message.get("id") == request_id:  # notifications and logs pass by
                return dict(message)

    async def start(self) -> None:
        await self.send(INIT)
        assert "result" in await self.answer(0)
        await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        self.ids += 1
        await self.send({"jsonrpc": "2.0", "id": self.ids, "method": "tools/call",
                         "params": {"name": name, "arguments": arguments}})
        return await self.answer(self.ids)


def cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def bridge_process(checkpoint_dir: Path) -> psutil.Process:
    """The bridge the MCP client spawned: our child whose CHECKPOINT_DIR is this one."""
    for child in psutil.Process().children(recursive=True):
        try:
            if child.environ().get("CHECKPOINT_DIR") == str(checkpoint_dir) and \
                    "mcp" in child.cmdline():
                return child
        except psutil.Error:
            continue
    raise RuntimeError(f"no bridge process with CHECKPOINT_DIR={checkpoint_dir}")


async def one_call(name: str, signed: RuntimeClient, bearer: httpx2.AsyncClient, bridge: Any,
                   bare: BareBridge, daemon: BareBridge, got: dict[str, list[float]]) -> None:
    """One sample of each measure for one variant."""
    await anyio.sleep(PAUSE_S)
    t0 = time.perf_counter()
    view = await signed.submit(JobSubmit(job_id=f"l-{uuid.uuid4().hex}", code="1+1"), wait=5)
    got["signed"].append(time.perf_counter() - t0)
    assert view.status == "succeeded", (name, view.status)
    await anyio.sleep(PAUSE_S)
    t0 = time.perf_counter()
    r = await bearer.post("/jobs", params={"wait": 5},
                          json={"job_id": f"b-{secrets.token_hex(8)}", "code": "1+1"})
    got["bearer"].append(time.perf_counter() - t0)
    assert r.json()["status"] == "succeeded", r.text
    await anyio.sleep(PAUSE_S)
    t0 = time.perf_counter()
    result = await bridge.call_tool("run_code_quick", {"code": "1+1"})
    got["quick"].append(time.perf_counter() - t0)
    assert not result.is_error, result
    await anyio.sleep(PAUSE_S)
    t0 = time.perf_counter()
    await bridge.call_tool("list_runtimes", {})
    got["local"].append(time.perf_counter() - t0)
    await anyio.sleep(PAUSE_S)
    t0 = time.perf_counter()
    answer = await bare.call_tool("run_code_quick", {"code": "1+1"})
    got["bare"].append(time.perf_counter() - t0)
    assert not answer["result"].get("isError"), answer
    await anyio.sleep(PAUSE_S)
    t0 = time.perf_counter()
    answer = await daemon.call_tool("run_code_quick", {"code": "1+1"})
    got["daemon"].append(time.perf_counter() - t0)
    assert not answer["result"].get("isError"), answer


async def measure(variants: dict[str, tuple[Path, dict[str, str]]], rounds: int, calls: int,
                  tmp: Path, kc: Any,
                  ) -> tuple[dict[str, dict[str, list[float]]], list[float], dict[str, Any]]:
    got: dict[str, dict[str, list[float]]] = {v: {m: [] for m in MEASURES} for v in variants}
    cpu: dict[str, Any] = {}
    raw: list[float] = []
    runtimes: list[RuntimeProc] = []
    try:
        async with AsyncExitStack() as stack:
            ends: dict[str, tuple[RuntimeProc, RuntimeClient, httpx2.AsyncClient, Any,
                                  BareBridge, BareBridge]] = {}
            procs: dict[str, tuple[psutil.Process, psutil.Process]] = {}
            for name, (src, extra) in variants.items():
                env = {"PYTHONPATH": str(src), **extra}
                rt = start_runtime(tmp / f"rt-{name}", "--rate-limit", "0", env=env)
                runtimes.append(rt)
                signed = await stack.enter_async_context(RuntimeClient(rt.url, rt.secret))
                bearer = await stack.enter_async_context(
                    httpx2.AsyncClient(base_url=rt.url, headers=rt.headers, timeout=60))
                benv = subprocess_env({"COLAB_URL": rt.url, "COLAB_TOKEN": rt.secret,
                                       "CHECKPOINT_DIR": str(tmp / f"ck-{name}"),
                                       "PYTHONPATH": str(src), **extra})
                params = StdioServerParameters(command=sys.executable, env=benv, args=[
                    "-m", "smartcolab", "mcp", "--log-level", "WARNING"])
                bridge = await stack.enter_async_context(Client(params))
                bare_proc = await stack.enter_async_context(await anyio.open_process(
                    [sys.executable, "-m", "smartcolab", "mcp", "--log-level", "WARNING"],
                    env={**benv, "CHECKPOINT_DIR": str(tmp / f"ck-bare-{name}")}))
                bare = BareBridge(bare_proc)
                await bare.start()
                denv = {k: v for k, v in benv.items() if k not in ("COLAB_URL", "COLAB_TOKEN")}
                daemon_proc = await stack.enter_async_context(await anyio.open_process(
                    [sys.executable, "-m", "smartcolab", "mcp", "--log-level", "WARNING",
                     "--root", str(tmp / f"ws-{name}")],
                    env={**denv, "CHECKPOINT_DIR": str(tmp / f"ck-daemon-{name}"),
                         "SMARTCOLAB_RUNTIMES": str(tmp / "no-runtimes.toml")}))
                daemon = BareBridge(daemon_proc)
                await daemon.start()
                ends[name] = (rt, signed, bearer, bridge, bare, daemon)
                procs[name] = (psutil.Process(rt.proc.pid), bridge_process(tmp / f"ck-{name}"))
                warm: dict[str, list[float]] = {m: [] for m in MEASURES}
                for _ in range(3):
                    await one_call(name, signed, bearer, bridge, bare, daemon, warm)
            raw_samples(kc, 5)
            names = list(variants)
            before = {n: (cpu_s(r), cpu_s(b)) for n, (r, b) in procs.items()}
            # Interleaved call by call (variant order rotating), so that every variant
            # and the raw execute meet the same load.
            for i in range(rounds * calls):
                order = names[i % len(names):] + names[:i % len(names)]
                for name in order:
                    _, signed, bearer, bridge, bare, daemon = ends[name]
                    await one_call(name, signed, bearer, bridge, bare, daemon, got[name])
                await anyio.sleep(PAUSE_S)
                raw += raw_samples(kc, 1)
            n = rounds * calls
            for name, (r, b) in procs.items():
                # Per job: four jobs per call (signed, bearer, run_code_quick twice);
                # per bridge call: two tool calls (run_code_quick, list_runtimes).
                cpu[name] = {"runtime_cpu_ms_per_job": round((cpu_s(r) - before[name][0])
                                                             * 1000 / (4 * n), 3),
                             "bridge_cpu_ms_per_call_pair": round((cpu_s(b) - before[name][1])
                                                                  * 1000 / n, 3)}
    finally:
        for rt in runtimes:
            rt.stop()
        stop_daemons_under(tmp)
    return got, raw, cpu


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=SRC[,K=V...]",
                        help="a source tree to compare, with environment variables for its "
                             "runtime and bridge (default: this tree only)")
    parser.add_argument("--no-current", action="store_true",
                        help="leave this tree out (only the --variant trees)")
    args = parser.parse_args()
    variants: dict[str, tuple[Path, dict[str, str]]] = {}
    for spec in args.variant:
        name, _, rest = spec.partition("=")
        src, *pairs = rest.split(",")
        variants[name] = (Path(src).resolve(), dict(p.split("=", 1) for p in pairs))
    if not args.no_current:
        variants["current"] = (ROOT / "src", {})
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-lat-", dir="/tmp") as tmp_s, \
            raw_kernel("bench-lat-k-") as (_, kc):
        got, raw, cpu = anyio.run(measure, variants, args.rounds, args.calls, Path(tmp_s), kc)
    base = ms(raw)
    report: dict[str, Any] = {"load_before": [round(x, 2) for x in load],
                              "load_after": [round(x, 2) for x in os.getloadavg()],
                              "raw_execute_ms": base, "samples_each": len(raw),
                              "variants": {n: f"{p} {e}" for n, (p, e) in variants.items()}}
    print(f"load {report['load_before']} -> {report['load_after']}; raw jupyter_client "
          f"execute 1+1: {base:.2f} ms (median of {len(raw)})")
    labels = {"signed": "runtime, signed POST /jobs?wait", "bearer": "runtime, bearer POST",
              "quick": "run_code_quick via stdio bridge", "local": "list_runtimes (MCP+stdio)",
              "bare": "run_code_quick, bare JSON-RPC",
              "daemon": "run_code_quick, bare, local daemon"}
    for name in variants:
        report[name] = {"cpu": cpu[name]}
        for m in MEASURES:
            value = ms(got[name][m])
            report[name][m] = {"median_ms": value, "ratio_to_raw": round(value / base, 3)}
            print(f"{name:>10} {labels[m]:<34} {value:8.2f} ms  {value / base:5.2f}x raw")
        c = cpu[name]
        print(f"{name:>10} CPU: runtime {c['runtime_cpu_ms_per_job']:.2f} ms per job, bridge "
              f"{c['bridge_cpu_ms_per_call_pair']:.2f} ms per run_code_quick + list_runtimes")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
