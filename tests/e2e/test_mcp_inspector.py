"""An MCP client nobody here wrote: the MCP Inspector CLI (pinned in package.json)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.runtime_proc import PROCESS_TIMEOUT_S, SRC, RuntimeProc

REPO = SRC.parent
INSPECTOR = REPO / "node_modules" / ".bin" / "mcp-inspector"

pytestmark = pytest.mark.skipif(
    not INSPECTOR.exists() or shutil.which("node") is None,
    reason="MCP Inspector not installed: run `npm ci` (scripts/test.sh does)")


def inspector(tmp: Path, runtime: RuntimeProc, *method_args: str) -> dict[str, object]:
    # The Inspector passes the server only the environment given with -e.
    env_args = ["-e", f"PYTHONPATH={SRC}", "-e", f"CHECKPOINT_DIR={tmp / 'ckpt'}",
                "-e", f"LOCAL_SAVE_DIR={tmp / 'saved'}", "-e", f"COLAB_URL={runtime.url}",
                "-e", f"COLAB_TOKEN={runtime.secret}"]
    # A loaded machine can take longer than the default 15 s to start the bridge.
    cmd = [str(INSPECTOR), "--cli", "--format", "json", "-q", "--connect-timeout", "120000",
           *env_args, *method_args,
           "--", sys.executable, "-m", "smartcolab", "mcp", "--log-level", "WARNING"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S, cwd=tmp)
    assert done.returncode == 0, done.stderr + done.stdout
    out: dict[str, object] = json.loads(done.stdout)
    return out


def test_inspector_lists_tools(runtime: RuntimeProc, tmp_path: Path) -> None:
    out = inspector(tmp_path, runtime, "--method", "tools/list")
    tools = out["result"]["tools"]  # type: ignore[index]
    names = {t["name"] for t in tools}
    assert {"run_code_quick", "run_code_long", "get_job", "list_runtimes"} <= names


def test_inspector_calls_run_code_quick(runtime: RuntimeProc, tmp_path: Path) -> None:
    out = inspector(tmp_path, runtime, "--method", "tools/call", "--tool-name", "run_code_quick",
                    "--tool-args-json", json.dumps({"code": "x = 20\nprint(x + 22)"}))
    result = out["result"]
    assert result["isError"] is False, result  # type: ignore[index]
    assert "42" in result["content"][0]["text"]  # type: ignore[index]
