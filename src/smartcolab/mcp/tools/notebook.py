"""Tools for the notebook page itself (the colab-tab kind): read cells; add, edit and run one.

They are a fixed part of the tool list, registered whatever runtimes exist (the
page's own tools reach a client only through ``tools/list_changed``, which many clients
ignore).  The page's cells come from ``RuntimeBackend.notebook()`` (``Capability.NOTEBOOK``);
another kind answers ``Unsupported``.  What the page returns is already validated by
``client/colabtab/page.py``; here it is made to fit a model's context as job results are
(``mcp/results.py``: text capped head + tail, a few images as image content).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Annotated, Any

import anyio
from mcp.types import CallToolResult, ImageContent, TextContent
from pydantic import Field

from smartcolab.client.colabtab.cells import CONTROL_FIRST, JOB_FIRST, SETUP_FIRST
from smartcolab.client.colabtab.page import Cell, CellOutput, PageTools
from smartcolab.mcp.annotations import READS_REMOTE, RUNS
from smartcolab.mcp.deps import BridgeContext, BridgeDeps, deps_of
from smartcolab.mcp.jobflow import Progress
from smartcolab.mcp.params import ToolDef
from smartcolab.mcp.results import RenderOptions, cap_text, render_images, short_traceback
from smartcolab.mcp.tool_errors import translated
from smartcolab.shared.errors import InvalidInput, SmartColabError
from smartcolab.shared.output.terminal import render
from smartcolab.shared.protocol import MAX_CODE_CHARS, NAME_PATTERN, RichOutput

TabName = Annotated[str, Field(pattern=NAME_PATTERN)]
CellId = Annotated[str, Field(pattern=r"^[\x21-\x7e]{1,256}$")]
Index = Annotated[int | None, Field(ge=0)]
IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif", "image/webp")
MAX_READ_CELLS = 200
# The first lines of the cells the colab-tab kind writes itself: they are read like any
# other cell, and never edited here (the control cell is how the bridge reaches the kernel).
OWN_CELLS = {SETUP_FIRST.split(":")[0]: "smartcolab's setup cell",
             CONTROL_FIRST.split(":")[0]: "smartcolab's control cell",
             JOB_FIRST + " ": "a smartcolab job cell"}


def _opts(deps: BridgeDeps) -> RenderOptions:
    s = deps.settings
    return RenderOptions(max_chars=s.max_result_chars, max_images=s.max_images,
                         max_image_bytes=s.max_image_bytes, save_dir=s.save_dir)


async def _page(deps: BridgeDeps, runtime: str) -> PageTools:
    _, backend = await deps.registry.client(runtime)
    page = await backend.notebook()  # Unsupported on a kind without a notebook page
    assert isinstance(page, PageTools)
    return page


def _image(out: CellOutput) -> RichOutput | None:
    """The output's image as the job renderer takes it; None without a valid one."""
    for mime in IMAGE_MIMES:
        data = out.data.get(mime)
        if data is None:
            continue
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return None  # the page sent something that is not base64: not shown
        return RichOutput(type="display_data", image_mime=mime, image_base64=data,
                          image_bytes=len(raw))
    return None


def _outputs_text(outputs: tuple[CellOutput, ...], images: list[RichOutput]) -> str:
    """A cell's outputs as text, in order; images are collected and named in place."""
    parts: list[str] = []
    for out in outputs:
        if out.kind == "stream":
            parts.append(out.text if out.name != "stderr" else f"[stderr]\n{out.text}")
        elif out.kind == "error":
            parts.append(f"{out.text}\nTraceback (last frames):\n"
                         f"{short_traceback(list(out.traceback))}")
        elif (image := _image(out)) is not None:
            images.append(image)
            parts.append(f"[image {len(images)}]")
        elif out.text:
            parts.append(f"Out: {out.text}" if out.kind == "execute_result" else out.text)
    return render("\n".join(p.rstrip("\n") for p in parts))


def _own(cell: Cell) -> str | None:
    return next((what for first, what in OWN_CELLS.items() if cell.source.startswith(first)),
                None)


def _cell_text(index: int, cell: Cell, budget: int, images: list[RichOutput],
               with_outputs: bool = True) -> str:
    state = " (running)" if cell.running else ""
    if (own := _own(cell)) is not None:
        state += f" [{own}]"
    count = f" In[{cell.execution_count}]" if cell.execution_count is not None else ""
    source, _ = cap_text(cell.source, max(200, budget // 3))
    text = f"[{index}] {cell.cell_type} cell {cell.cell_id}{count}{state}\n{source}"
    if with_outputs and cell.outputs:
        body, _ = cap_text(_outputs_text(cell.outputs, images), max(200, budget // 2))
        text += f"\n--- output:\n{body}"
    return text


def _result(text: str, images: list[ImageContent], structured: dict[str, Any],
            is_error: bool = False) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text), *images],
                          structured_content=structured, is_error=is_error)


def _label(runtime: str, ids: list[str]) -> str:
    """A file-name-safe label for the images saved from these cells (ids are the page's)."""
    return f"{runtime}-cells-{hashlib.sha256(' '.join(ids).encode()).hexdigest()[:12]}"


async def notebook_read_cells(
        ctx: BridgeContext, runtime: TabName,
        start: Annotated[int, Field(ge=0)] = 0,
        count: Annotated[int, Field(ge=1, le=MAX_READ_CELLS)] = 20,
        include_outputs: bool = True) -> CallToolResult:
    """A colab-tab notebook's cells: ids, source, outputs (so far, if running)."""
    deps = deps_of(ctx)
    opts = _opts(deps)
    with translated(runtime):
        page = await _page(deps, runtime)
        cells = await page.get_cells(include_outputs=include_outputs)
        wanted = cells[start:start + count]
        images: list[RichOutput] = []
        parts = [f"{len(cells)} cells in {runtime!r}" + (
            f"; showing {start}..{start + len(wanted) - 1}:" if wanted
            else f"; none from index {start}.")]
        used = len(parts[0])
        shown: list[Cell] = []
        for offset, cell in enumerate(wanted):
            kept = len(images)
            text = _cell_text(start + offset, cell, opts.max_chars, images, include_outputs)
            if shown and used + len(text) > opts.max_chars:
                del images[kept:]  # the cell is not shown: nor are its images
                parts.append(f"[cells {start + offset}.. not shown to fit: call "
                             f"notebook_read_cells(start={start + offset})]")
                break
            parts.append(text)
            used += len(text) + 2
            shown.append(cell)
        content, notes = render_images(_label(runtime, [c.cell_id for c in shown]), images, opts)
        if notes:
            parts.append("Notes:\n" + "\n".join(f"- {n}" for n in notes))
        structured = {"runtime": runtime, "total": len(cells), "start": start, "cells": [
            {"index": start + i, "cell_id": c.cell_id, "cell_type": c.cell_type,
             "execution_count": c.execution_count, "running": c.running}
            for i, c in enumerate(shown)]}
        return _result("\n\n".join(parts), content, structured)


async def notebook_write_cell(
        ctx: BridgeContext, runtime: TabName,
        text: Annotated[str, Field(max_length=MAX_CODE_CHARS)],
        cell_id: CellId | None = None, markdown: bool = False, index: Index = None,
        run: bool = False) -> CallToolResult:
    """Write a colab-tab notebook cell: replace cell_id's source, or add a cell at index
    (default the end; markdown=true: a note). run=true runs a code cell, waiting about
    50 s (then it runs on)."""
    deps = deps_of(ctx)
    opts = _opts(deps)
    with translated(runtime):
        _check_write(text, cell_id, markdown, index, run)
        page = await _page(deps, runtime)
        if cell_id is None:
            cell_id = await (page.add_text_cell(text, index) if markdown
                             else page.add_code_cell(text, index))
            where = "at the end" if index is None else f"at index {index}"
            head = (f"added a {'Markdown' if markdown else 'code'} cell {cell_id} {where} "
                    f"of {runtime!r}")
        else:
            await _editable(page, runtime, cell_id)
            await page.update_cell(cell_id, text)
            head = f"cell {cell_id} of {runtime!r} updated"
        if not run:
            return _result(head + ".", [], {"runtime": runtime, "cell_id": cell_id})
        finished = await _run_with_deadline(ctx, deps, page, cell_id)
        now: Cell | None = None
        if finished is None or not finished.outputs:  # past the deadline, or a page that
            # said only "done": the cell as the page shows it now
            now = next((c for c in await page.get_cells() if c.cell_id == cell_id), None)
        running = finished is None and (now is None or now.running is not False)
        ran = now if now is not None and (finished is None or not now.running) else finished
        if running:
            head += (f"; it still runs after {deps.settings.wait_budget_s:g} s and keeps "
                     "running in the notebook, whose kernel runs nothing else meanwhile (the "
                     "page offers no interrupt: ask the user to stop it there). Read it later "
                     "with notebook_read_cells")
        else:
            head += " and run"
        images: list[RichOutput] = []
        body = _outputs_text(ran.outputs, images) if ran is not None else ""
        text, _ = cap_text(body, max(200, opts.max_chars - len(head) - 200))
        content, notes = render_images(_label(runtime, [cell_id]), images, opts)
        failed = ran is not None and any(o.kind == "error" for o in ran.outputs)
        parts = [head + (":" if text else "."), *([text] if text else []),
                 *(["Notes:\n" + "\n".join(f"- {n}" for n in notes)] if notes else [])]
        return _result("\n\n".join(parts), content, {
            "runtime": runtime, "cell_id": cell_id, "running": running, "failed": failed,
            "execution_count": ran.execution_count if ran is not None else None}, failed)


def _check_write(text: str, cell_id: str | None, markdown: bool, index: int | None,
                 run: bool) -> None:
    """Refuse what cannot mean anything before the page is touched."""
    if cell_id is None and not text.strip():
        raise InvalidInput("text: empty; a new cell needs its source")
    if cell_id is not None and (markdown or index is not None):
        raise InvalidInput("markdown and index are for a new cell: leave out cell_id to add "
                           "one, or move nothing when replacing a cell's source")
    if markdown and run:
        raise InvalidInput("run: a Markdown cell does not run; add it with run=false")


async def _editable(page: PageTools, runtime: str, cell_id: str) -> None:
    """Refuse a cell the page does not have, and the cells the colab-tab kind wrote."""
    cell = next((c for c in await page.get_cells(include_outputs=False)
                 if c.cell_id == cell_id), None)
    if cell is None:
        raise InvalidInput(f"the notebook of {runtime!r} has no cell {cell_id!r} "
                           "(notebook_read_cells lists them)")
    if (own := _own(cell)) is not None:
        raise InvalidInput(f"cell {cell_id!r} is {own}; it is not edited here. Run code with "
                           "run_code_quick / run_code_long, or edit a cell of your own")


async def _run_with_deadline(ctx: BridgeContext, deps: BridgeDeps, page: PageTools,
                             cell_id: str) -> Cell | None:
    """The ended cell, or None when the wait budget ran out first (progress meanwhile)."""
    progress = Progress(ctx)
    ran: list[Cell] = []
    failed: list[SmartColabError] = []
    async with anyio.create_task_group() as tg:
        async def tick() -> None:
            while True:
                await anyio.sleep(deps.settings.progress_interval_s)
                await progress.report(f"cell {cell_id} running")

        tg.start_soon(tick)
        with anyio.move_on_after(deps.settings.wait_budget_s):
            try:
                ran.append(await page.run_code_cell(cell_id))
            except SmartColabError as exc:  # raised below, not wrapped in an exception group
                failed.append(exc)
        tg.cancel_scope.cancel()
    if failed:
        raise failed[0]
    return ran[0] if ran else None


TOOLS = [
    ToolDef(notebook_read_cells, None, READS_REMOTE),
    ToolDef(notebook_write_cell, None, RUNS),
]
