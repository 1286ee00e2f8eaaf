"""Honest waiting through the real stdio bridge (`python -m smartcolab mcp`) with the official
MCP client: a cancelled get_job (notifications/cancelled) leaves the job running, and what a
client was shown is not shown again after its bridge restarts."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from mcp import Client
from smartcolab.shared.protocol import TERMINAL_STATUSES
from support.bridge_helpers import stdio_params, text_of
from support.runtime_proc import RuntimeProc

pytestmark = pytest.mark.anyio


async def _until_over(client: Client, job_id: str) -> str:
    texts = []
    while True:
        result = await client.call_tool("get_job", {"job_id": job_id})
        texts.append(text_of(result))
        assert result.structured_content, texts[-1]
        if result.structured_content["status"] in TERMINAL_STATUSES:
            assert result.structured_content["status"] == "succeeded", texts[-1]
            return "\n".join(texts)


async def test_a_cancelled_get_job_leaves_the_job_running(runtime: RuntimeProc,
                                                          tmp_path: Path) -> None:
    code = ("import time\nfor i in range(25):\n    print('tick', i, flush=True)\n"
            "    time.sleep(0.2)\nprint('all done')")
    with anyio.fail_after(120):
        async with Client(stdio_params(tmp_path, runtime)) as client:
            await client.call_tool("run_code_quick", {"code": "1", "session": "stdiowait"})
            started = await client.call_tool("run_code_long", {
                "code": code, "session": "stdiowait", "background": True})
            assert started.structured_content, text_of(started)
            job_id = started.structured_content["job_id"]
            # The client gives up on the wait: the SDK sends notifications/cancelled.
            with anyio.move_on_after(2.5) as scope:
                await client.call_tool("get_job", {"job_id": job_id, "wait": 40})
            assert scope.cancelled_caught
            final = await _until_over(client, job_id)
    assert "all done" in final


async def test_shown_output_is_not_repeated_after_a_bridge_restart(runtime: RuntimeProc,
                                                                   tmp_path: Path) -> None:
    code = "import time\nprint('early-AAA', flush=True)\ntime.sleep(4)\nprint('late-BBB')"
    with anyio.fail_after(120):
        async with Client(stdio_params(tmp_path, runtime, "--wait-budget", "1.5")) as client:
            first = await client.call_tool("run_code_long", {"code": code, "session": "restart"})
            assert first.structured_content and first.structured_content["status"] == "running"
            assert "early-AAA" in text_of(first)
            job_id = first.structured_content["job_id"]
        # A new bridge process on the same checkpoint directory: the same client lease.
        async with Client(stdio_params(tmp_path, runtime)) as client:
            final = await _until_over(client, job_id)
    assert "late-BBB" in final and "early-AAA" not in final, final
