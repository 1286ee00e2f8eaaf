"""The runtime and the bridge over a long link: bench/wan_proxy.py in front of the servers.

Profiles (bench/wan_proxy.py): ``loopback`` (no proxy), ``50ms`` (50 ms each way),
``150ms-20MBps`` (150 ms each way, 20 MB/s per stream).  ``1pct-loss`` needs the
kernel's netem in a network namespace; where ``tc ... netem`` is refused it is skipped
and the reason recorded.  Per profile, each figure with its baseline from the same run:

- a short call: signed ``POST /jobs?wait`` of ``1+1`` and ``run_code_quick("1+1")``
  through the stdio bridge, for the ``colab`` kind (our runtime server) and the
  ``jupyter`` kind (a Jupyter Server): median wall time, and HTTP requests / other client
  turns / new connections per call as the proxy counted them; baseline: the link's RTT;
- a printed line: kernel ``print(time.time())`` -> the line in a ``get_job`` long-poll
  answer on the client; baseline: one-way delay (the least possible);
- download and upload MB/s with our client (sha256 included), parallel and one stream;
  baselines: curl through the same proxy (the link's capacity as one stream sees it), N
  curls at once (N: our default stream count; downloads ``curl -r`` on the file's N
  ranges, uploads ``curl -T`` of its N pieces: what N plain streams carry, no hash, no
  fsync) and the nominal cap.  On a profile with a link cap the parallel transfers move
  1 GiB (the issue's figure; fixed costs per transfer weigh as they would), the
  one-stream ones 128 MiB (a capped stream's rate does not depend on the size);
- chunked overhead per batch (10 batches of 100); baseline: a trivial job's round trip.

    python bench/bench_wan.py [--profiles 50ms,150ms-20MBps] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "src"), str(ROOT / "tests")]

import bench_files  # noqa: E402
from mcp import Client, StdioServerParameters  # noqa: E402
from smartcolab.client.http.client import RuntimeClient  # noqa: E402
from smartcolab.mcp.chunked.build import make_spec  # noqa: E402
from smartcolab.mcp.chunked.checkpoints import CheckpointStore  # noqa: E402
from smartcolab.mcp.chunked.runner import ChunkedRunner  # noqa: E402
from smartcolab.shared.protocol import JobSubmit  # noqa: E402
from support.jupyter_helpers import start_jupyter  # noqa: E402
from support.runtime_proc import RuntimeProc, start_runtime, subprocess_env  # noqa: E402
from wan_proxy import PROFILES, Profile  # noqa: E402

RESULTS = HERE / "results" / "wan.json"
DEFAULT_PROFILES = ("loopback", "50ms", "150ms-20MBps", "1pct-loss")


# ---------------------------------------------------------------- the proxy, as a process
class ProxyProc:
    """bench/wan_proxy.py in its own process, so its work never competes for our GIL."""

    def __init__(self, target_url: str, profile: Profile) -> None:
        host_port = target_url.split("//", 1)[1].split("/", 1)[0]
        args = [sys.executable, str(HERE / "wan_proxy.py"), "--target", host_port,
                "--delay", str(profile.delay_s),
                "--rate-mbps", str((profile.rate_bytes_s or 0) / 1e6),
                "--link-mbps", str((profile.link_bytes_s or 0) / 1e6)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        port = json.loads(self.proc.stdout.readline())["port"]
        rest = target_url.split("//", 1)[1].split("/", 1)
        self.url = f"http://127.0.0.1:{port}" + (f"/{rest[1]}" if len(rest) > 1 else "")

    def _ask(self, cmd: str) -> dict[str, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        answer: dict[str, int] = json.loads(self.proc.stdout.readline())
        return answer

    def reset(self) -> None:
        self._ask("reset")

    def stats(self) -> dict[str, int]:
        return self._ask("stats")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@contextlib.contextmanager
def proxied(url: str, profile: Profile) -> Iterator[tuple[str, ProxyProc | None]]:
    if profile.name == "loopback":
        yield url, None
        return
    proxy = ProxyProc(url, profile)
    try:
        yield proxy.url, proxy
    finally:
        proxy.close()


def per_call(proxy: ProxyProc | None, calls: int) -> dict[str, float] | None:
    if proxy is None:
        return None
    s = proxy.stats()
    return {"http_requests": s["http_requests"] / calls,
            "other_client_turns": s["other_client_turns"] / calls,
            "new_connections": s["connections"] / calls}


def netem_available() -> str | None:
    """None when netem loss can be set on a namespace's loopback, else why not."""
    name = f"scwan{uuid.uuid4().hex[:6]}"
    try:
        add = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=10)
        if add.returncode:
            return f"ip netns add: {add.stderr.strip()}"
        tc = subprocess.run(["ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "root",
                             "netem", "loss", "1%"], capture_output=True, text=True, timeout=10)
        return f"tc netem: {tc.stderr.strip()}" if tc.returncode else None
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


# ---------------------------------------------------------------- measurements
async def short_http(url: str, secret: str, proxy: ProxyProc | None, repeats: int) -> dict[str, Any]:
    async with RuntimeClient(url, secret) as client:
        for _ in range(2):  # connection set up, kernel warm
            await client.submit(JobSubmit(job_id=f"w-{uuid.uuid4().hex}", code="1+1"), wait=10)
        if proxy:
            proxy.reset()
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            view = await client.submit(JobSubmit(job_id=f"w-{uuid.uuid4().hex}", code="1+1"), wait=10)
            samples.append(time.perf_counter() - t0)
            assert view.status == "succeeded", view
    return {"median_ms": statistics.median(samples) * 1000, "per_call": per_call(proxy, repeats)}


async def short_bridge(env_extra: dict[str, str], runtime: str, proxy: ProxyProc | None,
                       repeats: int, tmp: Path) -> dict[str, Any]:
    env = subprocess_env({**env_extra, "CHECKPOINT_DIR": str(tmp / f"ck-{uuid.uuid4().hex[:6]}")})
    if "JUPYTER_URL" in env_extra:
        env.pop("COLAB_URL", None)
    params = StdioServerParameters(command=sys.executable, env=env,
                                   args=["-m", "smartcolab", "mcp", "--log-level", "WARNING"])
    args = {"code": "1+1", "runtime": runtime}
    async with Client(params) as client:
        for _ in range(2):
            first = await client.call_tool("run_code_quick", args)
            assert not first.is_error, first
        if proxy:
            proxy.reset()
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            result = await client.call_tool("run_code_quick", args)
            samples.append(time.perf_counter() - t0)
            assert not result.is_error, result
    return {"median_ms": statistics.median(samples) * 1000, "per_call": per_call(proxy, repeats)}


async def printed_line(url: str, secret: str, repeats: int) -> dict[str, Any]:
    """Kernel print -> line in a get_job long-poll answer (both clocks are this machine's)."""
    code = ("import time\ntime.sleep(0.4)\nprint(repr(time.time()), flush=True)\ntime.sleep(0.6)")
    samples = []
    async with RuntimeClient(url, secret) as client:
        for _ in range(repeats):
            view = await client.submit(JobSubmit(job_id=f"p-{uuid.uuid4().hex}", code=code), wait=0)
            cursor = view.cursor
            while True:
                view = await client.get_job(view.job_id, wait=5, since=cursor)
                if view.output.strip():
                    samples.append(time.time() - float(view.output.split()[0]))
                    break
                cursor = view.cursor
                assert view.status in ("queued", "running"), view
            await client.get_job(view.job_id, wait=5)
    return {"median_ms": statistics.median(samples) * 1000, "samples": len(samples)}


def curl_ranges(url: str, secret: str, remote: str, size: int, n: int, work: Path) -> float:
    """Wall seconds of ``n`` ``curl -r`` at once on the file's ``n`` ranges (no hash, no fsync)."""
    step = -(-size // n)
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["curl", "-sS", "-f", "-o", str(work / f"c{i}"), "-r",
                               f"{i * step}-{min(size, (i + 1) * step) - 1}", "-H",
                               f"Authorization: Bearer {secret}",
                               f"{url}/files/content?path={remote}"]) for i in range(n)]
    codes = [p.wait(1800) for p in procs]
    wall = time.perf_counter() - t0
    for i in range(n):
        (work / f"c{i}").unlink(missing_ok=True)
    if any(codes):
        raise RuntimeError(f"a parallel curl download failed: {codes}")
    return wall


def transfers(proc: RuntimeProc, url: str, proxy: ProxyProc | None, size_mb: int, repeats: int,
              work: Path, single_mb: int | None = None) -> dict[str, Any]:
    """Ours (child process, sha256) and curl through the same URL, medians; our requests
    per transfer as the proxy counted them.  ``single_mb``: the size of the one-stream
    runs (ours and the single curl), if not ``size_mb``."""
    single_mb = single_mb or size_mb
    streams = bench_files_streams()
    bench_files.make_file(proc.root / "wan.bin", size_mb)
    bench_files.make_file(proc.root / "wan1.bin", single_mb)
    src, src1 = work / f"src-{size_mb}.bin", work / f"src-{single_mb}.bin"
    for path, mb in ((src, size_mb), (src1, single_mb)):
        if not path.exists():
            bench_files.make_file(path, mb)
    via = dataclasses.replace(proc, url=url)
    # Not counted: the first download also waits for the runtime to hash the new file.
    for name in ("wan.bin", "wan1.bin"):
        bench_files._run_child("download", via, name, work / "d.bin")
        (work / "d.bin").unlink()
    pieces = bench_files.split_file(src, streams)
    walls: dict[str, list[float]] = {}
    counts: dict[str, dict[str, float] | None] = {}

    def add(key: str, seconds: float) -> None:
        walls.setdefault(key, []).append(seconds)

    for _ in range(repeats):
        if proxy:
            proxy.reset()
        add("down", bench_files._run_child("download", via, "wan.bin", work / "d.bin")["seconds"])
        counts["download"] = per_call(proxy, 1)
        (work / "d.bin").unlink()
        add("curl_down_n", curl_ranges(via.url, via.secret, "wan.bin", size_mb * bench_files.MB, streams, work))
        add("down1", bench_files._run_child("download", via, "wan1.bin", work / "d.bin",
                                            streams=1)["seconds"])
        (work / "d.bin").unlink()
        add("curl_down", bench_files._curl_download(via, "wan1.bin", work / "c.bin")[0])
        (work / "c.bin").unlink()
        if proxy:
            proxy.reset()
        add("up", bench_files._run_child("upload", via, "wan-up.bin", src)["seconds"])
        counts["upload"] = per_call(proxy, 1)
        add("curl_up_n", bench_files._curl_upload_parallel(via, pieces, "wan-up-curln-"))
        add("up1", bench_files._run_child("upload", via, "wan-up1.bin", src1,
                                          streams=1)["seconds"])
        add("curl_up", bench_files._curl_upload(via, src1, "wan-up-curl.bin"))
    # MiB moved by each kind of run, in 10^6 bytes: the one-stream runs move ``single_mb``.
    moved = {k: (single_mb if k in ("down1", "curl_down", "up1", "curl_up") else size_mb)
             * 1.048576 for k in walls}
    rate = {k: moved[k] / statistics.median(v) for k, v in walls.items()}
    each = {k: [round(moved[k] / x, 1) for x in v] for k, v in walls.items()}
    return {"size_mb": size_mb, "single_mb": single_mb, "repeats": repeats, "requests": counts,
            "streams": streams, "parallel_curls": streams, "each_mb_s": each,
            "download_mb_s": rate["down"], "download_1_mb_s": rate["down1"],
            "curl_download_mb_s": rate["curl_down"],
            "curl_download_n_mb_s": rate["curl_down_n"],
            "upload_mb_s": rate["up"], "upload_1_mb_s": rate["up1"],
            "curl_upload_mb_s": rate["curl_up"], "curl_upload_n_mb_s": rate["curl_up_n"]}


def bench_files_streams() -> int:
    from smartcolab.client.http.transfer import DEFAULT_STREAMS
    return DEFAULT_STREAMS


async def chunked_overhead(url: str, secret: str, proxy: ProxyProc | None,
                           tmp: Path) -> dict[str, Any]:
    n, batch = 1000, 100
    async with RuntimeClient(url, secret) as client:
        samples = []
        for k in range(6):  # the first one sets up the connection: not counted
            t0 = time.perf_counter()
            await client.submit(JobSubmit(job_id=f"t-{uuid.uuid4().hex}", code="pass"), wait=10)
            if k:
                samples.append(time.perf_counter() - t0)
        trivial = statistics.median(samples)
        name = f"wan-{uuid.uuid4().hex[:8]}"
        spec = make_spec(checkpoint_name=name, setup_code="acc = 0", loop_code="acc += i",
                         n_iterations=n, batch_size=batch, collect=None)
        store = CheckpointStore(tmp / name)
        if proxy:
            proxy.reset()
        t0 = time.perf_counter()
        out = await ChunkedRunner(store, client, runtime="bench").run(spec)
        wall = time.perf_counter() - t0
        assert out.status == "done", out
        timing = store.timings(name)
        store.close()
    batches = int(timing["batches"])
    return {"batches": batches, "overhead_per_batch_ms": (wall - timing["body_s"]) / batches * 1000,
            "trivial_job_ms": trivial * 1000, "per_batch": per_call(proxy, batches)}


# ---------------------------------------------------------------- one profile
def run_profile(profile: Profile, rt: RuntimeProc, jupyter_url: str, jupyter_token: str,
                quick: bool, tmp: Path, loopback_mb: int, shaped_mb: int | None = None,
                transfers_only: bool = False) -> dict[str, Any]:
    repeats = 3 if quick else (20 if profile.name == "loopback" else 7)
    # The figure is 1 GiB on the capped profile; elsewhere 128 MiB keeps the run short.
    shaped_mb = shaped_mb or (16 if quick else 1024 if profile.link_bytes_s else 128)
    size_mb = (32 if quick else loopback_mb) if profile.name == "loopback" else shaped_mb
    single_mb = min(size_mb, 128) if profile.rate_bytes_s else size_mb
    out: dict[str, Any] = {"profile": dataclasses.asdict(profile), "rtt_ms": profile.rtt_s * 1000,
                           "nominal_mb_s": (profile.rate_bytes_s or 0) / 1e6 or None,
                           "link_mb_s": (profile.link_bytes_s or 0) / 1e6 or None}
    if transfers_only:
        with proxied(rt.url, profile) as (url, proxy):
            out["transfer"] = transfers(rt, url, proxy, size_mb, 1 if quick else 3, tmp,
                                        single_mb)
        out["load_avg"] = [round(x, 2) for x in os.getloadavg()]
        return out
    with proxied(rt.url, profile) as (url, proxy):
        out["http_1p1"] = asyncio.run(short_http(url, rt.secret, proxy, repeats))
        out["bridge_1p1"] = asyncio.run(short_bridge(
            {"COLAB_URL": url, "COLAB_TOKEN": rt.secret}, "colab", proxy, repeats, tmp))
        out["print_line"] = asyncio.run(printed_line(url, rt.secret, 3 if quick else 5))
        out["chunked"] = asyncio.run(chunked_overhead(url, rt.secret, proxy, tmp))
        out["transfer"] = transfers(rt, url, proxy, size_mb, 1 if quick else 3, tmp, single_mb)
        out["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    with proxied(jupyter_url, profile) as (jurl, jproxy):
        out["jupyter_bridge_1p1"] = asyncio.run(short_bridge(
            {"JUPYTER_URL": jurl, "JUPYTER_TOKEN": jupyter_token}, "jupyter", jproxy, repeats, tmp))
    return out


def run(profiles: tuple[str, ...] = DEFAULT_PROFILES, quick: bool = False,
        loopback_mb: int = 1024, shaped_mb: int | None = None,
        transfers_only: bool = False) -> dict[str, Any]:
    """``loopback_mb``: the transfer size without a proxy (report.py makes it smaller when
    bench_files already measured 1 GiB on loopback in the same run)."""
    results: dict[str, Any] = {"profiles": {}, "skipped": {}}
    with tempfile.TemporaryDirectory(prefix="sc-bench-wan-") as tmp_name:
        tmp = Path(tmp_name)
        rt = start_runtime(tmp / "root")
        try:
            with start_jupyter(tmp / "jroot") as jup:
                for name in profiles:
                    if name == "1pct-loss":
                        why = netem_available()
                        results["skipped"][name] = (
                            f"netem unavailable here ({why})" if why else
                            "netem works here, but the loss profile is not built yet")
                        continue
                    results["profiles"][name] = run_profile(
                        PROFILES[name], rt, jup.url, jup.token, quick, tmp, loopback_mb,
                        shaped_mb, transfers_only)
        finally:
            rt.stop()
    return results


def print_table(res: dict[str, Any]) -> None:
    for name, p in res["profiles"].items():
        if "http_1p1" not in p:
            t = p["transfer"]
            print(f"\n== {name} transfers, {t['size_mb']} MiB: download {_download_text(t)} "
                  f"(link {p['link_mb_s']}); upload {_upload_text(t)}; load {p['load_avg']}; "
                  f"each run: {t['each_mb_s']}")
            continue
        print(f"\n== {name} (RTT {p['rtt_ms']:.0f} ms, cap {p['nominal_mb_s'] or '-'} MB/s per "
              f"stream, {p['link_mb_s'] or '-'} MB/s in all; load {p['load_avg']})")
        for key in ("http_1p1", "bridge_1p1", "jupyter_bridge_1p1"):
            print(f"{key:<22}{p[key]['median_ms']:>10.1f} ms  per call: {p[key]['per_call']}")
        print(f"{'print -> get_job':<22}{p['print_line']['median_ms']:>10.1f} ms")
        print(f"{'chunked per batch':<22}{p['chunked']['overhead_per_batch_ms']:>10.1f} ms "
              f"(trivial job {p['chunked']['trivial_job_ms']:.1f} ms)")
        t = p["transfer"]
        print(f"download {t['size_mb']} MiB: {_download_text(t)} (link {p['link_mb_s'] or '-'}); "
              f"upload {_upload_text(t)} MB/s")
    for name, why in res["skipped"].items():
        print(f"\n{name}: skipped: {why}")


def _download_text(t: dict[str, Any]) -> str:
    return (f"{t['download_mb_s']:.1f} MB/s ({t['streams']} streams; {t['parallel_curls']} "
            f"curls at once {t['curl_download_n_mb_s']:.1f}; one stream ({t['single_mb']} MiB) "
            f"{t['download_1_mb_s']:.1f}, curl {t['curl_download_mb_s']:.1f})")


def _upload_text(t: dict[str, Any]) -> str:
    return (f"{t['upload_mb_s']:.1f} ({t['parallel_curls']} curls at once "
            f"{t['curl_upload_n_mb_s']:.1f}; one stream ({t['single_mb']} MiB) "
            f"{t['upload_1_mb_s']:.1f}, curl {t['curl_upload_mb_s']:.1f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", default=",".join(DEFAULT_PROFILES))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--loopback-mb", type=int, default=1024)
    ap.add_argument("--shaped-mb", type=int, default=None, help="transfer size on a shaped link")
    ap.add_argument("--transfers-only", action="store_true")
    args = ap.parse_args()
    res = run(tuple(p.strip() for p in args.profiles.split(",") if p.strip()), args.quick,
              args.loopback_mb, args.shaped_mb, args.transfers_only)
    print_table(res)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
