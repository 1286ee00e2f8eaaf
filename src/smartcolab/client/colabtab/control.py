"""The control cell: how the bridge asks the page's kernel anything (``cells.control_cell``).

One reusable cell at the end of the notebook, found again by its first line after a
reload; each request rewrites it (``update_cell``), runs it (``run_code_cell``, bounded:
the page runs one cell at a time, so a user's long cell holds it up) and reads the one
answer with the request's nonce.  Requests go one at a time.  ``ensure_agent`` installs
the thread-mode job agent through the visible setup cell when the kernel has none (a new
page, a restarted kernel).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from smartcolab.client.colabtab import cells
from smartcolab.client.colabtab.page import Cell, PageTools
from smartcolab.shared.errors import PageError, RuntimeMisbehaved, RuntimeNotAnswering

ASK_TIMEOUT_S = 30.0  # the control cell must run within this (a busy kernel queues it)
SETUP_TIMEOUT_S = 60.0

PageGetter = Callable[[], Awaitable[PageTools]]


def stdout_of(cell: Cell) -> str:
    return "".join(o.text for o in cell.outputs if o.kind == "stream" and o.name == "stdout")


def errors_of(cell: Cell) -> list[str]:
    return [f"{o.ename}: {o.evalue}" for o in cell.outputs if o.kind == "error"]


class Control:
    """Requests to the page's job agent through the control cell."""

    def __init__(self, page: PageGetter, *, root: str | None = None,
                 ask_timeout_s: float = ASK_TIMEOUT_S) -> None:
        self._page = page
        self.root = root
        self.ask_timeout_s = ask_timeout_s
        self.epoch: str | None = None  # the agent's kernel epoch, as last seen
        self._lock = anyio.Lock()
        self._cell: tuple[PageTools, str] | None = None  # (the page it lives in, its id)

    async def page(self) -> PageTools:
        """The connected page's tools (a clear error with the link when there is none)."""
        return await self._page()

    async def _cell_id(self, page: PageTools) -> str:
        if self._cell is not None and self._cell[0] is page:
            return self._cell[1]
        found = [c.cell_id for c in await page.get_cells(include_outputs=False)
                 if c.source.startswith(cells.CONTROL_FIRST)]
        cell_id = found[-1] if found else await page.add_code_cell(cells.CONTROL_FIRST)
        self._cell = (page, cell_id)
        return cell_id

    async def run_visible(self, page: PageTools, cell_id: str, limit_s: float, what: str) -> Cell:
        """Run a cell, bounded: past ``limit_s`` the kernel is busy (the cell stays queued)."""
        with anyio.move_on_after(limit_s):
            return await page.run_code_cell(cell_id)
        raise RuntimeNotAnswering(
            f"the Colab page's kernel did not run the {what} within {limit_s:g} s: another "
            "cell is running in the notebook (the page runs one at a time) or a job holds "
            "the interpreter; the request stays queued in the tab. A job past its deadline "
            "is stopped by the kernel's own agent.")

    async def ask(self, request: dict[str, Any], *, limit_s: float | None = None
                  ) -> dict[str, Any]:
        """The agent's answer to ``request`` (``{"agent": None}`` when there is no agent)."""
        async with self._lock:
            page = await self._page()
            cell_id = await self._cell_id(page)
            code, nonce = cells.control_cell(request)
            try:
                await page.update_cell(cell_id, code)
            except PageError:
                self._cell = None  # deleted by the user? find or add it again, once
                cell_id = await self._cell_id(page)
                await page.update_cell(cell_id, code)
            done = await self.run_visible(page, cell_id, limit_s or self.ask_timeout_s,
                                          "control cell")
            answer = cells.answer(stdout_of(done), nonce)
            if isinstance(answer.get("epoch"), str):
                self.epoch = answer["epoch"]
            return answer

    async def ensure_agent(self) -> dict[str, Any]:
        """The agent's hello, after installing it through the setup cell if needed."""
        hello = await self.ask({"op": "hello"})
        if hello.get("agent") is not None:
            return hello
        page = await self._page()
        source = cells.setup_cell(self.root)
        found = [c.cell_id for c in await page.get_cells(include_outputs=False)
                 if c.source.startswith(cells.SETUP_FIRST.split("(")[0])]
        if found:
            await page.update_cell(found[0], source)
            cell_id = found[0]
        else:
            cell_id = await page.add_code_cell(source, await self.index_before_control(page))
        done = await self.run_visible(page, cell_id, SETUP_TIMEOUT_S, "setup cell")
        if errors_of(done):
            raise RuntimeMisbehaved("the setup cell failed in the Colab page's kernel: "
                                    + "; ".join(errors_of(done))[:500])
        hello = await self.ask({"op": "hello"})
        if hello.get("agent") is None:
            raise RuntimeMisbehaved("the setup cell ran but the job agent is not in the kernel")
        return hello

    async def index_before_control(self, page: PageTools) -> int | None:
        """Where a new cell goes: just above the control cell (None: at the end)."""
        listed = await page.get_cells(include_outputs=False)
        for index, cell in enumerate(listed):
            if cell.source.startswith(cells.CONTROL_FIRST):
                return index
        return None
