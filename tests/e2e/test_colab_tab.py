"""The colab-tab kind end to end: the MCP tools (in-memory client) on a fake Colab page that
runs its cells in a real kernel, through our relay's real WebSocket.

connect_runtime opens the relay and answers with the link; the fake page connects with
the token and port of that link; then run_code_quick / run_code_long / get_job /
cancel_job / list_jobs work with our job semantics (a job cell starts a kernel thread,
control cells follow it, the kernel's agent enforces the deadline).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
from mcp.types import CallToolResult

from mcp import Client
from smartcolab.client.registry import RuntimeSpec
from smartcolab.mcp.deps import BridgeDeps, BridgeSettings
from smartcolab.mcp.server import BridgeConfig
from support.bridge_helpers import bridge, text_of
from support.fake_colab_page import FakeColabPage

pytestmark = pytest.mark.anyio


def tab_config(tmp: Path, *names: str, wait_budget_s: float = 20.0) -> BridgeConfig:
    return BridgeConfig(
        settings=BridgeSettings(save_dir=tmp / "saved", checkpoint_dir=tmp / "ckpt",
                                wait_budget_s=wait_budget_s, progress_interval_s=0.2),
        runtimes=[RuntimeSpec(n, "https://colab.google.com", kind="colab-tab") for n in names],
        default_runtime=names[0], embedded=False, open_browser=False)


async def call(client: Client, tool: str, args: dict[str, Any],
               limit: float = 120) -> CallToolResult:
    with anyio.fail_after(limit):
        return await client.call_tool(tool, args)


def port_and_token(link: str) -> tuple[int, str]:
    """The relay's port and token, as the real page reads them from its URL fragment."""
    fragment = parse_qs(urlsplit(link).fragment)
    return int(fragment["mcpProxyPort"][0]), fragment["mcpProxyToken"][0]


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content


@asynccontextmanager
async def open_tab(client: Client, name: str) -> AsyncIterator[FakeColabPage]:
    """connect_runtime (not connected yet: the link), then the fake page connects."""
    first = structured(await call(client, "connect_runtime", {"name": name, "wait": 0.2,
                                                              "kind": "colab-tab"}))
    assert first["connected"] is False
    assert first["link"].startswith("https://colab.google.com/notebooks/empty.ipynb#")
    port, token = port_and_token(first["link"])
    async with FakeColabPage(port, token) as page:
        again = structured(await call(client, "connect_runtime", {"name": name, "wait": 60,
                                                                  "kind": "colab-tab"}))
        assert again["connected"] is True and again["link"] == first["link"]
        yield page


@pytest.fixture
async def tab(tmp_path: Path) -> AsyncIterator[tuple[Client, BridgeDeps, FakeColabPage]]:
    async with bridge(tab_config(tmp_path, "tab1", wait_budget_s=60)) as (client, deps), \
            open_tab(client, "tab1") as page:
        yield client, deps, page


async def test_quick_code_runs_in_a_visible_cell_and_returns_its_output(
        tab: tuple[Client, BridgeDeps, FakeColabPage]) -> None:
    client, _, page = tab
    result = structured(await call(client, "run_code_quick",
                                   {"code": "x = 20\nprint('hello from the tab')\nx * 2 + 2"}))
    assert result["status"] == "succeeded", result
    assert "hello from the tab" in text_of(await call(client, "get_job",
                                                      {"job_id": result["job_id"]}))
    sources = [c.source for c in page.cells]
    job_cells = [s for s in sources if s.startswith("%%smartcolab_job " + result["job_id"])]
    assert job_cells and job_cells[0].endswith("x = 20\nprint('hello from the tab')\nx * 2 + 2")
    assert sources[-1].startswith("# smartcolab control cell")
    assert sum(s.startswith("# smartcolab setup") for s in sources) == 1
    variables = await call(client, "list_colab_variables", {})
    assert "x: int" in text_of(variables)


async def test_a_cell_that_never_ends_is_stopped_by_our_deadline(
        tab: tuple[Client, BridgeDeps, FakeColabPage]) -> None:
    client, _, _ = tab
    stopped = await call(client, "run_code_long", {
        "code": "import time\nprint('working')\nwhile True:\n    time.sleep(0.05)",
        "timeout": 2})
    assert stopped.is_error and stopped.structured_content is not None  # a failed job
    assert stopped.structured_content["status"] == "timed_out"
    assert "interrupted at its 2 s deadline" in text_of(stopped)
    assert "working" in text_of(stopped)
    # The kernel and its state are kept: the next job runs in it.
    after = structured(await call(client, "run_code_quick", {"code": "print('still here')"}))
    assert after["status"] == "succeeded"
