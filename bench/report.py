"""Every benchmark of the project in one process, with its baseline, as one table.

Imports each bench module's functions (bench_runtime, bench_bridge, bench_files,
bench_chunked, bench_wan), runs them in turn, and prints a Markdown table: our figure, the
baseline measured in the same run, and their ratio, pair by pair.  Each module
reports medians over its repeats.  The header describes the machine.  Writes
bench/results/report.json and a PNG (latency distribution and throughput).

    python bench/report.py                     # the full run (about 8 minutes)
    python bench/report.py --quick             # small sizes: a smoke test
    python bench/report.py --only runtime,files --png docs/performance.png

A module that is missing or fails is reported as such: no row is invented.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "src"), str(ROOT / "tests")]

RESULTS = ROOT / "bench" / "results"
MODULES = ("runtime", "bridge", "files", "chunked", "local", "wan")
# Older name of the runtime module's key, still accepted by --only.
ALIASES = {"jobs": "runtime"}
Row = dict[str, Any]


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, OS, Python: the report's header."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 1e9, 1),
            "os": platform.platform(), "python": platform.python_version(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


# ---------------------------------------------------------------- runners
def run_runtime(quick: bool) -> dict[str, Any]:
    mod = importlib.import_module("bench_runtime")
    result: dict[str, Any] = mod.run(quick=quick)
    return result


def run_bridge(quick: bool) -> dict[str, Any]:
    mod = importlib.import_module("bench_bridge")
    repeats, cold = (10, 1) if quick else (40, 3)
    with tempfile.TemporaryDirectory(prefix="report-bridge-") as tmp:
        raw = mod.raw_kernel_roundtrip(repeats)
        through = anyio.run(mod.bridge_roundtrip, repeats, Path(tmp))
        cold_start = anyio.run(mod.cold_start, cold, Path(tmp))
    return {"raw": raw, "bridge": through, "cold_start": cold_start}


def run_files(quick: bool) -> dict[str, Any]:
    mod = importlib.import_module("bench_files")
    result: dict[str, Any] = mod.run(size_mb=32 if quick else 1024, repeats=1 if quick else 3)
    return result


def run_chunked(quick: bool) -> dict[str, Any]:
    mod = importlib.import_module("bench_chunked")
    result: dict[str, Any] = asyncio.run(mod.main_async(1 if quick else 3))
    return result


def run_local(quick: bool) -> dict[str, Any]:
    mod = importlib.import_module("bench_local")
    result: dict[str, Any] = mod.run(quick=quick)
    return result


# Set by main(): with bench_files in the same run, the WAN bench's loopback transfer is smaller
# (the 1 GiB loopback figure is already there) to keep the default run's length reasonable.
WAN_LOOPBACK_MB = {"size": 1024}


def run_wan(quick: bool) -> dict[str, Any]:
    mod = importlib.import_module("bench_wan")
    result: dict[str, Any] = mod.run(quick=quick, loopback_mb=WAN_LOOPBACK_MB["size"])
    return result


RUNNERS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "runtime": run_runtime, "bridge": run_bridge, "files": run_files, "chunked": run_chunked,
    "local": run_local, "wan": run_wan}


def collect(only: list[str], quick: bool, say: Callable[[str], None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in only:
        t0 = time.perf_counter()
        say(f"running bench_{name}{' (quick)' if quick else ''}…")
        try:
            out[name] = {"ok": True, "data": RUNNERS[name](quick)}
        except ModuleNotFoundError as exc:
            out[name] = {"ok": False, "error": f"bench module missing: {exc.name}"}
        except Exception as exc:  # one failing bench must not hide the others
            out[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc()[-3000:]}
        out[name]["seconds"] = round(time.perf_counter() - t0, 1)
    return out


# ---------------------------------------------------------------- rows
def _row(measure: str, ours: float, unit: str, baseline: float | None = None,
         baseline_name: str = "", better: str = "lower") -> Row:
    ratio = ours / baseline if baseline else None
    return {"measure": measure, "ours": ours, "unit": unit, "baseline": baseline,
            "baseline_name": baseline_name, "ratio": ratio, "better": better}


def rows_of(results: dict[str, Any]) -> tuple[list[Row], list[str]]:
    """The table's rows from whatever ran, and a note for each module that did not."""
    rows: list[Row] = []
    notes = [f"bench_{k}: {v['error']}" for k, v in results.items() if not v["ok"]]
    bridge = results.get("bridge", {}).get("data")
    jobs = results.get("runtime", {}).get("data")
    files = results.get("files", {}).get("data")
    chunked = results.get("chunked", {}).get("data")
    if bridge:
        raw = bridge["raw"]["median_ms"]
        http = bridge["bridge"]["http_layer"]["median_ms"]
        rows.append(_row("runtime round trip, 1+1 (signed POST /jobs?wait)", http, "ms", raw,
                         "raw jupyter_client execute"))
        rows.append(_row("bridge round trip, run_code_quick 1+1 over stdio", bridge["bridge"]["median_ms"],
                         "ms", raw, "raw jupyter_client execute"))
    if jobs:
        rtt = jobs["round_trip"]
        rows.append(_row("runtime round trip, 1+1 (bearer POST /jobs?wait)", rtt["api_median_ms"],
                         "ms", rtt["raw_median_ms"], "raw jupyter_client execute"))
        thr, seq = jobs["throughput"], jobs["sequential"]
        rows.append(_row(f"jobs/s, {thr['clients']} concurrent clients ({thr['jobs']} jobs)",
                         thr["jobs_per_s"], "jobs/s", 1000 / seq["median_ms"],
                         "1 client, sequential", better="higher"))
        one = jobs["throughput_one_session"]
        rows.append(_row(f"jobs/s, {one['clients']} clients on one session ({one['jobs']} pass jobs, "
                         f"lost {one['lost']}, duplicated {one['duplicated']})",
                         one["jobs_per_s"], "jobs/s", 1000 / seq["median_ms"],
                         "1 client, sequential", better="higher"))
        dl, grace = jobs["deadline"], jobs["kill_grace_s"]
        rows.append(_row("deadline to stop, Python loop", dl["python_loop"]["after_deadline_s"], "s",
                         None, "interrupt (SIGINT)"))
        rows.append(_row("deadline to stop, C loop (sum(range(10**12)))",
                         dl["c_loop"]["after_deadline_s"], "s", grace, "kill grace (restart after)"))
        big = jobs["big_output"]
        rows.append(_row(f"server RSS growth while a job prints {big['output_mb']} MB",
                         big["server_rss_growth_mb"], "MB", float(big["output_mb"]),
                         "output size"))
    if files:
        d, u = files["download"], files["upload"]
        if d:
            rows.append(_row(f"download {d['size_mb']} MB (sha256 verified)", d["ours_mb_s"],
                             "MB/s", d["curl_mb_s"], "curl, same endpoint", better="higher"))
        if d and "ours_1_mb_s" in d:
            rows.append(_row(f"download {d['size_mb']} MB, one stream", d["ours_1_mb_s"], "MB/s",
                             d["curl_mb_s"], "curl, same endpoint", better="higher"))
            rows.append(_row(f"download {d['size_mb']} MB (sha256 verified, fsynced)",
                             d["ours_mb_s"], "MB/s", d["curl_sha_fsync_mb_s"],
                             "curl, then sha256sum, then fsync", better="higher"))
        if u:
            rows.append(_row(f"upload {u['size_mb']} MB (sha256 declared)", u["ours_mb_s"],
                             "MB/s", u["curl_mb_s"], "curl, same endpoint", better="higher"))
        if u and "ours_1_mb_s" in u:
            rows.append(_row(f"upload {u['size_mb']} MB, one stream", u["ours_1_mb_s"],
                             "MB/s", u["curl_mb_s"], "curl, same endpoint", better="higher"))
            rows.append(_row(f"upload {u['size_mb']} MB (sha256 declared)", u["ours_mb_s"],
                             "MB/s", u["curl_4_mb_s"], "4 curls at once, a quarter each",
                             better="higher"))
    if chunked:
        rows.append(_row("chunked: overhead per batch", chunked["chunked"]["overhead_per_batch_ms_median"],
                         "ms", chunked["trivial_job_roundtrip"]["median_ms"], "a trivial job's round trip"))
    if bridge:
        rows.append(_row("cold start: `smartcolab mcp` to first result (no local daemon)",
                         bridge["cold_start"]["median_s"], "s", None, ""))
    local = results.get("local", {}).get("data") if results.get("local", {}).get("ok") else None
    if local:
        calls, memory = local["first_call"], local["memory"]
        rows.append(_row("local runtime: first call with a daemon running",
                         calls["warm_median_s"], "s", calls["cold_median_s"],
                         "first call, no daemon running"))
        rows.append(_row("local runtime: first call with no daemon running",
                         calls["cold_median_s"], "s", calls["bridge_alone_median_s"],
                         "bridge start alone (list_runtimes)"))
        rows.append(_row("local runtime: idle daemon RSS (no kernel)",
                         memory["daemon_no_kernel_mb"], "MB", None, ""))
        rows.append(_row("local runtime: idle daemon + one kernel RSS",
                         memory["daemon_plus_kernel_mb"], "MB", None, ""))
    wan = results.get("wan", {}).get("data")
    if wan:
        rows += wan_rows(wan)
        notes += [f"bench_wan {name}: {why}" for name, why in wan["skipped"].items()]
    return rows, notes


def _calls(per_call: dict[str, float] | None) -> str:
    if not per_call:
        return "no proxy: requests not counted"
    return (f"{per_call['http_requests']:.3g} HTTP req + {per_call['other_client_turns']:.3g} "
            f"other client turns, {per_call['new_connections']:.3g} new conn per call")


def wan_rows(wan: dict[str, Any]) -> list[Row]:
    """One group per profile; a shaped profile's baseline is the loopback figure of the same
    run plus the link's delay (one RTT for a call, one way for a printed line), so 1.00x
    means the link cost exactly one round trip; transfers are against curl through the
    same proxy, i.e. the link's capacity as one stream sees it."""
    rows: list[Row] = []
    home = wan["profiles"].get("loopback")
    for name, p in wan["profiles"].items():
        rtt, one_way = p["rtt_ms"], p["rtt_ms"] / 2
        tag = f"[wan {name}]"

        def base(key: str, add: float, what: str, name: str = name) -> tuple[float | None, str]:
            if name == "loopback" or home is None:
                return None, "the other profiles' baseline"
            return home[key]["median_ms"] + add, f"loopback + {what}"

        for key, label in (("http_1p1", "signed POST /jobs?wait 1+1"),
                           ("bridge_1p1", "run_code_quick 1+1 via stdio bridge, colab kind"),
                           ("jupyter_bridge_1p1", "run_code_quick 1+1 via stdio bridge, jupyter kind")):
            b, bname = base(key, rtt, f"1 RTT ({rtt:.0f} ms)")
            rows.append(_row(f"{tag} {label} ({_calls(p[key]['per_call'])})", p[key]["median_ms"],
                             "ms", b, bname))
        b, bname = base("print_line", one_way, f"one-way delay ({one_way:.0f} ms)")
        rows.append(_row(f"{tag} kernel print -> line in a get_job long-poll answer",
                         p["print_line"]["median_ms"], "ms", b, bname))
        t = p["transfer"]
        cap = f", link cap {p['nominal_mb_s']:g} MB/s per stream" if p["nominal_mb_s"] else ""
        if p.get("link_mb_s"):
            cap += f", {p['link_mb_s']:g} MB/s in all"
        req = t.get("requests") or {}
        n_down = (f"; {req['download']['http_requests']:.0f} HTTP req"
                  if req.get("download") else "")
        n_up = f"; {req['upload']['http_requests']:.0f} HTTP req" if req.get("upload") else ""
        n_curls = t.get("parallel_curls", 4)
        rows.append(_row(f"{tag} download {t['size_mb']} MiB, 10^6 B/s (sha256 verified{cap}{n_down})",
                         t["download_mb_s"], "MB/s", t["curl_download_mb_s"],
                         "curl through the same link", better="higher"))
        if "curl_download_n_mb_s" in t:
            rows.append(_row(f"{tag} download {t['size_mb']} MiB, {t['streams']} streams",
                             t["download_mb_s"], "MB/s", t["curl_download_n_mb_s"],
                             f"{n_curls} curl -r at once through the same link", better="higher"))
        if "download_1_mb_s" in t:
            rows.append(_row(f"{tag} download {t.get('single_mb', t['size_mb'])} MiB, one stream",
                             t["download_1_mb_s"],
                             "MB/s", t["curl_download_mb_s"], "curl through the same link",
                             better="higher"))
        if p.get("link_mb_s"):
            rows.append(_row(f"{tag} download {t['size_mb']} MiB, {t.get('streams', '?')} streams",
                             t["download_mb_s"], "MB/s", p["link_mb_s"],
                             "the link's total capacity", better="higher"))
        rows.append(_row(f"{tag} upload {t['size_mb']} MiB, 10^6 B/s (sha256 declared{cap}{n_up})",
                         t["upload_mb_s"], "MB/s", t["curl_upload_mb_s"],
                         "curl through the same link", better="higher"))
        if "upload_1_mb_s" in t:
            rows.append(_row(f"{tag} upload {t.get('single_mb', t['size_mb'])} MiB, one stream",
                             t["upload_1_mb_s"],
                             "MB/s", t["curl_upload_mb_s"], "curl through the same link",
                             better="higher"))
            rows.append(_row(f"{tag} upload {t['size_mb']} MiB, in parts", t["upload_mb_s"],
                             "MB/s", t.get("curl_upload_n_mb_s", t.get("curl_upload_4_mb_s")),
                             f"{n_curls} curls at once through the same link", better="higher"))
        if p.get("link_mb_s"):
            rows.append(_row(f"{tag} upload {t['size_mb']} MiB, in parts", t["upload_mb_s"],
                             "MB/s", p["link_mb_s"], "the link's total capacity",
                             better="higher"))
        c = p["chunked"]
        per = c.get("per_batch")
        n_c = f"; {per['http_requests']:.3g} HTTP req per batch" if per else ""
        rows.append(_row(f"{tag} chunked overhead per batch ({c['batches']} batches{n_c})",
                         c["overhead_per_batch_ms"], "ms", c["trivial_job_ms"],
                         "a trivial job's round trip, same link"))
    return rows


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def render_table(info: dict[str, Any], rows: list[Row], notes: list[str], quick: bool) -> str:
    lines = [f"smartcolab benchmarks{' (quick mode: small sizes)' if quick else ''} — "
             f"{info['cpu']}, {info['cores']} cores, {info['ram_gb']} GB RAM, {info['os']}, "
             f"Python {info['python']}, load {info['load_avg_at_start']}", "",
             "| measure | ours | baseline | ratio |", "| --- | ---: | --- | ---: |"]
    for r in rows:
        base = f"{_fmt(r['baseline'])} {r['unit']} ({r['baseline_name']})" if r["baseline"] else (
            r["baseline_name"] or "–")
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "–"
        lines.append(f"| {r['measure']} | {_fmt(r['ours'])} {r['unit']} | {base} | {ratio} |")
    lines += [f"\nnot measured: {n}" for n in notes]
    return "\n".join(lines)


# ---------------------------------------------------------------- plot
def plot(results: dict[str, Any], path: Path, title: str) -> Path | None:
    """Latency distribution (left) and throughput (right) as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    jobs = results.get("runtime", {}).get("data")
    files = results.get("files", {}).get("data")
    if not jobs and not files:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    if jobs:
        for label, samples in (("1 client, sequential", jobs["sequential"]["samples_ms"]),
                               (f"{jobs['throughput']['clients']} concurrent clients",
                                jobs["throughput"]["latency_samples_ms"])):
            xs = sorted(samples)
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            left.step(xs, ys, where="post", label=f"{label} (n={len(xs)})")
        left.set_xscale("log")
        left.set_xlabel("job latency, 1+1 submitted and finished (ms, log)")
        left.set_ylabel("fraction of jobs")
        left.set_title("latency distribution")
        left.grid(alpha=0.3)
        left.legend(loc="lower right")
    bars: list[tuple[str, float, str]] = []
    if jobs:
        bars += [("jobs/s\n1 client", 1000 / jobs["sequential"]["median_ms"], "tab:gray"),
                 (f"jobs/s\n{jobs['throughput']['clients']} clients",
                  jobs["throughput"]["jobs_per_s"], "tab:blue")]
    if files:
        d, u = files["download"], files["upload"]
        bars += [("download\nMB/s ours", d["ours_mb_s"], "tab:blue"),
                 ("download\nMB/s curl", d["curl_mb_s"], "tab:gray")]
        if u:
            bars += [("upload\nMB/s ours", u["ours_mb_s"], "tab:blue"),
                     ("upload\nMB/s curl", u["curl_mb_s"], "tab:gray")]
    right.bar([b[0] for b in bars], [b[1] for b in bars], color=[b[2] for b in bars])
    for i, b in enumerate(bars):
        right.annotate(f"{b[1]:,.0f}", (i, b[1]), ha="center", va="bottom", fontsize=8)
    right.set_title("throughput (blue: ours, gray: baseline)")
    right.tick_params(axis="x", labelsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    ap.add_argument("--only", default=",".join(MODULES), help=f"comma list of {', '.join(MODULES)}")
    ap.add_argument("--json", type=Path, default=RESULTS / "report.json")
    ap.add_argument("--png", type=Path, default=RESULTS / "report.png")
    args = ap.parse_args(argv)
    only = [ALIASES.get(m.strip(), m.strip()) for m in args.only.split(",") if m.strip()]
    unknown = [m for m in only if m not in RUNNERS]
    if unknown:
        ap.error(f"unknown bench module(s): {', '.join(unknown)}")
    if "files" in only:
        WAN_LOOPBACK_MB["size"] = 256
    info = machine()
    results = collect(only, args.quick, lambda s: print(s, file=sys.stderr, flush=True))
    rows, notes = rows_of(results)
    table = render_table(info, rows, notes, args.quick)
    print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": info, "quick": args.quick, "rows": rows,
                                     "notes": notes, "results": results}, indent=2, default=str))
    png = plot(results, args.png, f"{info['cpu']}, {info['cores']} cores, Python {info['python']}")
    print(f"\nJSON: {args.json}" + (f"\nplot: {png}" if png else ""), file=sys.stderr)
    return 0 if all(v["ok"] for v in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
