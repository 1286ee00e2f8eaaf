"""``smartcolab demo``: the main tools, end to end, on this machine, in about 15 seconds.

It starts the real MCP bridge (``python -m smartcolab mcp``) as a stdio subprocess,
which starts its embedded local runtime; it talks to the bridge with the official MCP
client, exactly as Claude Desktop would, and walks through: connection, probe, state
kept across two calls, a plot returned as an image (saved to a file), a chunked
operation (when this build has the tool), a verified download, and a timeout that the
runtime enforces.  Each step prints one line when it ends (what it did, how long it
took); one line ends the run, with the next command to try, by its absolute path.

The plot: matplotlib is used when the kernel has it; otherwise the kernel draws the
PNG itself with ``zlib`` (no ``%pip install``: the demo must work offline, on a fresh
machine, with nothing but ``pip install -e .``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, ImageContent, TextContent
from rich.markup import escape

import smartcolab
from mcp import Client, StdioServerParameters
from smartcolab.cli.client_config import smartcolab_command
from smartcolab.cli.common import err, out, print_json
from smartcolab.shared import env as env_names

STEP_DEADLINE_S = 90.0
TIMEOUT_DEMO_S = 2.0

PLOT_CODE = '''
import math
try:
    import io
    import matplotlib.pyplot as plt
    from IPython.display import Image, display
    xs = [i / 50 for i in range(315)]
    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    ax.plot(xs, [math.sin(x) for x in xs], label="sin")
    ax.plot(xs, [math.cos(x) for x in xs], label="cos")
    ax.legend(); ax.set_title("drawn by the remote kernel")
    buf = io.BytesIO(); fig.savefig(buf, format="png"); plt.close(fig)
    display(Image(data=buf.getvalue()))
    print("drawn with matplotlib")
except ImportError:
    import struct, zlib
    from IPython.display import Image, display
    w, h = 320, 160
    rows = []
    for y in range(h):
        row = bytearray([0])
        for x in range(w):
            s = h / 2 - math.sin(x / w * 2 * math.pi) * (h / 2 - 10)
            c = h / 2 - math.cos(x / w * 2 * math.pi) * (h / 2 - 10)
            if abs(y - s) < 2: row += bytes((31, 119, 180))
            elif abs(y - c) < 2: row += bytes((255, 127, 14))
            elif y == h // 2: row += bytes((160, 160, 160))
            else: row += bytes((255, 255, 255))
        rows.append(bytes(row))
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b""))
    display(Image(data=png))
    print("drawn pixel by pixel (matplotlib is not installed in the kernel's Python)")
'''

DATA_CODE = '''
import csv, hashlib, os, random
os.makedirs("demo", exist_ok=True)
random.seed(7)
with open("demo/measurements.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["i", "x", "y"])
    for i in range(20000):
        w.writerow([i, round(random.random(), 6), round(random.gauss(0, 1), 6)])
print(hashlib.sha256(open("demo/measurements.csv", "rb").read()).hexdigest())
'''


@dataclass
class Step:
    name: str
    ok: bool | None = None  # None: skipped
    detail: str = ""
    seconds: float = 0.0


@dataclass
class DemoRun:
    out_dir: Path
    quiet: bool
    steps: list[Step] = field(default_factory=list)

    def say(self, text: str) -> None:
        if not self.quiet:
            out.print(text, highlight=False)

    async def step(self, name: str, body: Callable[[Step], Awaitable[None]]) -> Step:
        step = Step(name)
        self.steps.append(step)
        t0 = time.perf_counter()
        try:
            with anyio.fail_after(STEP_DEADLINE_S):
                await body(step)
        except Exception as exc:  # a demo step reports, the next ones still run
            step.ok, step.detail = False, f"{type(exc).__name__}: {exc}"
        step.seconds = time.perf_counter() - t0
        mark = {True: "[green]✓[/green]", False: "[red]✗[/red]", None: "[dim]-[/dim]"}[step.ok]
        skipped = " (skipped)" if step.ok is None else ""
        self.say(f"{mark} [bold]{name}[/bold]{skipped} [dim]{step.seconds:.1f} s[/dim]: "
                 f"{escape(step.detail)}")
        return step


def _sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


def _structured(result: CallToolResult) -> dict[str, Any]:
    return dict(result.structured_content or {})


def bridge_params(state_dir: Path, save_dir: Path) -> StdioServerParameters:
    """``python -m smartcolab mcp`` with its own state, the embedded runtime only."""
    env = dict(os.environ)
    for name in (env_names.COLAB_URL, env_names.COLAB_TOKEN, env_names.RUNTIMES_FILE):
        env.pop(name, None)
    pkg_parent = str(Path(smartcolab.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH")) if p)
    env.update({env_names.CHECKPOINT_DIR: str(state_dir), env_names.LOCAL_SAVE_DIR: str(save_dir),
                "PYTHONUNBUFFERED": "1"})
    return StdioServerParameters(command=sys.executable,
                                 args=["-m", "smartcolab", "mcp", "--log-level", "WARNING"],
                                 env=env, cwd=str(state_dir))


async def _walk(run: DemoRun, client: Client, save_dir: Path) -> None:
    tools: set[str] = set()

    async def connect(s: Step) -> None:
        tools.update(t.name for t in (await client.list_tools()).tools)
        conn = await client.call_tool("check_colab_connection", {})
        info = _structured(conn)
        s.ok = not conn.is_error
        s.detail = f"bridge offers {len(tools)} tools; embedded runtime at {info.get('url', '?')}"

    async def probe(s: Step) -> None:
        p = _structured(await client.call_tool("probe_colab_environment", {}))
        ram = p.get("ram_total_bytes", 0) / 1e9
        s.ok = bool(p.get("python"))
        s.detail = (f"the runtime reports: {PLATFORM_WORDS.get(str(p.get('platform')), p.get('platform'))}, "
                    f"{accelerator_words(str(p.get('accelerator')))}, {p.get('cpu_count')} CPUs, "
                    f"{ram:.1f} GB RAM, Python {str(p.get('python', '')).split()[0]}")

    async def state(s: Step) -> None:
        first = await client.call_tool("run_code_quick", {
            "code": "squares = [i * i for i in range(10)]\ntotal = sum(squares)"})
        second = await client.call_tool("run_code_quick", {"code": "print(total, len(squares))"})
        got = text_of(second)
        s.ok = not first.is_error and not second.is_error and "285 10" in got
        s.detail = "call 1 set squares and total; call 2 printed " + (
            "'285 10' from them" if s.ok else repr(got[-200:]))

    async def plot(s: Step) -> None:
        result = await client.call_tool("run_code_quick", {"code": PLOT_CODE})
        images = [c for c in result.content if isinstance(c, ImageContent)]
        if result.is_error or not images:
            s.ok, s.detail = False, f"no image came back: {text_of(result)[-300:]}"
            return
        path = run.out_dir / "plot.png"
        path.write_bytes(base64.b64decode(images[0].data))
        how = ("drawn with matplotlib" if "with matplotlib" in text_of(result) else
               "drawn pixel by pixel, as the kernel has no matplotlib")
        s.ok = path.read_bytes().startswith(b"\x89PNG")
        s.detail = (f"the kernel displayed a plot ({how}); it came back as MCP image content, "
                    f"{path.stat().st_size:,} bytes, saved to {path}")

    async def chunked(s: Step) -> None:
        if "run_chunked_operation" not in tools:
            s.detail = "this build has no run_chunked_operation tool yet"
            return
        first = await client.call_tool("run_chunked_operation", CHUNKED_ARGS)
        again = await client.call_tool("run_chunked_operation",
                                       {**CHUNKED_ARGS, "restart": False})
        cp = await client.call_tool("get_checkpoint", {"name": CHUNKED_ARGS["checkpoint_name"]})
        info = _structured(cp)
        done, total = info.get("completed"), info.get("total")
        s.ok = not (first.is_error or again.is_error or cp.is_error) and done == total == 100
        s.detail = (f"100 iterations in 4 batches of 25, each recorded in a local checkpoint "
                    f"({done}/{total} done); a second call with the same inputs found it complete"
                    if s.ok else f"{text_of(first)[-300:]} / {json.dumps(info)[:300]}")

    async def download(s: Step) -> None:
        made = await client.call_tool("run_code_quick", {"code": DATA_CODE})
        remote_hash = text_of(made).split()[-1] if not made.is_error else ""
        got = await client.call_tool("download_from_colab", {
            "path": "demo/measurements.csv", "overwrite": True})
        info = _structured(got)
        local = Path(info.get("path", save_dir / "missing"))
        digest = await anyio.to_thread.run_sync(_sha256_of, local)
        s.ok = not got.is_error and digest == info.get("sha256") == remote_hash
        s.detail = (f"{info.get('size', 0):,} bytes to {local}; sha256 {digest[:16]}… matches "
                    "the kernel's" if s.ok else f"verification failed: {text_of(got)[-300:]}")

    async def timeout(s: Step) -> None:
        t0 = time.perf_counter()
        result = await client.call_tool("run_code_long", {
            "code": "import time\nwhile True:\n    time.sleep(0.05)", "timeout": TIMEOUT_DEMO_S})
        took = time.perf_counter() - t0
        status = _structured(result).get("status")
        alive = await client.call_tool("run_code_quick", {"code": "print(total)"})
        s.ok = status == "timed_out" and "285" in text_of(alive)
        s.detail = (f"an endless loop with timeout={TIMEOUT_DEMO_S:.0f} s was stopped by the "
                    f"runtime ({status}) after {took:.1f} s; variables survived")

    for name, body in (("connect", connect), ("probe", probe), ("state across calls", state),
                       ("plot as an image", plot), ("chunked with checkpoint", chunked),
                       ("verified download", download), ("timeout enforced", timeout)):
        await run.step(name, body)


CHUNKED_ARGS: dict[str, Any] = {
    "checkpoint_name": "demo-squares", "setup_code": "squares_seen = {}",
    "loop_code": "squares_seen[i] = i * i\nif i % 2:\n    continue", "n_iterations": 100,
    "batch_size": 25, "collect": "squares_seen[i]", "restart": True,
}


PLATFORM_WORDS = {"local": "this computer", "docker": "a Docker container", "vm": "a VM",
                  "colab": "Google Colab", "kaggle": "Kaggle"}


def accelerator_words(accelerator: str) -> str:
    return "no GPU" if accelerator in ("none", "cpu", "") else f"accelerator {accelerator}"


def default_out_dir() -> Path:
    """Outside any checkout: the demo must not leave files in the user's working tree."""
    return Path.home() / ".smartcolab" / "demo"


def prepare_out_dir(out_dir: Path) -> Path:
    out_dir = out_dir.expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def summary(run: DemoRun, total_s: float) -> None:
    """One closing line: what failed, or the next command (steps were printed as they ended)."""
    failed = [s.name for s in run.steps if s.ok is False]
    if failed:
        out.print(f"[red]failed: {', '.join(failed)}[/red] (in {total_s:.1f} s)", highlight=False)
        return
    out.print(f"[green]every step worked[/green] in {total_s:.1f} s. Next, to use these tools "
              f"from Claude Desktop: [bold]{escape(smartcolab_command())} config claude-desktop"
              "[/bold] prints the configuration to paste.", highlight=False)


async def run_demo(out_dir: Path, *, as_json: bool = False) -> bool:
    """Run the demo; True when no step failed (skipped steps do not count).

    ``out_dir`` must be absolute and exist (``prepare_out_dir``).
    """
    save_dir = out_dir / "downloads"
    state_dir = Path(tempfile.mkdtemp(prefix="smartcolab-demo-"))
    run = DemoRun(out_dir, quiet=as_json)
    run.say("[bold]smartcolab demo[/bold]: the MCP bridge over stdio, as an MCP client starts "
            f"it, with a local runtime on this computer; files go to {escape(str(out_dir))}")
    t0 = time.perf_counter()
    try:
        with open(state_dir / "bridge-stderr.log", "w") as errlog:  # noqa: ASYNC230 - a log handle
            async with Client(stdio_client(bridge_params(state_dir, save_dir), errlog=errlog)) as client:
                await _walk(run, client, save_dir)
    except Exception as exc:
        log = (state_dir / "bridge-stderr.log").read_text(errors="replace")[-2000:]
        err.print(f"the bridge failed: {type(exc).__name__}: {exc}\n{log}")
        run.steps.append(Step("bridge", False, f"{type(exc).__name__}: {exc}"))
    finally:
        # The demo's local daemon has a throwaway state directory: stop it with the demo.
        from smartcolab.client.local.daemon import list_daemons, stop_daemon

        with anyio.CancelScope(shield=True):
            for info in list_daemons(state_dir / "local"):
                await stop_daemon(info)
        shutil.rmtree(state_dir, ignore_errors=True)
    total = time.perf_counter() - t0
    if as_json:
        print_json({"ok": all(s.ok is not False for s in run.steps), "seconds": total,
                    "out_dir": str(out_dir), "steps": [asdict(s) for s in run.steps]})
    else:
        summary(run, total)
    return all(s.ok is not False for s in run.steps)


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps({"ok": anyio.run(run_demo, prepare_out_dir(default_out_dir()))}))
