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
    probe = structured(await call(client, "probe_colab_environment", {}))
    assert probe["cpu_count"] >= 1 and probe["epoch"].startswith("tab-")
    checked = structured(await call(client, "check_colab_connection", {}))
    assert checked["authenticated"] is True and checked["epoch"] == probe["epoch"]


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


WAITS_FOR_GO = ("import time\nfor i in range(3):\n    print('step', i)\n"
                "while not go:\n    time.sleep(0.05)\nprint('done')")


async def test_a_background_job_is_followed_while_it_runs_and_cancelled(
        tab: tuple[Client, BridgeDeps, FakeColabPage]) -> None:
    client, _, _ = tab
    assert structured(await call(client, "run_code_quick", {"code": "go = False"}))[
        "status"] == "succeeded"
    started = structured(await call(client, "run_code_long", {"code": WAITS_FOR_GO,
                                                              "background": True}))
    job_id = started["job_id"]
    assert started["status"] in ("queued", "running")
    # Its output is followed while it runs: the job waits for a flag nobody sets yet.
    seen = ""
    with anyio.fail_after(60):
        while "step 2" not in seen:
            got = structured(await call(client, "get_job", {"job_id": job_id, "wait": 2}))
            assert got["status"] == "running"
            seen += text_of(await call(client, "get_job", {"job_id": job_id, "wait": 0,
                                                           "from_start": True}))
    # The session is busy: quick code is refused at once, naming the job.
    busy = await call(client, "run_code_quick", {"code": "print('no')"})
    assert busy.is_error and busy.structured_content is not None
    assert busy.structured_content["status"] == "session_busy"
    assert busy.structured_content["running_job"] == job_id
    listed = text_of(await call(client, "list_jobs", {}))
    assert job_id in listed
    stopped = await call(client, "cancel_job", {"job_id": job_id})
    assert stopped.structured_content is not None
    assert stopped.structured_content["status"] == "cancelled", text_of(stopped)
    assert "done" not in text_of(stopped)


async def test_a_page_reload_mid_job_leaves_the_job_running_and_followed(
        tab: tuple[Client, BridgeDeps, FakeColabPage]) -> None:
    client, _, page = tab
    started = structured(await call(client, "run_code_long", {
        "code": "import time\nprint('before')\nfor _ in range(60):\n    time.sleep(0.05)\n"
                "print('after')", "background": True}))
    job_id = started["job_id"]
    await page.reload()  # a new socket, a new MCP session; the kernel and its thread go on
    assert page.connections == 2
    got = structured(await call(client, "get_job", {"job_id": job_id, "wait": 0}))
    assert got["status"] in ("running", "succeeded")
    await page.reload()
    done = structured(await call(client, "get_job", {"job_id": job_id, "wait": 60}))
    assert done["status"] == "succeeded"
    whole = text_of(await call(client, "get_job_output", {"job_id": job_id}))
    assert "before" in whole and "after" in whole
    assert page.connections == 3
    assert sum(c.source.startswith("# smartcolab control cell") for c in page.cells) == 1


async def test_a_closed_tab_gives_the_link_to_reopen(tmp_path: Path) -> None:
    async with bridge(tab_config(tmp_path, "tab1", wait_budget_s=60)) as (client, deps):
        backend = (await deps.registry.client("tab1"))[1]
        backend.reconnect_s = 0.5  # type: ignore[attr-defined]
        async with open_tab(client, "tab1") as page:
            assert structured(await call(client, "run_code_quick", {"code": "1"}))[
                "status"] == "succeeded"
            await page.close()
            gone = await call(client, "run_code_quick", {"code": "2"})
            assert gone.is_error
            message = text_of(gone)
            assert "closed or is reloading" in message
            assert "https://colab.google.com/notebooks/empty.ipynb#mcpProxyToken=" in message


async def test_two_tabs_are_two_runtimes(tmp_path: Path) -> None:
    async with bridge(tab_config(tmp_path, "left", "right", wait_budget_s=60)) as (client, _), \
            open_tab(client, "left") as left, open_tab(client, "right") as right:
        a = structured(await call(client, "run_code_quick",
                                  {"code": "import os\nwho = 'left'\nos.getpid()",
                                   "runtime": "left"}))
        b = structured(await call(client, "run_code_quick",
                                  {"code": "import os\nwho = 'right'\nos.getpid()",
                                   "runtime": "right"}))
        assert a["status"] == b["status"] == "succeeded"
        assert "= 'left'" in text_of(await call(
            client, "list_colab_variables", {"runtime": "left"}))
        assert "= 'right'" in text_of(await call(
            client, "list_colab_variables", {"runtime": "right"}))
        assert any(c.source.startswith("%%smartcolab_job " + a["job_id"]) for c in left.cells)
        assert not any(a["job_id"] in c.source for c in right.cells)


async def test_small_files_go_both_ways_and_big_ones_get_a_plain_message(
        tab: tuple[Client, BridgeDeps, FakeColabPage]) -> None:
    client, deps, page = tab
    payload = bytes(range(256)) * 3000  # 768,000 bytes: two chunks each way
    (deps.settings.save_dir / "data.bin").parent.mkdir(parents=True, exist_ok=True)
    (deps.settings.save_dir / "data.bin").write_bytes(payload)
    up = structured(await call(client, "upload_to_colab", {"local_path": "data.bin",
                                                            "remote_path": "in/data.bin"}))
    assert up["size"] == len(payload)
    assert (page.kernel_dir / "in" / "data.bin").read_bytes() == payload
    listed = text_of(await call(client, "list_colab_files", {"path": "in"}))
    assert "data.bin" in listed
    down = structured(await call(client, "download_from_colab", {"path": "in/data.bin",
                                                                 "local_name": "back.bin"}))
    assert await anyio.Path(down["path"]).read_bytes() == payload
    (page.kernel_dir / "big.bin").write_bytes(b"\0" * (8 * 1024 * 1024 + 1))
    big = await call(client, "download_from_colab", {"path": "big.bin"})
    assert big.is_error
    assert "Google Drive" in text_of(big) and "kind 'colab'" in text_of(big)
    assert not (deps.settings.save_dir / "big.bin").exists()


async def test_waiting_for_the_tab_reports_progress_with_the_link(tmp_path: Path) -> None:
    notes: list[str] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        notes.append(message or "")

    async with bridge(tab_config(tmp_path, "tab1", wait_budget_s=60)) as (client, _):
        with anyio.fail_after(60):
            waited = await client.call_tool("connect_runtime", {
                "name": "tab1", "kind": "colab-tab", "wait": 2.5},
                progress_callback=progress)
    answer = structured(waited)
    assert answer["connected"] is False
    assert notes and all(answer["link"] in note for note in notes)
    assert "has not connected yet" in text_of(waited)


async def test_a_users_long_cell_holds_the_control_cell_and_the_answer_says_so(
        tab: tuple[Client, BridgeDeps, FakeColabPage]) -> None:
    client, deps, _ = tab
    done = structured(await call(client, "run_code_quick", {"code": "print('first')"}))
    backend = (await deps.registry.client("tab1"))[1]
    backend.control.ask_timeout_s = 1.0  # type: ignore[attr-defined]
    tools = await backend.notebook()
    users = await tools.add_code_cell("import time\ntime.sleep(6)")
    async with anyio.create_task_group() as tg:
        tg.start_soon(tools.run_code_cell, users)  # the user runs a slow cell by hand
        await anyio.sleep(0.5)
        held = await call(client, "list_colab_variables", {})
        assert held.is_error
        assert "another cell is running in the notebook" in text_of(held)
    backend.control.ask_timeout_s = 30.0  # type: ignore[attr-defined]
    again = structured(await call(client, "get_job", {"job_id": done["job_id"], "wait": 0}))
    assert again["status"] == "succeeded"
