"""File transfer over loopback: our client (sha256 included) against curl, same run.

    python bench/bench_files.py [--size-mb 1024] [--repeats 3] [--dir /tmp]

A real runtime server is started on 127.0.0.1; one file of SIZE MB is served.
Each measurement runs in a child process, so the client's peak RSS is its own.
Medians over repeats; the first (cold) download, which also waits for the
runtime to hash the file once, is reported apart.  JSON goes to
bench/results/files.json.  Targets: download >= 0.8x curl, peak RSS <= 100 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

from support.runtime_proc import RuntimeProc, start_runtime  # noqa: E402

MB = 1024 * 1024
ENV_SECRET = "SMARTCOLAB_BENCH_SECRET"
ENV_STREAMS = "SMARTCOLAB_BENCH_STREAMS"  # parallel streams/parts (default: the client's)


# ---------------------------------------------------------------- child side
def _child(op: str, url: str, remote: str, local: str) -> None:
    from smartcolab.client.http import transfer
    from smartcolab.client.http.client import RuntimeClient

    async def go() -> dict[str, Any]:
        async with RuntimeClient(url, os.environ[ENV_SECRET]) as client:
            t0 = time.perf_counter()
            streams = int(os.environ.get(ENV_STREAMS) or transfer.DEFAULT_STREAMS)
            if op == "download":
                res = await transfer.download(client, remote, Path(local).parent,
                                              Path(local).name, overwrite=True, streams=streams)
                out: dict[str, Any] = {"sha256": res.sha256, "size": res.size}
            else:
                up = await transfer.upload(client, local, remote, overwrite=True,
                                           streams=streams)
                out = {"sha256": up.sha256, "size": up.size}
            out["seconds"] = time.perf_counter() - t0
            return out

    before = resource.getrusage(resource.RUSAGE_SELF)
    result = asyncio.run(go())
    after = resource.getrusage(resource.RUSAGE_SELF)
    result["peak_rss_mb"] = after.ru_maxrss / 1024
    result["cpu_seconds"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result["user_seconds"] = after.ru_utime - before.ru_utime
    result["sys_seconds"] = after.ru_stime - before.ru_stime
    print(json.dumps(result))


def _run_child(op: str, proc: RuntimeProc, remote: str, local: Path,
               streams: int | None = None) -> dict[str, Any]:
    env = {**os.environ, ENV_SECRET: proc.secret, ENV_STREAMS: str(streams or ""),
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, __file__, "--child", op, "--url", proc.url,
                          "--remote", remote, "--local", str(local)],
                         capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode:
        raise RuntimeError(f"bench child {op} failed: {out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _curl_download(proc: RuntimeProc, remote: str, local: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one curl download."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run(["curl", "-sS", "-f", "-o", str(local), "-H",
                    f"Authorization: Bearer {proc.secret}",
                    f"{proc.url}/files/content?path={remote}"], check=True, timeout=1800)
    return time.perf_counter() - t0, _children_cpu() - cpu0


def _curl_sha_fsync(proc: RuntimeProc, remote: str, local: Path) -> float:
    """Wall seconds of the same work as ours, by the tools: curl, then sha256sum, then fsync."""
    t0 = time.perf_counter()
    subprocess.run(["curl", "-sS", "-f", "-o", str(local), "-H",
                    f"Authorization: Bearer {proc.secret}",
                    f"{proc.url}/files/content?path={remote}"], check=True, timeout=1800)
    subprocess.run(["sha256sum", str(local)], check=True, timeout=1800, capture_output=True)
    fd = os.open(local, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - t0


def _curl_upload(proc: RuntimeProc, local: Path, remote: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["curl", "-sS", "-f", "-o", os.devnull, "-X", "PUT", "-T", str(local), "-H",
                    f"Authorization: Bearer {proc.secret}",
                    f"{proc.url}/files/content?path={remote}&overwrite=true"],
                   check=True, timeout=1800)
    return time.perf_counter() - t0


def split_file(src: Path, pieces: int) -> list[Path]:
    """``src`` cut into ``pieces`` files beside it (made once): the parallel curl baseline."""
    size = src.stat().st_size
    step = -(-size // pieces)
    out = [src.with_name(f"{src.name}.piece{i}") for i in range(pieces)]
    if all(p.exists() for p in out):
        return out
    with open(src, "rb") as f:
        for piece in out:
            piece.write_bytes(f.read(step))
    return out


def _curl_upload_parallel(proc: RuntimeProc, pieces: list[Path], remote: str) -> float:
    """Wall seconds of one curl per piece, all at once (what N plain streams can carry)."""
    t0 = time.perf_counter()
    running = [subprocess.Popen(["curl", "-sS", "-f", "-o", os.devnull, "-X", "PUT", "-T",
                                 str(p), "-H", f"Authorization: Bearer {proc.secret}",
                                 f"{proc.url}/files/content?path={remote}{i}&overwrite=true"])
               for i, p in enumerate(pieces)]
    codes = [p.wait(1800) for p in running]
    if any(codes):
        raise RuntimeError(f"a parallel curl upload failed: {codes}")
    return time.perf_counter() - t0


# ---------------------------------------------------------------- measurements
def make_file(path: Path, size_mb: int) -> None:
    block = os.urandom(MB)
    with open(path, "wb") as f:
        for i in range(size_mb):
            # Vary each block cheaply so nothing downstream can dedupe or compress it.
            f.write(i.to_bytes(8, "little") + block[8:])


def bench_download(proc: RuntimeProc, size_mb: int, repeats: int, work: Path) -> dict[str, Any]:
    """Ours (default streams, and one stream) against curl alone and against curl + sha256sum
    + fsync (the same work as ours, by the tools), in a rotating order each repeat."""
    local = work / "down.bin"
    cold = _run_child("download", proc, "big.bin", local)  # also fills the runtime's hash cache
    local.unlink()
    walls: dict[str, list[float]] = {"ours": [], "ours_1": [], "curl": [], "curl_sha_fsync": []}
    rss: list[float] = []
    cpu_ours: list[float] = []
    user_ours: list[float] = []
    cpu_curl: list[float] = []

    def ours(key: str, streams: int | None) -> None:
        r = _run_child("download", proc, "big.bin", local, streams)
        walls[key].append(r["seconds"])
        rss.append(r["peak_rss_mb"])
        if key == "ours":
            cpu_ours.append(r["cpu_seconds"])
            user_ours.append(r["user_seconds"])
        local.unlink()

    def curl() -> None:
        wall, cpu = _curl_download(proc, "big.bin", work / "curl.bin")
        walls["curl"].append(wall)
        cpu_curl.append(cpu)
        (work / "curl.bin").unlink()

    def tools() -> None:
        walls["curl_sha_fsync"].append(_curl_sha_fsync(proc, "big.bin", work / "curl.bin"))
        (work / "curl.bin").unlink()

    steps = [lambda: ours("ours", None), curl, lambda: ours("ours_1", 1), tools]
    for i in range(repeats):
        # Rotate who goes first: a loaded machine then favours no one.
        for k in range(len(steps)):
            steps[(i + k) % len(steps)]()
    med = {k: statistics.median(v) for k, v in walls.items()}
    return {
        "size_mb": size_mb, "repeats": repeats,
        "cold_seconds": round(cold["seconds"], 3),
        "cold_mb_s": round(size_mb / cold["seconds"], 1),
        "seconds": {k: [round(x, 3) for x in v] for k, v in walls.items()},
        "ours_seconds": [round(x, 3) for x in walls["ours"]],
        "curl_seconds": [round(x, 3) for x in walls["curl"]],
        "ours_mb_s": round(size_mb / med["ours"], 1), "curl_mb_s": round(size_mb / med["curl"], 1),
        "ours_1_mb_s": round(size_mb / med["ours_1"], 1),
        "curl_sha_fsync_mb_s": round(size_mb / med["curl_sha_fsync"], 1),
        "ratio_vs_curl": round(med["curl"] / med["ours"], 3),
        "ratio_1_vs_curl": round(med["curl"] / med["ours_1"], 3),
        "ratio_vs_curl_sha_fsync": round(med["curl_sha_fsync"] / med["ours"], 3),
        "client_peak_rss_mb": round(max([*rss, cold["peak_rss_mb"]]), 1),
        # CPU seconds per GiB moved: independent of how loaded the machine is.
        "ours_cpu_s_per_gib": round(statistics.median(cpu_ours) * 1024 / size_mb, 2),
        "curl_cpu_s_per_gib": round(statistics.median(cpu_curl) * 1024 / size_mb, 2),
        # User time is ours alone; system time (page cache, writeback) swings with the machine.
        "ours_user_s_per_gib": round(statistics.median(user_ours) * 1024 / size_mb, 2),
        "sha256_ok": bool(cold["sha256"]),
    }


def bench_upload(proc: RuntimeProc, size_mb: int, repeats: int, work: Path) -> dict[str, Any]:
    """Ours (default: parts over parallel streams; and one stream) against one curl and
    against four curls at once on the file's quarters, in a rotating order each repeat."""
    src = work / "src.bin"
    pieces = split_file(src, 4)
    walls: dict[str, list[float]] = {"ours": [], "ours_1": [], "curl": [], "curl_4": []}
    rss: list[float] = []
    cpu: dict[str, list[float]] = {"ours": [], "ours_1": []}

    def ours(key: str, streams: int | None) -> None:
        r = _run_child("upload", proc, "uploaded.bin", src, streams)
        walls[key].append(r["seconds"])
        rss.append(r["peak_rss_mb"])
        cpu[key].append(r["cpu_seconds"])

    steps = [lambda: ours("ours", None),
             lambda: walls["curl"].append(_curl_upload(proc, src, "uploaded_curl.bin")),
             lambda: ours("ours_1", 1),
             lambda: walls["curl_4"].append(_curl_upload_parallel(proc, pieces, "up_curl4_"))]
    for i in range(repeats):
        for k in range(len(steps)):
            steps[(i + k) % len(steps)]()
    med = {k: statistics.median(v) for k, v in walls.items()}
    return {
        "size_mb": size_mb, "repeats": repeats,
        "seconds": {k: [round(x, 3) for x in v] for k, v in walls.items()},
        "ours_seconds": [round(x, 3) for x in walls["ours"]],
        "curl_seconds": [round(x, 3) for x in walls["curl"]],
        "ours_mb_s": round(size_mb / med["ours"], 1), "curl_mb_s": round(size_mb / med["curl"], 1),
        "ours_1_mb_s": round(size_mb / med["ours_1"], 1),
        "curl_4_mb_s": round(size_mb / med["curl_4"], 1),
        "ratio_vs_curl": round(med["curl"] / med["ours"], 3),
        "ratio_1_vs_curl": round(med["curl"] / med["ours_1"], 3),
        "ratio_vs_curl_4": round(med["curl_4"] / med["ours"], 3),
        "ours_cpu_s_per_gib": round(statistics.median(cpu["ours"]) * 1024 / size_mb, 2),
        "ours_1_cpu_s_per_gib": round(statistics.median(cpu["ours_1"]) * 1024 / size_mb, 2),
        "client_peak_rss_mb": round(max(rss), 1),
        "note": "ours hashes the file first (declared sha256), then sends it (in parts: each "
                "part hashed again as it is read); curl only sends",
    }


def run(size_mb: int = 1024, repeats: int = 3, base_dir: str | None = None,
        upload: bool = True, download: bool = True) -> dict[str, Any]:
    """Start a runtime on a temp root, measure, clean up; returns the figures."""
    work = Path(tempfile.mkdtemp(prefix="sc-bench-files-", dir=base_dir))
    proc = None
    try:
        root = work / "root"
        root.mkdir()
        make_file(root / "big.bin", size_mb)
        shutil.copyfile(root / "big.bin", work / "src.bin")
        proc = start_runtime(root)
        return {"download": bench_download(proc, size_mb, repeats, work) if download else None,
                "upload": bench_upload(proc, size_mb, repeats, work) if upload else None,
                "cpu_count": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()]}
    finally:
        if proc is not None:
            proc.stop()
        shutil.rmtree(work, ignore_errors=True)


def print_table(res: dict[str, Any]) -> None:
    d, u = res["download"], res["upload"]
    load = res.get("load_avg")
    first = d or u
    print(f"file transfer over loopback, {first['size_mb']} MB, median of {first['repeats']}")
    print(f"{'':28}{'ours MB/s':>12}{'curl MB/s':>12}{'ratio':>8}{'peak RSS MB':>13}")
    if d:
        print(f"{'download (sha256 verified)':28}{d['ours_mb_s']:>12}{d['curl_mb_s']:>12}"
              f"{d['ratio_vs_curl']:>8}{d['client_peak_rss_mb']:>13}")
        print(f"{'download, one stream':28}{d['ours_1_mb_s']:>12}{d['curl_mb_s']:>12}"
              f"{d['ratio_1_vs_curl']:>8}")
        print(f"{'curl + sha256sum + fsync':28}{d['curl_sha_fsync_mb_s']:>12}{'':>12}"
              f"{'':>8}  ours/that: {d['ratio_vs_curl_sha_fsync']}")
    if u:
        print(f"{'upload (sha256 declared)':28}{u['ours_mb_s']:>12}{u['curl_mb_s']:>12}"
              f"{u['ratio_vs_curl']:>8}{u['client_peak_rss_mb']:>13}")
        print(f"{'upload, one stream':28}{u['ours_1_mb_s']:>12}{u['curl_mb_s']:>12}"
              f"{u['ratio_1_vs_curl']:>8}")
        print(f"{'upload vs 4 curls at once':28}{u['ours_mb_s']:>12}{u['curl_4_mb_s']:>12}"
              f"{u['ratio_vs_curl_4']:>8}")
    print(f"load average at the end: {load}")
    if u:
        print(f"upload CPU s/GiB: ours {u['ours_cpu_s_per_gib']} (one stream "
              f"{u['ours_1_cpu_s_per_gib']})")
    if d:
        print(f"first download (runtime hashes once): {d['cold_mb_s']} MB/s")
        print(f"download CPU s/GiB: ours {d['ours_cpu_s_per_gib']} (user "
              f"{d['ours_user_s_per_gib']}; incl. sha256 and fsync), curl "
              f"{d['curl_cpu_s_per_gib']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-upload", action="store_true")
    ap.add_argument("--no-download", action="store_true")
    ap.add_argument("--dir", default=None, help="where the temp files go (default: $TMPDIR)")
    ap.add_argument("--child", choices=["download", "upload"], help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--remote", help=argparse.SUPPRESS)
    ap.add_argument("--local", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.url, args.remote, args.local)
        return
    res = run(args.size_mb, args.repeats, args.dir, upload=not args.no_upload,
              download=not args.no_download)
    print_table(res)
    out = HERE / "results" / "files.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
