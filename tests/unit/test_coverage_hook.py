"""Which processes the coverage hook (tests/support/coverage_hook) measures."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

HOOK = Path(__file__).resolve().parents[1] / "support" / "coverage_hook" / "sitecustomize.py"
REPO = HOOK.parents[3]
PY = sys.executable


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.delenv("SMARTCOLAB_COVERAGE_RC", raising=False)  # loading it starts nothing
    spec = importlib.util.spec_from_file_location("coverage_hook_under_test", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv", [
    [PY, "-m", "smartcolab", "serve"],
    [PY, "-X", "utf8", "-m", "smartcolab.cli.app"],
    [PY, "-c", "import smartcolab; print(1)"],
    [PY, str(Path(PY).parent / "smartcolab"), "mcp"],  # the console script
    [PY, str(REPO / "bench" / "bench_bridge.py")],
    # pytest-xdist's workers: execnet starts them with its bootstrap line.
    [PY, "-u", "-c", "import sys;exec(eval(sys.stdin.readline()))"],
])
def test_our_processes_and_xdist_workers_are_measured(hook: ModuleType, argv: list[str]) -> None:
    assert hook._ours(argv)


@pytest.mark.parametrize("argv", [
    [PY, "-m", "ipykernel_launcher", "-f", "kernel.json"],
    [PY, "-m", "jupyter_server"],
    [PY, "-c", "import sys; print(sys.version)"],
    [PY, "/usr/lib/python3/some_tool.py"],
])
def test_kernels_and_other_processes_are_not(hook: ModuleType, argv: list[str]) -> None:
    assert not hook._ours(argv)
