"""The chunked-operation MCP tools: in-process bridge, and a real stdio bridge killed mid-run."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp import Client, StdioServerParameters
from support.bridge_helpers import bridge, make_config, text_of
from support.runtime_proc import RuntimeProc, subprocess_env

pytestmark = pytest.mark.anyio


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_tools_listed_with_annotations(runtime: RuntimeProc, tmp_path: Path) -> None:
    async with bridge(make_config(tmp_path, runtime)) as (client, _):
        tools = {t.name: t for t in (await client.list_tools()).tools}
    for name in ("run_chunked_operation", "get_checkpoint", "list_checkpoints",
                 "delete_checkpoint"):
        assert tools[name].description and len(tools[name].description) > 60
        assert tools[name].annotations is not None
    assert tools["get_checkpoint"].annotations.read_only_hint is True  # type: ignore[union-attr]
    # destructive is MCP's default for a tool that is not read-only: left out
    run = tools["run_chunked_operation"].annotations
    assert run is not None and run.read_only_hint is False and run.destructive_hint is not False


async def test_run_resume_list_delete_through_the_tools(runtime: RuntimeProc,
                                                        tmp_path: Path) -> None:
    v = uuid.uuid4().hex[:6]
    name = uniq("tool")
    args: dict[str, Any] = {
        "checkpoint_name": name, "n_iterations": 40, "batch_size": 8,
        "setup_code": f"sq_{v} = {{}}",
        "loop_code": f"""
            if i % 2:
                continue   # odd indices store nothing
            if i == 26 and not globals().get('ok_{v}'):
                raise RuntimeError('twenty-six')
            sq_{v}[i] = i * i
        """,
        "collect": f"len(sq_{v})",
    }
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with bridge(make_config(tmp_path, runtime)) as (client, _):
        with anyio.fail_after(60):
            failed = await client.call_tool("run_chunked_operation", args,
                                            progress_callback=on_progress)
        assert failed.is_error and failed.structured_content is not None
        sc = failed.structured_content
        assert (sc["status"], sc["completed"], sc["error"]["failed_index"]) == ("failed", 24, 26)
        assert "twenty-six" in text_of(failed) and "at index 26" in text_of(failed)
        assert seen == [8, 16, 24]
        with anyio.fail_after(30):
            await client.call_tool("run_code_quick", {"code": f"ok_{v} = True"})
            done = await client.call_tool("run_chunked_operation", args)
        assert not done.is_error, text_of(done)
        assert done.structured_content is not None
        assert done.structured_content["status"] == "done"
        assert done.structured_content["completed"] == 40
        got = await client.call_tool("get_checkpoint", {"name": name, "values_limit": 100})
        assert got.structured_content is not None
        values = got.structured_content["values"]
        assert [x["value"] for x in values] == [i // 2 + 1 for i in range(40)]
        changed = await client.call_tool("run_chunked_operation", {**args, "batch_size": 5})
        assert changed.is_error and "restart=true" in text_of(changed)
        listed = await client.call_tool("list_checkpoints", {})
        assert listed.structured_content is not None
        assert [c["name"] for c in listed.structured_content["checkpoints"]] == [name]
        deleted = await client.call_tool("delete_checkpoint", {"name": name})
        assert deleted.structured_content == {"checkpoint": name, "deleted": True}
        missing = await client.call_tool("get_checkpoint", {"name": name})
        assert missing.is_error and "no checkpoint named" in text_of(missing)


async def test_syntax_error_reported_with_line_and_nothing_recorded(runtime: RuntimeProc,
                                                                    tmp_path: Path) -> None:
    async with bridge(make_config(tmp_path, runtime)) as (client, _):
        bad = await client.call_tool("run_chunked_operation", {
            "checkpoint_name": "syn", "n_iterations": 5, "batch_size": 2,
            "loop_code": "x = 1\nfor j in range(3)\n    x += j"})
        assert bad.is_error
        assert "invalid_input" in text_of(bad) and "line 2" in text_of(bad)
        listed = await client.call_tool("list_checkpoints", {})
        assert listed.structured_content == {"checkpoints": []}
        zero = await client.call_tool("run_chunked_operation", {
            "checkpoint_name": "zero", "n_iterations": 0, "loop_code": "pass"})
        assert not zero.is_error and zero.structured_content is not None
        assert zero.structured_content["status"] == "done"


async def test_wait_budget_returns_running_then_get_checkpoint_follows(
        runtime: RuntimeProc, tmp_path: Path) -> None:
    name = uniq("slow")
    async with bridge(make_config(tmp_path, runtime)) as (client, _):
        with anyio.fail_after(60):
            first = await client.call_tool("run_chunked_operation", {
                "checkpoint_name": name, "n_iterations": 12, "batch_size": 2,
                "loop_code": "import time\ntime.sleep(0.1)", "wait": 0.3})
            assert first.structured_content is not None
            assert first.structured_content["status"] == "running", text_of(first)
            assert "get_checkpoint" in first.structured_content["next"]
            again = await client.call_tool("run_chunked_operation", {
                "checkpoint_name": name, "n_iterations": 12, "batch_size": 2,
                "loop_code": "import time\ntime.sleep(0.1)", "wait": 0})
            assert "already running" in text_of(again)
            final = await client.call_tool("get_checkpoint", {"name": name, "wait": 30})
        assert final.structured_content is not None
        assert (final.structured_content["status"], final.structured_content["completed"]) == (
            "done", 12)


async def test_real_bridge_sigkilled_mid_run_resumes_exactly(runtime: RuntimeProc,
                                                             tmp_path: Path) -> None:
    """The bridge dies while a batch runs in the kernel; the next bridge uses that batch's
    result instead of running it again, and every index runs exactly once.

    Index 20 waits for a gate file, so the kill surely lands while the batch 18-23 runs
    (waiting for a count of lines raced the batch's end: a kill between recording one
    batch and submitting the next is a different case, "never reached the runtime").
    """
    counter = f"tool-runs-{uuid.uuid4().hex[:8]}.txt"
    gate = runtime.root / f"{counter}.go"
    args = {"checkpoint_name": "killme", "n_iterations": 60, "batch_size": 6,
            "loop_code": f"with open({counter!r}, 'a') as f:\n    f.write(f'{{i}}\\n')\n"
                         "import os, time\n"
                         f"while i == 20 and not os.path.exists({str(gate)!r}):\n"
                         "    time.sleep(0.01)", "wait": 0.2}
    env = subprocess_env({"CHECKPOINT_DIR": str(tmp_path / "ckpt"), "COLAB_URL": runtime.url,
                          "COLAB_TOKEN": runtime.secret})
    params = StdioServerParameters(command=sys.executable, env=env, cwd=str(tmp_path),
                                   args=["-m", "smartcolab", "mcp", "--log-level", "WARNING"])
    db = tmp_path / "ckpt" / "checkpoints.sqlite3"
    count_file = runtime.root / counter
    try:
        with anyio.fail_after(60):
            async with Client(params) as client:
                first = await client.call_tool("run_chunked_operation", args)
                assert first.structured_content is not None
                assert first.structured_content["status"] == "running", text_of(first)
                for _ in range(3000):  # until the kernel waits at index 20
                    if count_file.exists() and "20" in count_file.read_text().split():
                        break
                    await anyio.sleep(0.02)
                with sqlite3.connect(db) as conn:
                    completed, owner, pending = conn.execute(
                        "SELECT completed, owner, pending_start FROM checkpoints").fetchone()
                assert (completed, pending) == (18, 18)  # batch 18-23 runs, unrecorded
                os.kill(int(owner.rpartition(":")[2]), signal.SIGKILL)
        gate.touch()  # the orphaned batch finishes while no bridge follows it
        with anyio.fail_after(60):
            async with Client(params) as client:
                listed = await client.call_tool("get_checkpoint", {"name": "killme"})
                assert listed.structured_content is not None
                assert listed.structured_content["interrupted"] is True
                done = await client.call_tool("run_chunked_operation", {**args, "wait": 40})
    finally:
        gate.touch()  # never leave the shared runtime's kernel waiting
    assert done.structured_content is not None
    assert done.structured_content["status"] == "done", text_of(done)
    assert any("not run again" in n for n in done.structured_content["notes"]), text_of(done)
    assert count_file.read_text().split() == [str(i) for i in range(60)]
