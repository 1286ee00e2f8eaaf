"""The notebook tools through the colab-tab kind itself (the relay, TabBackend.notebook())
on the fake Colab page: what a model sees of the user's notebook next to our job cells."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e.test_colab_tab import call, open_tab, structured, tab_config
from support.bridge_helpers import bridge, text_of
from support.fake_colab_page import FakeCell

pytestmark = pytest.mark.anyio


async def test_notes_reads_and_edits_in_a_connected_tab(tmp_path: Path) -> None:
    async with bridge(tab_config(tmp_path, "tab1", wait_budget_s=60)) as (client, _), \
            open_tab(client, "tab1") as page:
        job = structured(await call(client, "run_code_quick", {"code": "base = 40"}))
        assert job["status"] == "succeeded"
        note = structured(await call(client, "notebook_write_cell", {
            "runtime": "tab1", "text": "## Results", "markdown": True, "index": 0}))
        # A code cell of the user's own, at the top of the notebook.
        mine = FakeCell("usercell1", "code", "print('draft')")
        page.cells.insert(1, mine)
        ran = structured(await call(client, "notebook_write_cell", {
            "runtime": "tab1", "cell_id": "usercell1", "text": "print(base + 2)",
            "run": True}))
        read = await call(client, "notebook_read_cells", {"runtime": "tab1"})
        job_cell = next(c for c in page.cells if c.source.startswith("%%smartcolab_job"))
        refused = await call(client, "notebook_write_cell", {
            "runtime": "tab1", "cell_id": job_cell.cell_id, "text": "base = 0"})
    assert refused.is_error and "is a smartcolab job cell" in text_of(refused)
    assert job_cell.source.endswith("base = 40")
    assert ran["running"] is False and ran["failed"] is False
    assert page.cells[0].cell_id == note["cell_id"] and page.cells[0].source == "## Results"
    cells = structured(read)["cells"]
    assert [c["cell_id"] for c in cells[:2]] == [note["cell_id"], "usercell1"]
    assert mine.source == "print(base + 2)" and mine.outputs[0]["text"] == "42\n"
    text = text_of(read)
    assert "%%smartcolab_job" in text and "42" in text  # the job's cell and the edited one
    assert "[a smartcolab job cell]" in text and "[smartcolab's control cell]" in text
