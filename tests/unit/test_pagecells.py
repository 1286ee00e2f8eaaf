"""What a Colab page says about its cells, parsed as untrusted input (client/colabtab/pagecells.py)."""

from __future__ import annotations

from typing import Any

import pytest

from smartcolab.client.colabtab.pagecells import (
    MAX_BINARY,
    MAX_TEXT,
    check_cell_id,
    parse_cell,
    parse_cells,
    parse_output,
    parse_run,
)
from smartcolab.shared.errors import RuntimeMisbehaved


def test_nbformat_outputs_with_lists_of_lines_and_json_bundles() -> None:
    out = parse_output({"output_type": "execute_result", "execution_count": 3,
                        "data": {"text/plain": ["a\n", "b"], "application/json": {"k": [1]}}})
    assert out.kind == "execute_result" and out.text == "a\nb"
    assert out.data["application/json"] == '{"k": [1]}'
    stream = parse_output({"output_type": "stream", "name": "stderr", "text": ["x", "y"]})
    assert (stream.name, stream.text) == ("stderr", "xy")
    err = parse_output({"output_type": "error", "ename": "E", "evalue": "v",
                        "traceback": [str(i) for i in range(500)]})
    assert err.text == "E: v" and len(err.traceback) == 200 and err.traceback[-1] == "499"


def test_colab_words_and_snake_case_are_understood() -> None:
    cell = parse_cell({"id": "c1", "cell_type": "text", "source": ["# T"], "execution_count": None})
    assert (cell.cell_id, cell.cell_type, cell.source, cell.running) == ("c1", "markdown", "# T", None)


def test_text_is_cut_and_big_images_dropped_with_a_note() -> None:
    out = parse_output({"output_type": "display_data", "data": {
        "text/html": "h" * (MAX_TEXT + 10), "image/png": "A" * (MAX_BINARY + 1),
        "image/jpeg": "B" * 100}})
    assert out.data["text/html"].endswith("[… 10 more characters left out]")
    assert "image/png" not in out.data and out.data["image/jpeg"] == "B" * 100
    assert "image/png over 8 MiB left out" in out.text


@pytest.mark.parametrize(("raw", "match"), [
    ({"output_type": "stream", "name": "stdin", "text": ""}, "neither stdout nor stderr"),
    ({"output_type": "stream", "text": 5}, "not text"),
    ({"output_type": "error", "traceback": "one string"}, "traceback"),
    ({"output_type": "display_data", "data": ["png"]}, "mime bundle"),
    ({"output_type": "display_data", "data": {"text/plain": {"nested": 1}}}, "not text"),
    ("just words", "not an object"),
])
def test_wrong_output_shapes_are_refused(raw: Any, match: str) -> None:
    with pytest.raises(RuntimeMisbehaved, match=match):
        parse_output(raw)


@pytest.mark.parametrize("value", ["", "a b", "x" * 257, "é", "a\nb", 5, None])
def test_cell_ids_are_checked(value: Any) -> None:
    with pytest.raises(RuntimeMisbehaved, match="invalid cell id"):
        check_cell_id(value)


@pytest.mark.parametrize(("raw", "match"), [
    ({"cellId": "a", "cellType": "code", "executionCount": True}, "execution count"),
    ({"cellId": "a", "cellType": "code", "executionCount": -1}, "execution count"),
    ({"cellId": "a", "cellType": "code", "running": "yes"}, "running flag"),
    ({"cellId": "a", "cellType": "code", "outputs": {}}, "outputs that are not a list"),
])
def test_wrong_cell_fields_are_refused(raw: dict[str, Any], match: str) -> None:
    with pytest.raises(RuntimeMisbehaved, match=match):
        parse_cell(raw)


def test_a_bare_list_is_a_get_cells_answer_and_too_many_cells_are_refused() -> None:
    assert [c.cell_id for c in parse_cells([{"cellId": "a", "cellType": "code"}])] == ["a"]
    with pytest.raises(RuntimeMisbehaved, match="more than"):
        parse_cells({"cells": [{}] * 10_001})


def test_a_run_answer_about_another_cell_is_refused_and_plain_words_accepted() -> None:
    with pytest.raises(RuntimeMisbehaved, match="asked to run cell 'a'"):
        parse_run({"cellId": "b", "outputs": []}, "a")
    done = parse_run("done", "a")
    assert (done.cell_id, done.outputs, done.running) == ("a", (), False)
