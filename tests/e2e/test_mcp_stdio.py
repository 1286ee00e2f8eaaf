"""The real thing: `python -m smartcolab mcp` as a stdio subprocess, remote and embedded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import httpx2
import pytest

from mcp import Client
from support.bridge_helpers import stdio_params, text_of
from support.daemons import stop_daemons_under
from support.runtime_proc import RuntimeProc, subprocess_env

pytestmark = pytest.mark.anyio


async def test_stdio_bridge_runs_code_on_a_remote_runtime(runtime: RuntimeProc, tmp_path: Path) -> None:
    params = stdio_params(tmp_path, runtime)
    with anyio.fail_after(240):
        async with Client(params) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"run_code_quick", "get_job", "connect_runtime"} <= names
            result = await client.call_tool("run_code_quick", {"code": "print(6 * 7)"})
            assert not result.is_error, text_of(result)
            assert "42" in text_of(result)
            runtimes = await client.call_tool("list_runtimes", {})
            assert runtimes.structured_content is not None
            assert runtimes.structured_content["default"] == "colab"


@pytest.mark.slow
async def test_local_runtime_outlives_the_bridge_until_local_stop(tmp_path: Path) -> None:
    params = stdio_params(tmp_path, None, env={"SMARTCOLAB_RUNTIMES": str(tmp_path / "none.toml")})
    cli_env = subprocess_env({"CHECKPOINT_DIR": str(tmp_path / "ckpt")})
    try:
        with anyio.fail_after(120):
            async with Client(params) as client:
                result = await client.call_tool("run_code_quick",
                                                {"code": "import os; print(os.getcwd())"})
                assert not result.is_error, text_of(result)
                assert "workspace" in text_of(result)
                conn = await client.call_tool("check_colab_connection", {})
                assert not conn.is_error, text_of(conn)
                assert conn.structured_content is not None
                url = conn.structured_content["url"]
                assert url.startswith("http://127.0.0.1:")
            # The bridge has exited: the local runtime keeps serving, for the next one.
            assert httpx2.get(f"{url}/health", timeout=5).status_code == 200
            status = await anyio.run_process(
                [sys.executable, "-m", "smartcolab", "local", "status", "--json"], env=cli_env)
            [daemon] = json.loads(status.stdout)["daemons"]
            assert daemon["url"] == url and daemon["running"] and daemon["sessions"] == ["main"]
            assert daemon["jobs"] == {"succeeded": 1} and daemon["idle_s"] >= 0
            assert b"secret" not in status.stdout
            stop = await anyio.run_process([sys.executable, "-m", "smartcolab", "local", "stop"],
                                           env=cli_env)
            assert b"stopped 1" in stop.stdout, stop.stdout + stop.stderr
            with pytest.raises(httpx2.TransportError):
                httpx2.get(f"{url}/health", timeout=2)
    finally:
        stop_daemons_under(tmp_path)
