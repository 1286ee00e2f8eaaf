"""The bridge over real stdio: big messages both ways; one journal write per quick call."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

from mcp import Client, StdioServerParameters
from support.bridge_helpers import bridge, make_config, text_of
from support.runtime_proc import RuntimeProc, subprocess_env

pytestmark = pytest.mark.anyio


def _params(tmp: Path, runtime: RuntimeProc, **extra: str) -> StdioServerParameters:
    env = subprocess_env({"COLAB_URL": runtime.url, "COLAB_TOKEN": runtime.secret,
                          "CHECKPOINT_DIR": str(tmp / "ckpt"), **extra})
    return StdioServerParameters(command=sys.executable, env=env, cwd=str(tmp),
                                 args=["-m", "smartcolab", "mcp", "--log-level", "WARNING"])


async def test_large_messages_both_ways(runtime: RuntimeProc, tmp_path: Path) -> None:
    # Far above asyncio's default 64 KiB line limit, in both directions.
    blob = "x" * 300_000
    code = f"s = {blob!r}\nprint(len(s)); print(s[:100_000])"
    with anyio.fail_after(60):
        async with Client(_params(tmp_path, runtime)) as client:
            result = await client.call_tool("run_code_quick", {"code": code, "session": "big"})
            again = await client.call_tool("run_code_quick", {"code": "print('still here')",
                                                              "session": "big"})
    assert not result.is_error, text_of(result)[:500]
    assert "300000" in text_of(result) and "x" * 10_000 in text_of(result)
    assert "still here" in text_of(again)


async def test_quick_call_journals_its_final_state_once(runtime: RuntimeProc, tmp_path: Path) -> None:
    async with bridge(make_config(tmp_path, runtime)) as (client, deps):
        writes: list[str] = []
        record_view = deps.journal.record_view

        def counting(view, **kw):  # type: ignore[no-untyped-def]
            writes.append(view.status)
            record_view(view, **kw)

        deps.journal.record_view = counting  # type: ignore[method-assign]
        with anyio.fail_after(30):
            done = await client.call_tool("run_code_quick", {"code": "print('journaled')"})
        assert not done.is_error
        job_id = done.structured_content["job_id"] if done.structured_content else ""
        entry = deps.journal.get(job_id)
    assert writes == ["succeeded"]
    assert entry is not None and entry.status == "succeeded" and "journaled" in entry.output_tail
