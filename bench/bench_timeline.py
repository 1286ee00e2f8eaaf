"""Where one ``run_code_quick("1+1")`` spends its milliseconds, step by step, across the
four processes of the path (MCP client, bridge, runtime, kernel), beside a raw
``jupyter_client`` execute's two (client, kernel), timed the same way in the same run.

Every process runs with ``bench/timeline`` on ``PYTHONPATH``: its ``sitecustomize``
stamps milestones (a line arriving, a request sent, a Jupyter message sent or read)
with ``CLOCK_MONOTONIC``, which all processes share, so one call's stamps from all of
them line up.  The client is a bare JSON-RPC one (one line written, one read), so the
MCP client SDK's own time is left out; calls are 30 ms apart (see bench_latency.py).
The segments are medians over the calls: they add up to about the median call, not
exactly.  Stamps cost a few microseconds each, about 0.1 ms per call in all.

    python bench/bench_timeline.py [--calls 200] [--daemon]

``--daemon``: the bridge's default runtime, the local daemon (reached through its Unix
socket where it has one), instead of a runtime server on a TCP port.  JSON goes to
bench/results/timeline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "src"), str(ROOT / "tests")]

import anyio  # noqa: E402

from bench_latency import PAUSE_S, BareBridge  # noqa: E402
from raw_kernel import raw_kernel  # noqa: E402
from support.daemons import stop_daemons_under  # noqa: E402
from support.runtime_proc import start_runtime, subprocess_env  # noqa: E402

RESULTS = HERE / "results" / "timeline.json"
# (segment, role, tag, which): the call's path, milestone by milestone; a segment ends
# at the first (or last) stamp of ``tag`` in ``role`` after the previous milestone.
OURS = [
    ("client -> bridge (stdio pipe)", "bridge", "br_in", "first"),
    ("bridge: MCP parse and dispatch, the tool, the journal", "bridge",
     "RuntimeConnection.request>", "first"),
    ("bridge: request signed and sent; runtime wakes", "runtime", "rt_recv", "last"),
    ("runtime: HTTP, auth, job recorded, execute_request sent", "runtime",
     "send:execute_request", "first"),
    ("runtime -> kernel (zmq ipc); kernel reads it", "kernel", "deser:execute_request",
     "first"),
    ("kernel: runs 1+1, sends its reply", "kernel", "send:execute_reply", "first"),
    ("kernel: sends its idle status", "kernel", "send:status", "last"),
    ("kernel -> runtime; runtime reads the last message", "runtime", "rt_dec:", "last"),
    ("runtime: job ended, recorded, answer sent", "runtime", "rt_flush", "last"),
    ("runtime -> bridge; bridge reads the answer", "bridge", "br_http_recv", "last"),
    ("bridge: answer checked and parsed", "bridge", "RuntimeConnection.request<", "first"),
    ("bridge: result rendered, MCP answer written", "bridge", "br_out", "last"),
    ("bridge -> client (stdio pipe)", "client", "call<", "first"),
]
RAW = [
    ("client: execute_request sent", "client", "send:execute_request", "first"),
    ("client -> kernel (zmq ipc); kernel reads it", "kernel", "deser:execute_request",
     "first"),
    ("kernel: runs 1+1, sends its reply", "kernel", "send:execute_reply", "first"),
    ("kernel: sends its idle status", "kernel", "send:status", "last"),
    ("kernel -> client; client has reply and idle", "client", "raw<", "first"),
]


def role_of(argv: str) -> str:
    """Which process wrote a file, from its argv as ``sitecustomize`` saw it (``-m`` and
    the module's own arguments: the module name is not in it yet)."""
    if " mcp" in argv:
        return "bridge"
    if "kernel.json" in argv:
        return "kernel"
    if " serve" in argv or " --dir" in argv:  # a runtime server, a local daemon
        return "runtime"
    return "client" if "bench_timeline" in argv else "other"


def load(directory: Path) -> list[tuple[int, str, str]]:
    """All stamps of all processes, in time order: (ns, role, tag)."""
    events = []
    for path in directory.glob("*.tl"):
        lines = path.read_text().splitlines()
        if not lines:
            continue
        role = role_of(lines[0].split(" ", 1)[1])
        for line in lines[1:]:
            t, _, tag = line.partition(" ")
            events.append((int(t), role, tag))
    return sorted(events)


def segments(events: list[tuple[int, str, str]], start: str, end: str,
             path: list[tuple[str, str, str, str]]) -> dict[str, list[float]]:
    """Per segment of ``path``, its milliseconds in every call between start and end."""
    out: dict[str, list[float]] = {name: [] for name, *_ in path}
    out["whole call"] = []
    opened: int | None = None
    window: list[tuple[int, str, str]] = []
    for t, role, tag in events:
        if role == "client" and tag == start:
            opened, window = t, []
        elif opened is not None:
            window.append((t, role, tag))
            if role == "client" and tag == end:
                _split(opened, window, path, out)
                out["whole call"].append((t - opened) / 1e6)
                opened = None
    return out


def _split(t0: int, window: list[tuple[int, str, str]], path: list[tuple[str, str, str, str]],
           out: dict[str, list[float]]) -> None:
    prev = t0
    for i, (name, role, tag, which) in enumerate(path):
        # "last": the last such stamp before the next milestone's first candidate.
        limit = _next_first(window, prev, path[i + 1:]) if which == "last" else None
        found = [t for t, r, g in window if r == role and g.startswith(tag) and t >= prev
                 and (limit is None or t <= limit)]
        if not found:
            return
        t = found[0] if which == "first" else found[-1]
        out[name].append((t - prev) / 1e6)
        prev = t


def _next_first(window: list[tuple[int, str, str]], after: int,
                rest: list[tuple[str, str, str, str]]) -> int | None:
    for _, role, tag, _which in rest[:1]:
        found = [t for t, r, g in window if r == role and g.startswith(tag) and t >= after]
        return found[0] if found else None
    return None


async def drive(calls: int, daemon: bool, tmp: Path) -> None:
    from sitecustomize import stamp  # the one this process loaded from bench/timeline

    rt = None if daemon else start_runtime(tmp / "rt", "--rate-limit", "0")
    env = subprocess_env({"CHECKPOINT_DIR": str(tmp / "ck"),
                          "SMARTCOLAB_RUNTIMES": str(tmp / "no-runtimes.toml")})
    args = [sys.executable, "-m", "smartcolab", "mcp", "--log-level", "WARNING"]
    if rt is not None:
        env.update({"COLAB_URL": rt.url, "COLAB_TOKEN": rt.secret})
    else:
        env.pop("COLAB_URL", None)
        args += ["--root", str(tmp / "ws")]
    try:
        async with await anyio.open_process(args, env=env) as proc:
            bridge = BareBridge(proc)
            await bridge.start()
            for _ in range(20):  # warm: a kernel started, connections made
                await bridge.call_tool("run_code_quick", {"code": "1+1"})
            with raw_kernel("bench-tl-k-") as (_, kc):
                kc.execute_interactive("1+1", timeout=30, output_hook=lambda msg: None)
                for _ in range(calls):
                    await anyio.sleep(PAUSE_S)
                    stamp("call>")
                    answer = await bridge.call_tool("run_code_quick", {"code": "1+1"})
                    stamp("call<")
                    assert not answer["result"].get("isError"), answer
                    await anyio.sleep(PAUSE_S)
                    stamp("raw>")
                    reply = kc.execute_interactive("1+1", timeout=30,
                                                   output_hook=lambda msg: None)
                    stamp("raw<")
                    assert reply["content"]["status"] == "ok"
            proc.terminate()
    finally:
        if rt is not None:
            rt.stop()
        stop_daemons_under(tmp)


def report(events: list[tuple[int, str, str]]) -> dict[str, Any]:
    def medians(got: dict[str, list[float]]) -> dict[str, float]:
        return {k: round(statistics.median(v), 3) for k, v in got.items() if v}

    return {"ours": medians(segments(events, "call>", "call<", OURS)),
            "raw": medians(segments(events, "raw>", "raw<", RAW))}


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--daemon", action="store_true")
    args = parser.parse_args()
    if os.environ.get("TL_DIR") is None:  # run again with the stamps switched on
        with tempfile.TemporaryDirectory(prefix="bench-tl-", dir="/tmp") as tl:
            env = {**os.environ, "TL_DIR": tl,
                   "PYTHONPATH": os.pathsep.join([str(HERE / "timeline"), str(ROOT / "src"),
                                                  os.environ.get("PYTHONPATH", "")])}
            subprocess.run([sys.executable, *sys.argv], env=env, check=True)
            return {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-tl-run-", dir="/tmp") as tmp:
        anyio.run(drive, args.calls, args.daemon, Path(tmp))
    time.sleep(0.2)  # the last stamps of the processes that just ended
    out = {"calls": args.calls, "runtime": "local daemon" if args.daemon else "TCP runtime",
           "load": [round(x, 2) for x in (*load_before, *os.getloadavg())],
           **report(load(Path(os.environ["TL_DIR"])))}
    for side in ("ours", "raw"):
        print(f"--- {'run_code_quick (bare client)' if side == 'ours' else 'raw execute'}")
        for name, value in out[side].items():
            print(f"  {value:7.3f} ms  {name}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
