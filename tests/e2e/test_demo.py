"""`smartcolab demo` end to end: the real process, the real bridge, every step checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support.runtime_proc import subprocess_env

EXPECTED_STEPS = ["connect", "probe", "state across calls", "plot as an image",
                  "chunked with checkpoint", "verified download", "timeout enforced"]


@pytest.mark.slow
def test_demo_runs_every_step(tmp_path: Path) -> None:
    env = subprocess_env({"HOME": str(tmp_path / "home")})
    env.pop("COLAB_URL", None)
    proc = subprocess.run([sys.executable, "-m", "smartcolab", "demo", "--out",
                           str(tmp_path / "out"), "--json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=420)
    report = json.loads(proc.stdout)
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == EXPECTED_STEPS, proc.stderr[-2000:]
    for name, step in steps.items():
        if name == "chunked with checkpoint" and step["ok"] is None:
            assert "no run_chunked_operation tool" in step["detail"]  # before chunked lands
            continue
        assert step["ok"] is True, (name, step["detail"], proc.stderr[-2000:])
    assert proc.returncode == 0 and report["ok"]
    plot = tmp_path / "out" / "plot.png"
    assert plot.read_bytes().startswith(b"\x89PNG") and str(plot) in steps["plot as an image"]["detail"]
    data = tmp_path / "out" / "downloads" / "measurements.csv"
    assert data.read_text().splitlines()[0] == "i,x,y"
    assert "timed_out" in steps["timeout enforced"]["detail"]
    assert steps["timeout enforced"]["seconds"] < 15
    # The demo leaves nothing running and nothing in the working directory.
    assert {p.name for p in tmp_path.iterdir()} <= {"home", "out"}


def test_demo_human_output_names_each_step_once(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The human form, run in-process at 80 columns without --out: one line per step,
    files under ~/.smartcolab/demo (not the working directory), a runnable Next: hint."""
    from typer.testing import CliRunner

    from smartcolab.cli.app import app

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo"], env={"COLAB_URL": "", "COLUMNS": "80"})
    assert result.exit_code == 0, result.stdout[-3000:]
    for name in EXPECTED_STEPS:
        mine = [line for line in result.stdout.splitlines() if f" {name} " in line]
        assert len(mine) == 1 and mine[0].startswith(("✓", "-")), (name, result.stdout)
    assert "┃" not in result.stdout and "zlib" not in result.stdout
    assert "the runtime reports:" in result.stdout and "CPUs" in result.stdout
    assert (tmp_path / "home" / ".smartcolab" / "demo" / "plot.png").is_file()
    assert {p.name for p in tmp_path.iterdir()} == {"home"}
    hint = result.stdout[result.stdout.index("Next"):]
    command = hint.split(": ", 1)[1].split(" config claude-desktop")[0].replace("\n", "")
    assert Path(command).is_absolute() and Path(command).is_file(), hint
    assert "every step worked" in result.stdout
