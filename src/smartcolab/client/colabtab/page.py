"""The Colab page's seven tools, typed and validated (we are the MCP client, the page the server).

The page's tools and their argument names are public (googlecolab/colab-mcp); their
schemas and answers are not, so :meth:`PageTools.check` reads the page's ``tools/list``
and names what is missing, and every answer is parsed defensively by
:mod:`.pagecells`: the page runs in a browser we do not control, so what it says is
untrusted (sizes capped, ids checked, an unknown shape is a clear ``RuntimeMisbehaved``,
never a crash).  A tool call the page answers with ``isError`` raises ``PageError`` with
the page's words; a connection that ends under a call raises ``TabDisconnected``.

``run_code_cell`` blocks until the cell ends, with no limit (the page has no interrupt):
callers bound it themselves (``anyio.move_on_after``), the page's cell goes on running.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from mcp.shared.exceptions import MCPError
from mcp.types import CONNECTION_CLOSED, CallToolResult, TextContent

from mcp import ClientSession
from smartcolab.client.colabtab.pagecells import (
    MAX_ERROR_TEXT,
    Cell,
    CellOutput,
    check_cell_id,
    parse_cells,
    parse_run,
)
from smartcolab.shared.errors import (
    IncompatibleRuntime,
    InvalidInput,
    PageError,
    RuntimeMisbehaved,
    SmartColabError,
    TabDisconnected,
)

__all__ = ["PAGE_TOOLS", "Cell", "CellOutput", "PageTools"]

# Tool -> the argument names the public protocol gives it.
PAGE_TOOLS: dict[str, tuple[str, ...]] = {
    "add_code_cell": ("cellIndex", "language", "code"),
    "add_text_cell": ("cellIndex", "content"),
    "update_cell": ("cellId", "content"),
    "delete_cell": ("cellId",),
    "move_cell": ("cellId", "cellIndex"),
    "get_cells": ("includeOutputs",),
    "run_code_cell": ("cellId",),
}
# Every call but run_code_cell must come back within this: a page that stops answering
# must not hold a tool call forever.
CALL_TIMEOUT_S = 60.0
MAX_TOOL_PAGES = 20


class PageTools:
    """The page's tools over an initialized ``ClientSession``."""

    def __init__(self, session: ClientSession, *, timeout: float = CALL_TIMEOUT_S) -> None:
        self.session = session
        self.timeout = timeout

    async def check(self) -> None:
        """Fail with ``IncompatibleRuntime`` naming any tool or argument the page lacks."""
        tools: dict[str, Any] = {}
        cursor: str | None = None
        for _ in range(MAX_TOOL_PAGES):
            listing = await self._guard("tools/list", self._list_tools(cursor), self.timeout)
            tools.update({t.name: t.input_schema for t in listing.tools})
            cursor = listing.next_cursor
            if cursor is None:
                break
        missing: list[str] = []
        for name, args in PAGE_TOOLS.items():
            if name not in tools:
                missing.append(name)
                continue
            props = tools[name].get("properties") if isinstance(tools[name], dict) else None
            # A schema without properties says nothing either way: the call will tell.
            if isinstance(props, dict):
                missing += [f"{name}({a})" for a in args if a not in props]
        if missing:
            raise IncompatibleRuntime(
                "the Colab page does not offer what smartcolab needs: missing "
                + ", ".join(missing) + " (the page's protocol changed; update smartcolab)",
                details={"missing": missing})

    async def add_code_cell(self, code: str, index: int | None = None) -> str:
        """Add a Python cell (``index=None``: at the end); its cell id."""
        at = await self._index(index)
        answer = await self._call("add_code_cell",
                                  {"cellIndex": at, "language": "python", "code": code})
        return await self._new_cell_id(answer, at, code)

    async def add_text_cell(self, text: str, index: int | None = None) -> str:
        """Add a Markdown cell (``index=None``: at the end); its cell id."""
        at = await self._index(index)
        answer = await self._call("add_text_cell", {"cellIndex": at, "content": text})
        return await self._new_cell_id(answer, at, text)

    async def update_cell(self, cell_id: str, content: str) -> None:
        await self._call("update_cell", {"cellId": check_cell_id(cell_id), "content": content})

    async def delete_cell(self, cell_id: str) -> None:
        await self._call("delete_cell", {"cellId": check_cell_id(cell_id)})

    async def move_cell(self, cell_id: str, index: int) -> None:
        await self._call("move_cell", {"cellId": check_cell_id(cell_id),
                                       "cellIndex": _check_index(index)})

    async def get_cells(self, include_outputs: bool = True) -> list[Cell]:
        """Every cell in order; a running cell comes with its outputs so far."""
        return parse_cells(await self._call("get_cells", {"includeOutputs": include_outputs}))

    async def run_code_cell(self, cell_id: str) -> Cell:
        """Run a code cell and wait for its end (no limit: bound it yourself)."""
        check_cell_id(cell_id)
        answer = await self._call("run_code_cell", {"cellId": cell_id}, bounded=False)
        return parse_run(answer, cell_id)

    # -- plumbing ------------------------------------------------------------------------

    async def _list_tools(self, cursor: str | None) -> Any:
        from mcp.types import PaginatedRequestParams

        params = PaginatedRequestParams(cursor=cursor) if cursor is not None else None
        return await self.session.list_tools(params=params)

    async def _index(self, index: int | None) -> int:
        if index is None:
            return len(await self.get_cells(include_outputs=False))
        return _check_index(index)

    async def _new_cell_id(self, answer: Any, index: int, source: str) -> str:
        cell_id = answer.get("cellId") if isinstance(answer, dict) else None
        if cell_id is not None:
            return check_cell_id(cell_id, what="the page's new cell id")
        # An answer without the id (a page that says only "ok"): the new cell is the
        # one at the index it was put, with the source it was given.
        cells = await self.get_cells(include_outputs=False)
        at = min(index, len(cells) - 1)
        if cells and cells[at].source == source:
            return cells[at].cell_id
        raise RuntimeMisbehaved("the Colab page added a cell but did not say its id, and it is "
                                f"not at index {index}; look at the notebook")

    async def _call(self, tool: str, args: dict[str, Any], *, bounded: bool = True) -> Any:
        """The tool's answer as JSON (structured content, else its text parsed)."""
        result: CallToolResult = await self._guard(
            tool, self.session.call_tool(tool, args), self.timeout if bounded else None)
        text = "\n".join(c.text for c in result.content if isinstance(c, TextContent))
        if result.is_error:
            raise PageError(f"the Colab page refused {tool}: {_clip(text) or 'no reason given'}",
                            details={"tool": tool})
        if isinstance(result.structured_content, dict):
            return result.structured_content
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError:
            return text  # plain words: fine for the tools whose answer we do not read

    async def _guard(self, what: str, call: Any, limit: float | None) -> Any:
        try:
            if limit is None:
                return await call
            with anyio.fail_after(limit):
                return await call
        except SmartColabError:
            raise
        except TimeoutError as exc:
            raise TabDisconnected(f"the Colab page did not answer {what} within {limit:g} s; "
                                     "is the tab still open and awake?") from exc
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                raise _gone(what) from exc
            raise PageError(f"the Colab page failed {what}: {_clip(exc.message)}",
                            details={"tool": what, "rpc_code": exc.code}) from exc
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream,
                ConnectionError) as exc:
            raise _gone(what) from exc
        except Exception as exc:  # the SDK refused the page's answer (shape, output schema)
            raise RuntimeMisbehaved(f"the Colab page answered {what} with something unreadable: "
                                    f"{_clip(str(exc))}", details={"tool": what}) from exc


def _check_index(index: int) -> int:
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise InvalidInput(f"a cell index is a whole number, 0 or more, not {index!r}")
    return index


def _gone(what: str) -> TabDisconnected:
    return TabDisconnected(f"the Colab tab disconnected during {what} (closed or reloaded); "
                              "reopen it or wait for it to reconnect")


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT] + "…"
