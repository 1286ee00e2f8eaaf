"""bench/report.py in quick mode: the table, the JSON and the PNG come out (no timings asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support.runtime_proc import PROCESS_TIMEOUT_S, subprocess_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_report_quick_smoke(tmp_path: Path) -> None:
    out_json, out_png = tmp_path / "report.json", tmp_path / "report.png"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "report.py"), "--quick",
                           "--only", "runtime", "--json", str(out_json), "--png", str(out_png)],
                          env=subprocess_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out_json.read_text())
    assert report["machine"]["cores"] >= 1 and report["machine"]["python"]
    measures = [r["measure"] for r in report["rows"]]
    assert any(m.startswith("jobs/s, 8 concurrent clients") for m in measures)
    assert any(m.startswith("deadline to stop, C loop") for m in measures)
    assert any(m.startswith("server RSS growth") for m in measures)
    for row in report["rows"]:
        assert row["ours"] > 0 or row["measure"].startswith("deadline"), row
        if row["baseline"]:
            assert row["ratio"] == row["ours"] / row["baseline"]
    runtime = report["results"]["runtime"]["data"]
    assert runtime["throughput"]["failures"] == 0
    assert runtime["throughput_one_session"]["lost"] == runtime["throughput_one_session"]["duplicated"] == 0
    assert any(m.startswith("runtime round trip, 1+1 (bearer") for m in measures)
    big = runtime["big_output"]
    assert big["status"] == "succeeded" and big["output_bytes"] == big["output_mb"] * 2**20
    deadline = runtime["deadline"]
    assert deadline["python_loop"]["status"] == deadline["c_loop"]["status"] == "timed_out"
    assert "| measure | ours | baseline | ratio |" in proc.stdout
    assert out_png.read_bytes().startswith(b"\x89PNG")


def test_report_refuses_an_unknown_module(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "report.py"), "--only", "nope"],
                          env=subprocess_env(), capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S)
    assert proc.returncode == 2 and "unknown bench module" in proc.stderr
