"""Parallel download on the capped WAN profile against the tools doing the same with N streams.

Ours (``transfer.download``: N ranged streams, sha256, fsync) against N ``curl -r`` ranges in
parallel through the same proxy (no hash, no fsync): the link's capacity as N streams of
the tools see it on this machine, in the same run.

    python bench/bench_parallel.py [--size-mb 256] [--repeats 2] [--profile 150ms-20MBps]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "src"), str(HERE.parent / "tests")]

import bench_files  # noqa: E402
import bench_wan  # noqa: E402
from smartcolab.client.http.transfer import DEFAULT_STREAMS  # noqa: E402
from support.runtime_proc import start_runtime  # noqa: E402
from wan_proxy import PROFILES  # noqa: E402


def curl_ranges(url: str, secret: str, size: int, n: int, work: Path) -> float:
    step = -(-size // n)
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["curl", "-sS", "-f", "-o", str(work / f"c{i}"), "-r",
                               f"{i * step}-{min(size, (i + 1) * step) - 1}", "-H",
                               f"Authorization: Bearer {secret}",
                               f"{url}/files/content?path=p.bin"]) for i in range(n)]
    for p in procs:
        p.wait(1800)
    wall = time.perf_counter() - t0
    for i in range(n):
        (work / f"c{i}").unlink()
    return wall


def run(size_mb: int, repeats: int, profile_name: str) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="sc-bench-par-"))
    (work / "root").mkdir()
    bench_files.make_file(work / "root" / "p.bin", size_mb)
    size = size_mb * 1024 * 1024
    rt = start_runtime(work / "root")
    profile = PROFILES[profile_name]
    try:
        with bench_wan.proxied(rt.url, profile) as (url, _proxy):
            via = dataclasses.replace(rt, url=url)
            bench_files._run_child("download", via, "p.bin", work / "d.bin")  # runtime hashes once
            (work / "d.bin").unlink()
            curl, ours = [], []
            for _ in range(repeats):
                curl.append(curl_ranges(url, rt.secret, size, DEFAULT_STREAMS, work))
                ours.append(bench_files._run_child("download", via, "p.bin", work / "d.bin")["seconds"])
                (work / "d.bin").unlink()
    finally:
        rt.stop()
        shutil.rmtree(work, ignore_errors=True)
    mb = size / 1e6
    return {"profile": profile_name, "size_mb": size_mb, "streams": DEFAULT_STREAMS,
            "link_mb_s": (profile.link_bytes_s or 0) / 1e6 or None,
            "ours_mb_s": [round(mb / x, 1) for x in ours],
            "curl_ranges_mb_s": [round(mb / x, 1) for x in curl],
            "load_avg": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--profile", default="150ms-20MBps")
    args = ap.parse_args()
    res = run(args.size_mb, args.repeats, args.profile)
    print(json.dumps(res))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "parallel.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
