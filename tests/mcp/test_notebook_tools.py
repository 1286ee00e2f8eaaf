"""The notebook tools in process (mcp.Client(server)) against a fake backend whose
notebook() is a real PageTools over the fake Colab page (a real WebSocket, a real kernel)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.types import CallToolResult, ImageContent, TextContent

from mcp import Client
from smartcolab.client.backend import Capability
from smartcolab.client.colabtab.page import PageTools
from smartcolab.client.registry import RuntimeSpec
from smartcolab.mcp.deps import BridgeSettings
from smartcolab.mcp.server import BridgeConfig, build_server
from support.bridge_helpers import text_of
from support.fake_backend import FakeBackend
from support.fake_colab_page import FakeColabPage, Tamper
from support.page_relay import page_relay

pytestmark = pytest.mark.anyio

NOTEBOOK_TOOLS = {"notebook_read_cells", "notebook_write_cell"}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 40).decode()


class TabBackend(FakeBackend):
    """A fake backend of a kind with a notebook page: the fake page's PageTools."""

    kind_label = "a fake Colab tab"
    page: PageTools | None = None

    async def notebook(self) -> PageTools:
        assert self.page is not None
        return self.page


def config(tmp: Path, backend: FakeBackend, **settings: Any) -> BridgeConfig:
    return BridgeConfig(
        settings=BridgeSettings(save_dir=tmp / "saved", checkpoint_dir=tmp / "ckpt",
                                **{"wait_budget_s": 120.0, **settings}),
        runtimes=[RuntimeSpec("tab", "http://fake.invalid", kind="fake")],
        default_runtime="tab", embedded=False, factories={"fake": backend.factory()})


@asynccontextmanager
async def tab_bridge(tmp: Path, tamper: Tamper | None = None, **settings: Any
                     ) -> AsyncIterator[tuple[Client, PageTools, FakeColabPage]]:
    backend = TabBackend("tab", capabilities=frozenset({Capability.NOTEBOOK}))
    async with page_relay(call_timeout_s=30) as relay, \
            FakeColabPage(relay.port, relay.token, tamper=tamper) as page:
        backend.page = await relay.next_page()
        async with Client(build_server(config(tmp, backend, **settings))) as client:
            yield client, backend.page, page


async def call(client: Client, tool: str, args: dict[str, Any]) -> CallToolResult:
    with anyio.fail_after(120):
        return await client.call_tool(tool, args)


async def test_the_tools_are_always_listed_and_another_kind_says_unsupported(
        tmp_path: Path) -> None:
    async with Client(build_server(config(tmp_path, FakeBackend("tab")))) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        result = await call(client, "notebook_read_cells", {"runtime": "tab"})
    assert names >= NOTEBOOK_TOOLS
    assert result.is_error and "unsupported (runtime 'tab')" in text_of(result)
    assert "has no notebook page" in text_of(result) and "colab-tab" in text_of(result)


async def test_note_read_edit_and_run(tmp_path: Path) -> None:
    async with tab_bridge(tmp_path) as (client, tools, _):
        code_id = await tools.add_code_cell("print('old')")
        note = await call(client, "notebook_write_cell", {"runtime": "tab", "text": "# Plan",
                                                          "markdown": True, "index": 0})
        assert not note.is_error and note.structured_content is not None
        note_id = note.structured_content["cell_id"]
        code = ("from IPython.display import display\nprint('new')\n"
                f"display({{'image/png': '{PNG}', 'text/plain': 'fig'}}, raw=True)\n40 + 2")
        ran = await call(client, "notebook_write_cell",
                         {"runtime": "tab", "cell_id": code_id, "text": code, "run": True})
        assert not ran.is_error, text_of(ran)
        text = text_of(ran)
        assert "updated and run" in text and "new" in text and "Out: 42" in text
        assert "[image 1]" in text and "old" not in text
        assert [c.data for c in ran.content if isinstance(c, ImageContent)] == [PNG]
        read = await call(client, "notebook_read_cells", {"runtime": "tab"})
    body = text_of(read)
    assert body.index("# Plan") < body.index("print('new')") and "Out: 42" in body
    assert read.structured_content is not None
    assert [c["cell_id"] for c in read.structured_content["cells"]] == [note_id, code_id]
    assert [c for c in read.content if isinstance(c, ImageContent)]


async def test_a_new_code_cell_is_added_and_run(tmp_path: Path) -> None:
    async with tab_bridge(tmp_path) as (client, tools, _):
        first = await tools.add_code_cell("x = 1")
        added = await call(client, "notebook_write_cell",
                           {"runtime": "tab", "text": "print(6 * 7)", "run": True})
        cells = await tools.get_cells()
    assert not added.is_error, text_of(added)
    assert "added a code cell" in text_of(added) and "at the end" in text_of(added)
    assert "and run" in text_of(added) and "42" in text_of(added)
    assert added.structured_content is not None
    assert [c.cell_id for c in cells] == [first, added.structured_content["cell_id"]]
    assert cells[1].cell_type == "code" and cells[1].source == "print(6 * 7)"


async def test_a_write_that_cannot_mean_anything_touches_nothing(tmp_path: Path) -> None:
    async with tab_bridge(tmp_path) as (client, tools, _):
        cell_id = await tools.add_code_cell("x = 1")
        empty = await call(client, "notebook_write_cell", {"runtime": "tab", "text": "  "})
        moved = await call(client, "notebook_write_cell",
                           {"runtime": "tab", "cell_id": cell_id, "text": "y", "index": 0})
        note_run = await call(client, "notebook_write_cell",
                              {"runtime": "tab", "text": "# n", "markdown": True, "run": True})
        cells = await tools.get_cells()
    assert empty.is_error and "a new cell needs its source" in text_of(empty)
    assert moved.is_error and "are for a new cell" in text_of(moved)
    assert note_run.is_error and "a Markdown cell does not run" in text_of(note_run)
    assert [(c.cell_id, c.source) for c in cells] == [(cell_id, "x = 1")]


async def test_a_failing_cell_is_an_error_with_its_traceback(tmp_path: Path) -> None:
    async with tab_bridge(tmp_path) as (client, tools, _):
        cell_id = await tools.add_code_cell("")
        ran = await call(client, "notebook_write_cell", {
            "runtime": "tab", "cell_id": cell_id, "text": "def f():\n    1 / 0\nf()",
            "run": True})
    assert ran.is_error and "ZeroDivisionError: division by zero" in text_of(ran)
    assert "Traceback (last frames)" in text_of(ran) and "\x1b[" not in text_of(ran)


async def test_a_cell_past_the_wait_budget_is_said_to_run_on(tmp_path: Path) -> None:
    async with tab_bridge(tmp_path, wait_budget_s=2.0, progress_interval_s=0.2) as (
            client, tools, page):
        await tools.run_code_cell(await tools.add_code_cell("1"))  # the kernel is up
        cell_id = await tools.add_code_cell("")
        code = ("import os, time\nprint('working', flush=True)\n"
                "while not os.path.exists('go'):\n    time.sleep(0.05)")
        ran = await call(client, "notebook_write_cell",
                         {"runtime": "tab", "cell_id": cell_id, "text": code, "run": True})
        assert not ran.is_error, text_of(ran)
        assert "still runs after 2 s" in text_of(ran) and "notebook_read_cells" in text_of(ran)
        assert ran.structured_content is not None and ran.structured_content["running"] is True
        read = await call(client, "notebook_read_cells", {"runtime": "tab", "start": 1})
        assert "(running)" in text_of(read) and "working" in text_of(read)
        (page.kernel_dir / "go").touch()
        with anyio.fail_after(60):
            while True:  # the cell ends once released: nothing is left running
                if not any(c.running for c in await tools.get_cells()):
                    break
                await anyio.sleep(0.05)


async def test_reading_many_cells_is_capped_and_says_where_to_go_on(tmp_path: Path) -> None:
    async with tab_bridge(tmp_path, max_result_chars=1000) as (client, tools, _):
        for i in range(12):
            await tools.add_text_cell(f"note {i} " + "words " * 30)
        read = await call(client, "notebook_read_cells", {"runtime": "tab", "count": 12})
    text = text_of(read)
    assert len(text) < 1300 and "12 cells in 'tab'" in text
    assert read.structured_content is not None
    shown = len(read.structured_content["cells"])
    assert 0 < shown < 12 and f"notebook_read_cells(start={shown})" in text


async def test_bad_arguments_and_page_refusals(tmp_path: Path) -> None:
    async with tab_bridge(tmp_path) as (client, tools, _):
        note = await tools.add_text_cell("words")
        run_note = await call(client, "notebook_write_cell",
                              {"runtime": "tab", "cell_id": note, "text": "1", "run": True})
        spaces = await call(client, "notebook_write_cell",
                            {"runtime": "tab", "cell_id": "a b", "text": "1"})
        zero = await call(client, "notebook_read_cells", {"runtime": "tab", "count": 0})
        missing = await call(client, "notebook_write_cell",
                             {"runtime": "tab", "cell_id": "nosuchcell", "text": "1"})
    assert spaces.is_error and "cell_id" in text_of(spaces)
    assert zero.is_error and "count" in text_of(zero)
    assert missing.is_error and "invalid_input (runtime 'tab')" in text_of(missing)
    assert "no cell 'nosuchcell'" in text_of(missing) and "notebook_read_cells" in text_of(missing)
    assert run_note.is_error and "page_error" in text_of(run_note)
    assert "is not a code cell" in text_of(run_note)


async def test_a_page_that_answers_a_run_with_done_only_is_read_back(tmp_path: Path) -> None:
    def done_only(tool: str, answer: Any) -> Any:
        if tool != "run_code_cell":
            return answer
        return CallToolResult(content=[TextContent(type="text", text="done")])

    async with tab_bridge(tmp_path, tamper=done_only) as (client, tools, _):
        cell_id = await tools.add_code_cell("")
        ran = await call(client, "notebook_write_cell", {
            "runtime": "tab", "cell_id": cell_id, "text": "print('read back')", "run": True})
    assert not ran.is_error and "updated and run" in text_of(ran)
    assert "read back" in text_of(ran)
