"""Malformed MCP input to the real stdio bridge: clear errors, and the bridge stays up.

Unknown tools, wrong argument types, missing arguments, unknown arguments and huge
arguments are sent to ``python -m smartcolab mcp`` over stdio; each gets an error
result or a JSON-RPC error that names the problem, and a valid call still works
after all of them in the same process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from mcp import Client
from support.bridge_helpers import stdio_params, text_of
from support.runtime_proc import RuntimeProc

pytestmark = pytest.mark.anyio
HUGE = "x" * 3_000_000  # over the runtime's 1,000,000-character code limit

MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    ("no_such_tool", {}, "no_such_tool"),
    ("run_code_quick", {}, "code"),
    ("run_code_quick", {"code": 42}, "code"),
    ("run_code_quick", {"code": ["print(1)"]}, "code"),
    ("run_code_quick", {"code": None}, "code"),
    ("run_code_quick", {"code": "1", "session": "../../etc"}, "session"),
    ("run_code_quick", {"code": "1", "session": {"a": 1}}, "session"),
    ("run_code_long", {"code": "1", "timeout": "soon"}, "timeout"),
    ("run_code_long", {"code": "1", "background": "maybe"}, "background"),
    ("run_code_long", {"code": "1", "download": "not-a-list"}, "download"),
    ("get_job", {"job_id": 7}, "job_id"),
    ("get_job", {"job_id": "j" * 10_000}, "job_id"),
    ("get_job_output", {"job_id": "x", "offset": -1}, "offset"),
    ("run_code_quick", {"code": HUGE}, "code"),
    ("connect_runtime", {"name": "x" * 100_000, "url": "http://127.0.0.1:1", "secret": "s"},
     "name"),
]


async def test_malformed_calls_get_clear_errors_and_the_bridge_stays_up(
        runtime: RuntimeProc, tmp_path: Path) -> None:
    answers: list[str] = []
    with anyio.fail_after(120):
        async with Client(stdio_params(tmp_path, runtime)) as client:
            for tool, args, needle in MALFORMED:
                try:
                    result = await client.call_tool(tool, args)
                except MCPError as exc:  # a protocol-level refusal is a clear error too
                    text = str(exc)
                else:
                    assert result.is_error, f"{tool} {str(args)[:80]} was accepted"
                    text = text_of(result)
                assert needle in text, f"{tool}: {text[:300]}"
                assert len(text) < 20_000, f"{tool}: the error echoes the huge input"
                answers.append(text)
            ok = await client.call_tool("run_code_quick", {"code": "print(6 * 7)"})
            assert not ok.is_error and "42" in text_of(ok)
    assert runtime.secret not in "".join(answers)
