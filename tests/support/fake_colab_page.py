"""A fake Colab page: the MCP *server* over a WebSocket *client*, as the real page is.

It follows the public protocol of googlecolab/colab-mcp (``websocket_server.py``): it
connects to ``ws://127.0.0.1:PORT/?access_token=TOKEN`` (or with a bearer header) with
the Origin ``https://colab.google.com`` and the subprotocol ``mcp``, then serves the
seven tools ``add_code_cell(cellIndex, language, code)``, ``add_text_cell(cellIndex,
content)``, ``update_cell(cellId, content)``, ``delete_cell(cellId)``,
``move_cell(cellId, cellIndex)``, ``get_cells(includeOutputs)`` and
``run_code_cell(cellId)`` (which blocks until the cell ends, with no limit).  Cells are
kept in a list; code cells run in a real IPython kernel (jupyter_client), one at a time
and queued like Colab's; ``get_cells`` answers while a cell runs, with its outputs so far
and ``running: true``; requests are served concurrently.  ``reload()`` closes the socket
and connects again with the same token while the kernel (and a running cell) goes on,
like a page reload; ``close()`` is a closed tab.

What awaits a real browser and account, and is NOT covered here: the real page's input
schemas and answer shapes (not public: ``page.py`` reads the schemas and parses answers
defensively, and its fallbacks cover a page that answers in plain words), Colab's own
cell ids, its consent prompt, its reconnect timing after a reload, outputs Colab renders
itself (widgets, forms), and the real kernel's behaviour on a busy VM.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup
from jupyter_client.manager import AsyncKernelManager
from mcp.server.lowlevel import Server
from mcp.types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

from smartcolab.client.colabtab.wsframe import MAX_FRAME, SUBPROTOCOL, mcp_streams

COLAB_ORIGIN = "https://colab.google.com"


def _schema(**props: str) -> dict[str, Any]:
    return {"type": "object", "properties": {k: {"type": t} for k, t in props.items()},
            "required": list(props)}


TOOLS = [
    Tool(name="add_code_cell", description="Add a code cell at an index.",
         input_schema=_schema(cellIndex="integer", language="string", code="string")),
    Tool(name="add_text_cell", description="Add a text (Markdown) cell at an index.",
         input_schema=_schema(cellIndex="integer", content="string")),
    Tool(name="update_cell", description="Replace a cell's content.",
         input_schema=_schema(cellId="string", content="string")),
    Tool(name="delete_cell", description="Delete a cell.", input_schema=_schema(cellId="string")),
    Tool(name="move_cell", description="Move a cell to an index.",
         input_schema=_schema(cellId="string", cellIndex="integer")),
    Tool(name="get_cells", description="All cells, optionally with outputs.",
         input_schema=_schema(includeOutputs="boolean")),
    Tool(name="run_code_cell", description="Run a code cell and wait for it to end.",
         input_schema=_schema(cellId="string")),
]

# (tool, answer) -> the answer sent instead: tests make the page hostile with it.
Tamper = Callable[[str, Any], Any]


@dataclass
class FakeCell:
    cell_id: str
    cell_type: str
    source: str
    outputs: list[dict[str, Any]] = field(default_factory=list)
    execution_count: int | None = None
    running: bool = False

    def view(self, outputs: bool) -> dict[str, Any]:
        return {"cellId": self.cell_id, "cellType": self.cell_type, "source": self.source,
                "outputs": list(self.outputs) if outputs else [],
                "executionCount": self.execution_count, "running": self.running}


class PageRefused(Exception):
    """What the page answers with ``isError``."""


class FakeColabPage:
    """Use as ``async with FakeColabPage(port, token) as page:`` (connects on entry)."""

    def __init__(self, port: int, token: str, *, origin: str = COLAB_ORIGIN,
                 token_in: str = "query", subprotocol: str = SUBPROTOCOL,
                 tamper: Tamper | None = None) -> None:
        self.port, self.token, self.origin = port, token, origin
        self.token_in, self.subprotocol, self.tamper = token_in, subprotocol, tamper
        self.cells: list[FakeCell] = []
        self.calls: list[str] = []  # tool names in the order they arrived
        self.connections = 0
        self.close_code: int | None = None  # how the other end closed the last socket
        self._tg: TaskGroup | None = None
        self._ws: ClientConnection | None = None
        self._served: anyio.Event | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="sc-page-", dir="/tmp"))
        self._km: AsyncKernelManager | None = None
        self._kc: Any = None
        self._kernel_lock = anyio.Lock()
        self._server: Server[Any] = Server("fake-colab-page", on_list_tools=self._list_tools,
                                           on_call_tool=self._call_tool)

    @property
    def kernel_dir(self) -> Path:
        """The kernel's working directory."""
        return self._dir

    async def __aenter__(self) -> FakeColabPage:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            await self.connect()
        except BaseException:
            await self._exit()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._exit()

    async def _exit(self) -> None:
        await self.close()
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)
        if self._kc is not None:
            self._kc.stop_channels()
        if self._km is not None:
            await self._km.shutdown_kernel(now=True)
        shutil.rmtree(self._dir, ignore_errors=True)

    # -- the socket ------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the socket (raises what ``websockets`` raises when refused) and serve."""
        url = f"ws://127.0.0.1:{self.port}/"
        headers = {}
        if self.token_in == "query":
            url += f"?access_token={self.token}"
        else:
            headers["Authorization"] = f"Bearer {self.token}"
        ws = await connect(url, origin=Origin(self.origin),
                           subprotocols=[Subprotocol(self.subprotocol)], additional_headers=headers, max_size=MAX_FRAME, open_timeout=30)
        self._ws = ws
        self.connections += 1
        served = self._served = anyio.Event()
        assert self._tg is not None
        self._tg.start_soon(self._serve, ws, served)

    async def _serve(self, ws: ClientConnection, served: anyio.Event) -> None:
        try:
            async with mcp_streams(ws) as (read, write):
                await self._server.run(read, write, self._server.create_initialization_options())
        finally:
            await ws.close()
            self.close_code = ws.close_code
            served.set()

    async def close(self) -> None:
        """The tab closes: the socket ends; the kernel stays until the page object goes."""
        if self._ws is not None:
            await self._ws.close()
            assert self._served is not None
            await self._served.wait()
            self._ws = None

    async def reload(self) -> None:
        """Close and connect again with the same token; the kernel and its cells go on."""
        await self.close()
        await self.connect()

    async def wait_closed(self) -> None:
        """Until the other end closes the socket (``close_code`` then says how)."""
        if self._served is not None:
            await self._served.wait()

    # -- the tools -------------------------------------------------------------------

    async def _list_tools(self, ctx: Any, params: PaginatedRequestParams | None) -> ListToolsResult:
        return ListToolsResult(tools=TOOLS)

    async def _call_tool(self, ctx: Any, params: CallToolRequestParams) -> CallToolResult:
        self.calls.append(params.name)
        args = params.arguments or {}
        try:
            answer = await self._dispatch(params.name, args)
        except PageRefused as exc:
            return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)
        if self.tamper is not None:
            answer = self.tamper(params.name, answer)
            if isinstance(answer, CallToolResult):
                return answer
        return CallToolResult(content=[TextContent(type="text", text=json.dumps(answer))],
                              structured_content=answer if isinstance(answer, dict) else None)

    async def _dispatch(self, tool: str, a: dict[str, Any]) -> Any:
        if tool == "add_code_cell":
            if a.get("language", "python") != "python":
                raise PageRefused(f"unsupported language {a.get('language')!r}")
            return {"cellId": self._insert("code", str(a["code"]), a["cellIndex"])}
        if tool == "add_text_cell":
            return {"cellId": self._insert("markdown", str(a["content"]), a["cellIndex"])}
        if tool == "update_cell":
            self._find(a["cellId"]).source = str(a["content"])
            return {"cellId": a["cellId"]}
        if tool == "delete_cell":
            self.cells.remove(self._find(a["cellId"]))
            return {"cellId": a["cellId"]}
        if tool == "move_cell":
            cell = self._find(a["cellId"])
            self.cells.remove(cell)
            self.cells.insert(self._index(a["cellIndex"]), cell)
            return {"cellId": cell.cell_id}
        if tool == "get_cells":
            return {"cells": [c.view(bool(a.get("includeOutputs", True))) for c in self.cells]}
        if tool == "run_code_cell":
            cell = self._find(a["cellId"])
            if cell.cell_type != "code":
                raise PageRefused(f"cell {cell.cell_id} is not a code cell")
            done = anyio.Event()
            assert self._tg is not None
            # The run belongs to the page, not to the request: a reload does not stop it.
            self._tg.start_soon(self._execute, cell, done)
            await done.wait()
            return {"cellId": cell.cell_id, "outputs": cell.outputs,
                    "executionCount": cell.execution_count}
        raise PageRefused(f"unknown tool {tool}")

    def _index(self, raw: object) -> int:
        if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
            raise PageRefused(f"bad cellIndex {raw!r}")
        return min(raw, len(self.cells))

    def _insert(self, kind: str, source: str, index: object) -> str:
        cell = FakeCell(secrets.token_hex(6), kind, source)
        self.cells.insert(self._index(index), cell)
        return cell.cell_id

    def _find(self, cell_id: object) -> FakeCell:
        for cell in self.cells:
            if cell.cell_id == cell_id:
                return cell
        raise PageRefused(f"cell {cell_id!r} not found")

    # -- the kernel ------------------------------------------------------------------

    async def _kernel(self) -> Any:
        if self._kc is None:
            km = AsyncKernelManager(kernel_name="python3", transport="ipc",
                                    ip=str(self._dir / "k"),
                                    connection_file=str(self._dir / "kernel.json"))
            await km.start_kernel(cwd=str(self._dir),
                                  extra_arguments=["--HistoryManager.hist_file=:memory:"])
            self._km = km
            kc = km.client()
            kc.start_channels()
            await kc.wait_for_ready(timeout=120)
            self._kc = kc
        return self._kc

    async def _execute(self, cell: FakeCell, done: anyio.Event) -> None:
        try:
            async with self._kernel_lock:  # one cell at a time, the next ones queued
                kc = await self._kernel()
                cell.outputs = []
                cell.running = True
                msg_id = kc.execute(cell.source, allow_stdin=False)
                while True:
                    msg = await kc.get_iopub_msg()
                    if msg["parent_header"].get("msg_id") == msg_id and self._collect(cell, msg):
                        break
        finally:
            cell.running = False
            done.set()

    @staticmethod
    def _collect(cell: FakeCell, msg: dict[str, Any]) -> bool:
        """Add one iopub message to the cell's outputs; True when the cell has ended."""
        kind, c = msg["msg_type"], msg["content"]
        outs = cell.outputs
        if kind == "execute_input":
            cell.execution_count = c.get("execution_count")
        elif kind == "stream":
            if outs and outs[-1].get("output_type") == "stream" and outs[-1]["name"] == c["name"]:
                outs[-1] = {**outs[-1], "text": outs[-1]["text"] + c["text"]}
            else:
                outs.append({"output_type": "stream", "name": c["name"], "text": c["text"]})
        elif kind in ("display_data", "execute_result"):
            out = {"output_type": kind, "data": c["data"], "metadata": c.get("metadata", {})}
            if kind == "execute_result":
                out["execution_count"] = c.get("execution_count")
            outs.append(out)
        elif kind == "error":
            outs.append({"output_type": "error", "ename": c["ename"], "evalue": c["evalue"],
                         "traceback": c["traceback"]})
        elif kind == "clear_output":
            outs.clear()
        return bool(kind == "status" and c.get("execution_state") == "idle")
