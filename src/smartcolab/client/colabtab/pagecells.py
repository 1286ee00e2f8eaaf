"""Cells and outputs as a Colab page reports them, parsed as untrusted input.

Outputs follow nbformat v4 (``stream`` / ``execute_result`` / ``display_data`` /
``error``; multi-line strings may come as lists of lines).  What is too big is cut and
says so (a user's cell may print a lot; the read must still work); what has the wrong
shape, or an id that could not be a cell id, is refused with ``RuntimeMisbehaved``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from smartcolab.shared.errors import RuntimeMisbehaved

__all__ = ["Cell", "CellOutput", "check_cell_id", "parse_cells", "parse_run"]

MAX_CELLS = 10_000
MAX_OUTPUTS = 1_000           # per cell; past it one note says how many were left out
MAX_TEXT = 1024 * 1024        # a cell's source, an output's text or a text mime value
MAX_BINARY = 8 * 1024 * 1024  # one base64 image (or other binary mime) value
MAX_TRACEBACK = 200           # lines
MAX_ERROR_TEXT = 2_000
_CELL_ID = re.compile(r"[\x21-\x7e]{1,256}")  # printable ASCII, no spaces
OutputKind = Literal["stream", "execute_result", "display_data", "error"]
_KINDS: tuple[OutputKind, ...] = ("stream", "execute_result", "display_data", "error")
_TEXTUAL = ("text/", "application/json", "application/javascript", "image/svg+xml")


@dataclass(frozen=True)
class CellOutput:
    """One nbformat output, validated and capped."""

    kind: OutputKind
    name: str | None                 # stdout / stderr for a stream
    text: str                        # stream text, text/plain of a result, "ename: evalue"
    data: dict[str, str]             # mime -> str (base64 for images)
    ename: str | None = None
    evalue: str | None = None
    traceback: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cell:
    cell_id: str
    cell_type: Literal["code", "markdown"]
    source: str
    outputs: tuple[CellOutput, ...]
    execution_count: int | None
    running: bool | None


def _shown(value: object) -> str:
    return repr(value)[:80]


def _bad(what: str, value: object) -> RuntimeMisbehaved:
    return RuntimeMisbehaved(f"the Colab page answered with {what} ({_shown(value)}); "
                             "its answer was ignored", details={"field": what})


def check_cell_id(value: object, what: str = "a cell id") -> str:
    if not isinstance(value, str) or not _CELL_ID.fullmatch(value):
        raise _bad(f"an invalid {what.removeprefix('a ').removeprefix('the ')}", value)
    return value


def _cut(text: str, cap: int = MAX_TEXT) -> str:
    if len(text) <= cap:
        return text
    return text[:cap] + f"\n[… {len(text) - cap} more characters left out]"


def _text(value: object, what: str, cap: int = MAX_TEXT) -> str:
    """A string, or nbformat's list of lines joined."""
    if isinstance(value, str):
        return _cut(value, cap)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return _cut("".join(value), cap)
    raise _bad(f"a {what} that is not text", value)


def _mime_value(mime: str, value: object) -> str | None:
    """A mime bundle value as a string; None when an image is too big to keep."""
    if isinstance(value, (dict, list)) and mime.endswith("json"):
        value = json.dumps(value)
    text = _text(value, f"{mime} value", cap=max(MAX_TEXT, MAX_BINARY))
    if mime.startswith(_TEXTUAL):
        return _cut(text)
    return text if len(text) <= MAX_BINARY else None


def parse_output(raw: object) -> CellOutput:
    if not isinstance(raw, dict):
        raise _bad("an output that is not an object", raw)
    kind = raw.get("output_type")
    if kind not in _KINDS:
        raise _bad("an unknown output type", kind)
    if kind == "stream":
        name = raw.get("name", "stdout")
        if name not in ("stdout", "stderr"):
            raise _bad("a stream that is neither stdout nor stderr", name)
        return CellOutput("stream", name, _text(raw.get("text", ""), "stream text"), {})
    if kind == "error":
        ename = _text(raw.get("ename", ""), "error name", cap=MAX_ERROR_TEXT)
        evalue = _text(raw.get("evalue", ""), "error value", cap=MAX_ERROR_TEXT)
        tb = raw.get("traceback", [])
        if not isinstance(tb, list) or not all(isinstance(line, str) for line in tb):
            raise _bad("a traceback that is not a list of lines", tb)
        lines = tuple(_cut(line, MAX_ERROR_TEXT) for line in tb[-MAX_TRACEBACK:])
        return CellOutput("error", None, f"{ename}: {evalue}", {}, ename, evalue, lines)
    bundle = raw.get("data", {})
    if not isinstance(bundle, dict) or not all(isinstance(k, str) for k in bundle):
        raise _bad("an output whose data is not a mime bundle", bundle)
    data: dict[str, str] = {}
    dropped: list[str] = []
    for mime, value in bundle.items():
        kept = _mime_value(mime[:200], value)
        if kept is None:
            dropped.append(mime)
        else:
            data[mime[:200]] = kept
    text = data.get("text/plain", "")
    if dropped:
        text += f"\n[{', '.join(dropped)} over {MAX_BINARY // 2**20} MiB left out]"
    return CellOutput(kind, None, text, data)


def _outputs(raw: object) -> tuple[CellOutput, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _bad("outputs that are not a list", raw)
    outputs = [parse_output(o) for o in raw[:MAX_OUTPUTS]]
    if len(raw) > MAX_OUTPUTS:
        note = f"[{len(raw) - MAX_OUTPUTS} more outputs of this cell left out]"
        outputs.append(CellOutput("stream", "stderr", note, {}))
    return tuple(outputs)


def _count(raw: object) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise _bad("an execution count that is not a count", raw)
    return raw


def _running(raw: object) -> bool | None:
    if raw is None or isinstance(raw, bool):
        return raw
    raise _bad("a running flag that is not true or false", raw)


def parse_cell(raw: object) -> Cell:
    if not isinstance(raw, dict):
        raise _bad("a cell that is not an object", raw)
    kind = raw.get("cellType", raw.get("cell_type"))
    if kind == "text":  # what Colab's own interface calls a Markdown cell
        kind = "markdown"
    if kind not in ("code", "markdown"):
        raise _bad("an unknown cell type", kind)
    return Cell(cell_id=check_cell_id(raw.get("cellId", raw.get("id"))),
                cell_type=kind,
                source=_text(raw.get("source", ""), "cell source"),
                outputs=_outputs(raw.get("outputs")),
                execution_count=_count(raw.get("executionCount", raw.get("execution_count"))),
                running=_running(raw.get("running")))


def parse_cells(answer: Any) -> list[Cell]:
    """A ``get_cells`` answer: ``{"cells": [...]}`` (or the bare list)."""
    cells = answer.get("cells") if isinstance(answer, dict) else answer
    if not isinstance(cells, list):
        raise _bad("a get_cells answer without a list of cells", answer)
    if len(cells) > MAX_CELLS:
        raise _bad(f"more than {MAX_CELLS} cells", len(cells))
    parsed = [parse_cell(c) for c in cells]
    seen: set[str] = set()
    for cell in parsed:
        if cell.cell_id in seen:
            raise _bad("two cells with one id", cell.cell_id)
        seen.add(cell.cell_id)
    return parsed


def parse_run(answer: Any, asked: str) -> Cell:
    """A ``run_code_cell`` answer: ``{"cellId", "outputs", "executionCount"}``."""
    if answer is None or isinstance(answer, str):
        answer = {}  # a page that answers only "done": the cell ended, outputs unknown
    if not isinstance(answer, dict):
        raise _bad("a run_code_cell answer that is not an object", answer)
    cell_id = answer.get("cellId", asked)
    if check_cell_id(cell_id) != asked:
        raise RuntimeMisbehaved(f"asked to run cell {asked!r}, the Colab page answered about "
                                f"{_shown(cell_id)}; its answer was ignored",
                                details={"field": "cellId", "asked": asked})
    return Cell(cell_id=asked, cell_type="code",
                source=_text(answer.get("source", ""), "cell source"),
                outputs=_outputs(answer.get("outputs")),
                execution_count=_count(answer.get("executionCount")),
                running=False)
