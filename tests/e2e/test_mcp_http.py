"""The Streamable HTTP transport: every request needs the bearer token."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client

from mcp import Client
from smartcolab.mcp.server import serve_http
from support.bridge_helpers import make_config, text_of
from support.runtime_proc import RuntimeProc

pytestmark = pytest.mark.anyio

TOKEN = "test-token-123"


async def test_http_transport_requires_the_bearer_token(runtime: RuntimeProc, tmp_path: Path) -> None:
    ports: list[int] = []
    bound = anyio.Event()

    def ready(port: int) -> None:
        ports.append(port)
        bound.set()

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: serve_http(make_config(tmp_path, runtime), host="127.0.0.1",
                                             port=0, token=TOKEN, ready=ready))
            await bound.wait()
            url = f"http://127.0.0.1:{ports[0]}/mcp"
            async with httpx2.AsyncClient() as anon:
                for headers in ({}, {"Authorization": "Bearer wrong"}):
                    refused = await anon.post(url, json={}, headers=headers)
                    assert refused.status_code == 401
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"},
                                          timeout=30) as http, \
                    Client(streamable_http_client(url, http_client=http)) as client:
                result = await client.call_tool("run_code_quick", {"code": "print('over http')"})
                assert not result.is_error, text_of(result)
                assert "over http" in text_of(result)
            tg.cancel_scope.cancel()
