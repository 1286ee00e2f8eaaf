"""Parallel transfers against the tools doing the same with N streams, per stream count.

For each N in ``--streams`` and each direction in ``--ops``: ours (``transfer.download``:
N ranged streams, sha256, fsync; ``transfer.upload``: N parts over N connections, sha256
checked on the runtime) against N ``curl`` at once through the same proxy (downloads:
``curl -r`` on the file's N ranges; uploads: ``curl -T`` of the file's N pieces; no hash,
no fsync): the link's capacity as N streams of the tools see it on this machine, in the
same run.  The order rotates every repeat, so a loaded machine favours no one.

    python bench/bench_parallel.py [--size-mb 256] [--repeats 2] [--profile 150ms-20MBps]
                                   [--streams 4,6,8] [--ops download,upload]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "src"), str(HERE.parent / "tests")]

import bench_files  # noqa: E402
import bench_wan  # noqa: E402
from smartcolab.client.http.transfer import DEFAULT_STREAMS  # noqa: E402
from support.runtime_proc import RuntimeProc, start_runtime  # noqa: E402
from wan_proxy import PROFILES  # noqa: E402


def pieces_of(src: Path, n: int, work: Path) -> list[Path]:
    """``src`` cut into ``n`` files in a folder of their own (one per N: names never clash)."""
    folder = work / f"pieces-{n}"
    if not folder.exists():
        folder.mkdir()
        step = -(-src.stat().st_size // n)
        with open(src, "rb") as f:
            for i in range(n):
                (folder / f"p{i}").write_bytes(f.read(step))
    return [folder / f"p{i}" for i in range(n)]


def run(size_mb: int, repeats: int, profile_name: str, streams: list[int],
        ops: list[str]) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="sc-bench-par-"))
    (work / "root").mkdir()
    bench_files.make_file(work / "root" / "p.bin", size_mb)
    src = work / "src.bin"
    shutil.copyfile(work / "root" / "p.bin", src)
    size = size_mb * 1024 * 1024
    rt = start_runtime(work / "root")
    profile = PROFILES[profile_name]
    walls: dict[str, list[float]] = {}
    try:
        with bench_wan.proxied(rt.url, profile) as (url, _proxy):
            via = dataclasses.replace(rt, url=url)
            bench_files._run_child("download", via, "p.bin", work / "d.bin")  # runtime hashes once
            (work / "d.bin").unlink()
            steps = _steps(via, url, rt.secret, size, streams, ops, work, walls)
            for i in range(repeats):
                for k in range(len(steps)):
                    steps[(i + k) % len(steps)]()
    finally:
        rt.stop()
        shutil.rmtree(work, ignore_errors=True)
    mb = size / 1e6
    link = (profile.link_bytes_s or 0) / 1e6 or None
    table = {key: {"median_mb_s": round(mb / statistics.median(v), 1),
                   "each_mb_s": [round(mb / x, 1) for x in v],
                   "of_link": round(mb / statistics.median(v) / link, 3) if link else None}
             for key, v in walls.items()}
    return {"profile": profile_name, "size_mb": size_mb, "repeats": repeats,
            "default_streams": DEFAULT_STREAMS, "link_mb_s": link, "results": table,
            "load_avg": [round(x, 2) for x in os.getloadavg()]}


def _steps(via: RuntimeProc, url: str, secret: str, size: int, streams: list[int],
           ops: list[str], work: Path, walls: dict[str, list[float]]) -> list[Callable[[], None]]:
    steps: list[Callable[[], None]] = []

    def timed(key: str, fn: Callable[[], float]) -> Callable[[], None]:
        return lambda: walls.setdefault(key, []).append(fn())

    def down(n: int) -> float:
        r = bench_files._run_child("download", via, "p.bin", work / "d.bin", streams=n)
        (work / "d.bin").unlink()
        return float(r["seconds"])

    for n in streams:
        if "download" in ops:
            steps.append(timed(f"download ours {n}", lambda n=n: down(n)))  # type: ignore[misc]
            steps.append(timed(f"download curl x{n}",
                               lambda n=n: bench_wan.curl_ranges(url, secret, "p.bin", size, n, work)))  # type: ignore[misc]
        if "upload" in ops:
            pieces = pieces_of(work / "src.bin", n, work)
            steps.append(timed(f"upload ours {n}", lambda n=n: float(bench_files._run_child(  # type: ignore[misc]
                "upload", via, f"up{n}.bin", work / "src.bin", streams=n)["seconds"])))
            steps.append(timed(f"upload curl x{n}", lambda p=pieces, n=n:  # type: ignore[misc]
                               bench_files._curl_upload_parallel(via, p, f"upc{n}-")))
    return steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--profile", default="150ms-20MBps")
    ap.add_argument("--streams", default=str(DEFAULT_STREAMS), help="comma-separated counts")
    ap.add_argument("--ops", default="download", help="download,upload")
    args = ap.parse_args()
    res = run(args.size_mb, args.repeats, args.profile,
              [int(x) for x in args.streams.split(",") if x.strip()],
              [x.strip() for x in args.ops.split(",") if x.strip()])
    for key, row in res["results"].items():
        print(f"{key:<22}{row['median_mb_s']:>8} MB/s  of link {row['of_link']}  each {row['each_mb_s']}")
    print(json.dumps({k: v for k, v in res.items() if k != "results"}))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "parallel.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
