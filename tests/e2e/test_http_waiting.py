"""Output shown once per MCP client over the Streamable HTTP transport: each MCP session
has its own cursor, so what one client was shown is still new to another.  MCP sessions
exist on the handshake-era wire (``mode="legacy"``, ``mcp-session-id``); the 2026 wire has
none, and the clients of one HTTP bridge then share one cursor (docs/bridge.md)."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client

from mcp import Client
from smartcolab.mcp.server import serve_http
from smartcolab.shared.protocol import TERMINAL_STATUSES
from support.bridge_helpers import make_config, text_of
from support.runtime_proc import RuntimeProc

pytestmark = pytest.mark.anyio

TOKEN = "test-token-waiting-1"


async def test_each_http_session_has_its_own_cursor(runtime: RuntimeProc, tmp_path: Path) -> None:
    ports: list[int] = []
    bound = anyio.Event()

    def ready(port: int) -> None:
        ports.append(port)
        bound.set()

    code = "import time\nprint('early-AAA', flush=True)\ntime.sleep(3)\nprint('late-BBB')"
    config = make_config(tmp_path, runtime, wait_budget_s=1.5, progress_interval_s=0.5)
    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: serve_http(config, host="127.0.0.1", port=0, token=TOKEN,
                                             ready=ready))
            await bound.wait()
            url = f"http://127.0.0.1:{ports[0]}/mcp"
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"},
                                          timeout=30) as http, \
                    Client(streamable_http_client(url, http_client=http), mode="legacy") as one, \
                    Client(streamable_http_client(url, http_client=http), mode="legacy") as two:
                first = await one.call_tool("run_code_long", {"code": code, "session": "http"})
                assert first.structured_content, text_of(first)
                assert "early-AAA" in text_of(first)
                job_id = first.structured_content["job_id"]
                other = await two.call_tool("get_job", {"job_id": job_id, "wait": 0})
                texts = []
                while True:
                    result = await one.call_tool("get_job", {"job_id": job_id})
                    texts.append(text_of(result))
                    assert result.structured_content
                    if result.structured_content["status"] in TERMINAL_STATUSES:
                        break
            tg.cancel_scope.cancel()
    assert "early-AAA" in text_of(other)  # new to the second client
    assert "late-BBB" in texts[-1] and not any("early-AAA" in t for t in texts), texts
