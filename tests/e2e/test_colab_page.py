"""page.py over the fake Colab page, through a real WebSocket and a real kernel."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from mcp.types import CallToolResult, JSONRPCRequest, JSONRPCResponse, TextContent
from websockets.exceptions import InvalidStatus

from smartcolab.client.colabtab.page import PageTools
from smartcolab.shared.errors import InvalidInput, PageError, RuntimeMisbehaved, TabDisconnected
from support.fake_colab_page import FakeColabPage
from support.page_relay import Relay, page_relay

pytestmark = pytest.mark.anyio

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 40).decode()


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    async with page_relay(call_timeout_s=30) as r:
        yield r


@pytest.fixture
async def page(relay: Relay) -> AsyncIterator[FakeColabPage]:
    async with FakeColabPage(relay.port, relay.token) as p:
        yield p


@pytest.fixture
async def tools(relay: Relay, page: FakeColabPage) -> PageTools:
    t = await relay.next_page()
    await t.check()
    return t


async def test_cells_are_added_read_edited_moved_and_deleted(tools: PageTools) -> None:
    a = await tools.add_code_cell("x = 1")
    b = await tools.add_text_cell("# Notes")
    c = await tools.add_code_cell("y = 2", index=0)
    cells = await tools.get_cells()
    assert [x.cell_id for x in cells] == [c, a, b]
    assert [x.cell_type for x in cells] == ["code", "code", "markdown"]
    await tools.update_cell(a, "x = 10")
    await tools.move_cell(b, 0)
    await tools.delete_cell(c)
    cells = await tools.get_cells(include_outputs=False)
    assert [(x.cell_id, x.source) for x in cells] == [(b, "# Notes"), (a, "x = 10")]


async def test_run_gives_outputs_images_and_errors(tools: PageTools) -> None:
    code = ("from IPython.display import display, Image\nprint('hi')\n"
            f"display({{'image/png': '{PNG}', 'text/plain': '<img>'}}, raw=True)\n6 * 7")
    ran = await tools.run_code_cell(await tools.add_code_cell(code))
    kinds = [o.kind for o in ran.outputs]
    assert kinds == ["stream", "display_data", "execute_result"]
    assert ran.outputs[0].text == "hi\n" and ran.outputs[0].name == "stdout"
    assert ran.outputs[1].data["image/png"] == PNG
    assert ran.outputs[2].text == "42" and ran.execution_count == 1 and ran.running is False

    bad = await tools.run_code_cell(await tools.add_code_cell("1 / 0"))
    err = bad.outputs[-1]
    assert err.kind == "error" and err.ename == "ZeroDivisionError"
    assert err.text.startswith("ZeroDivisionError") and err.traceback


async def test_a_running_cell_is_read_with_its_live_outputs(
        tools: PageTools, page: FakeColabPage) -> None:
    code = ("import os, time\nprint('started', flush=True)\n"
            "while not os.path.exists('go'):\n    time.sleep(0.05)\nprint('ended')")
    cell_id = await tools.add_code_cell(code)
    result: list[Any] = []

    async def run() -> None:
        result.append(await tools.run_code_cell(cell_id))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(60):
            while True:
                cell = next(c for c in await tools.get_cells() if c.cell_id == cell_id)
                if cell.running and any("started" in o.text for o in cell.outputs):
                    break
                await anyio.sleep(0.05)
        # The page answers other calls while the cell runs.
        note = await tools.add_text_cell("meanwhile")
        assert not result and (await tools.get_cells())[-1].cell_id == note
        (page.kernel_dir / "go").touch()
    assert result[0].outputs[-1].text == "started\nended\n"
    assert (await tools.get_cells())[0].running is False


async def test_page_refusals_are_page_errors(tools: PageTools) -> None:
    text = await tools.add_text_cell("words")
    with pytest.raises(PageError, match="not a code cell"):
        await tools.run_code_cell(text)
    with pytest.raises(PageError, match="not found"):
        await tools.update_cell("nosuchcell", "x")
    with pytest.raises(RuntimeMisbehaved):  # refused before asking: not a cell id at all
        await tools.delete_cell("has spaces in it")


async def test_reload_reconnects_and_the_kernel_keeps_its_state(
        relay: Relay, page: FakeColabPage, tools: PageTools) -> None:
    await tools.run_code_cell(await tools.add_code_cell("kept = 'yes'"))
    await page.reload()
    with pytest.raises(TabDisconnected):
        await tools.get_cells()
    again = await relay.next_page()
    ran = await again.run_code_cell(await again.add_code_cell("kept"))
    assert ran.outputs[0].text == "'yes'" and page.connections == 2


async def test_a_cell_runs_on_through_a_reload_and_is_followed_by_the_new_connection(
        relay: Relay, page: FakeColabPage, tools: PageTools) -> None:
    code = ("import os, time\nprint('before', flush=True)\n"
            "while not os.path.exists('go'):\n    time.sleep(0.05)\nprint('after')")
    cell_id = await tools.add_code_cell(code)
    failed: list[BaseException] = []

    async def run() -> None:
        try:
            await tools.run_code_cell(cell_id)  # its connection goes away under it
        except TabDisconnected as exc:
            failed.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(60):
            while True:
                if any(c.running and c.outputs for c in page.cells):
                    break
                await anyio.sleep(0.05)
        await page.reload()
    assert failed
    again = await relay.next_page()
    (cell,) = await again.get_cells()
    assert cell.running is True and cell.outputs[0].text == "before\n"
    with pytest.raises(InvalidInput):
        await again.move_cell(cell_id, -1)
    (page.kernel_dir / "go").touch()
    with anyio.fail_after(60):
        while True:
            (cell,) = await again.get_cells()
            if not cell.running:
                break
            await anyio.sleep(0.05)
    assert cell.outputs[0].text == "before\nafter\n"


async def test_wrong_token_and_origin_are_refused(relay: Relay) -> None:
    with pytest.raises(InvalidStatus):
        async with FakeColabPage(relay.port, "wrong-token"):
            pass
    with pytest.raises(InvalidStatus):
        async with FakeColabPage(relay.port, relay.token, origin="https://evil.example"):
            pass
    async with FakeColabPage(relay.port, relay.token, token_in="header"):
        assert isinstance(await relay.next_page(), PageTools)


def _hostile(answers: dict[str, Any]) -> Any:
    def tamper(tool: str, answer: Any) -> Any:
        return answers.get(tool, answer)
    return tamper


@pytest.mark.parametrize(("tool_answer", "match"), [
    ({"cells": [{"cellId": "a b", "cellType": "code"}]}, "invalid cell id"),
    ({"cells": [{"cellId": "a", "cellType": "raw"}]}, "unknown cell type"),
    ({"cells": "all of them"}, "without a list of cells"),
    ({"cells": [{"cellId": "a", "cellType": "code", "outputs": [{"output_type": "x"}]}]},
     "unknown output type"),
    ({"cells": [{"cellId": "a", "cellType": "code", "executionCount": "1"}]}, "execution count"),
    ({"cells": [{"cellId": "a", "cellType": "code"}, {"cellId": "a", "cellType": "code"}]},
     "two cells with one id"),
])
async def test_hostile_get_cells_answers_are_refused(relay: Relay, tool_answer: Any,
                                                     match: str) -> None:
    async with FakeColabPage(relay.port, relay.token, tamper=_hostile({"get_cells": tool_answer})):
        tools = await relay.next_page()
        with pytest.raises(RuntimeMisbehaved, match=match):
            await tools.get_cells()


async def test_oversized_and_unexpected_answers(relay: Relay) -> None:
    big = "x" * (2 * 1024 * 1024)
    huge_image = "A" * (9 * 1024 * 1024)
    answers = {
        "get_cells": {"cells": [{"cellId": "a", "cellType": "code", "source": big, "outputs": [
            {"output_type": "display_data", "data": {"image/png": huge_image, "text/plain": "i"}},
            *[{"output_type": "stream", "name": "stdout", "text": "."}] * 1500]}]},
        "add_code_cell": {"cellId": ["not", "a", "string"]},
        "update_cell": CallToolResult(content=[TextContent(type="text", text="nope " * 1000)],
                                      is_error=True),
    }
    async with FakeColabPage(relay.port, relay.token, tamper=_hostile(answers)):
        tools = await relay.next_page()
        (cell,) = await tools.get_cells()
        assert len(cell.source) < len(big) and "more characters left out" in cell.source
        assert "image/png" not in cell.outputs[0].data and "left out" in cell.outputs[0].text
        assert len(cell.outputs) == 1001 and "501 more outputs" in cell.outputs[-1].text
        with pytest.raises(RuntimeMisbehaved, match="cell id"):
            await tools.add_code_cell("1", index=0)
        with pytest.raises(PageError) as refused:
            await tools.update_cell("a", "2")
        assert len(refused.value.message) < 2200


async def test_a_frame_past_the_cap_ends_the_connection_with_a_clear_error() -> None:
    async with page_relay(max_size=64 * 1024, call_timeout_s=30) as relay:
        fat = {"cells": [{"cellId": "a", "cellType": "code", "source": "y" * 100_000}]}
        async with FakeColabPage(relay.port, relay.token, tamper=_hostile({"get_cells": fat})):
            tools = await relay.next_page()
            with pytest.raises(TabDisconnected, match="disconnected"):
                await tools.get_cells()


async def test_check_names_missing_tools_and_arguments(relay: Relay) -> None:
    from support import fake_colab_page as fake

    saved = fake.TOOLS[:]
    fake.TOOLS[:] = [t for t in saved if t.name != "move_cell"]
    fake.TOOLS[0] = fake.TOOLS[0].model_copy(update={"input_schema": {
        "type": "object", "properties": {"cellIndex": {}, "code": {}}}})
    try:
        async with FakeColabPage(relay.port, relay.token):
            tools = await relay.next_page()
            with pytest.raises(Exception, match=r"move_cell, .*|add_code_cell\(language\)") as e:
                await tools.check()
            assert "move_cell" in str(e.value) and "add_code_cell(language)" in str(e.value)
    finally:
        fake.TOOLS[:] = saved


async def test_wsframe_passes_bad_frames_on_as_exceptions_and_ends_with_the_socket() -> None:
    from mcp.shared.message import SessionMessage
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import ServerConnection, serve

    from smartcolab.client.colabtab.wsframe import mcp_streams

    got: list[SessionMessage | Exception] = []
    ended = anyio.Event()

    async def handler(ws: ServerConnection) -> None:
        async with mcp_streams(ws) as (read, write):
            async for item in read:
                got.append(item)
                if isinstance(item, SessionMessage) and isinstance(item.message, JSONRPCRequest):
                    await write.send(SessionMessage(JSONRPCResponse(
                        jsonrpc="2.0", id=item.message.id, result={})))
        ended.set()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send("not json")
            await ws.send(b"\x00binary")
            await ws.send('{"jsonrpc": "2.0", "id": 7, "method": "ping"}')
            assert '"id":7' in str(await ws.recv())
        with anyio.fail_after(30):
            await ended.wait()
    assert isinstance(got[0], ValueError) and isinstance(got[1], ValueError)
    assert "binary" in str(got[1]) and isinstance(got[2], SessionMessage) and len(got) == 3


async def test_a_page_that_answers_in_plain_text_is_still_understood(relay: Relay) -> None:
    def tamper(tool: str, answer: Any) -> Any:
        # Text content only, no structured content; add_* say only "ok".
        text = "ok" if tool.startswith("add_") else json.dumps(answer)
        return CallToolResult(content=[TextContent(type="text", text=text)])

    async with FakeColabPage(relay.port, relay.token, tamper=tamper) as page:
        tools = await relay.next_page()
        first = await tools.add_code_cell("a = 1")
        second = await tools.add_text_cell("note", index=0)
        assert [c.cell_id for c in page.cells] == [second, first]
        assert [c.source for c in await tools.get_cells()] == ["note", "a = 1"]


async def test_the_page_sees_how_the_relay_closed_it() -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def busy(ws: ServerConnection) -> None:
        await ws.close(code=1013, reason="a page is already connected")

    async with serve(busy, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with FakeColabPage(port, "token") as page:
            with anyio.fail_after(30):
                await page.wait_closed()
            assert page.close_code == 1013
