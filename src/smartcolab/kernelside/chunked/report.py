"""The report a chunked batch prints about itself, on its last stdout line.

Installed once per kernel as a module in ``sys.modules`` (not a variable people see)
by the batch program that ``mcp/chunked/build.py`` generates; ``report`` is called in
the batch's ``finally``.  The line is: a newline, the marker, a space, then JSON with
the batch's bookkeeping and its collected values.
"""

from __future__ import annotations

import json
from typing import Any

BOOKKEEPING = ("_sc_batch", "_sc_t0", "_sc_k", "_sc_h")


def encode(value: Any, cap: int) -> tuple[str, bool]:
    """``value`` as JSON (arrays through ``tolist``), or its shortened repr; (text, is_repr)."""
    try:
        text: str | None = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        try:
            text = json.dumps(value.tolist(), allow_nan=False)
        except Exception:
            text = None
    if text is not None and len(text) <= cap:
        return text, False
    return json.dumps(repr(value)[:cap]), True


def report_line(batch: dict[str, Any], marker: str, cap: int) -> str:
    parts = []
    for index, value in batch["values"]:
        text, is_repr = encode(value, cap)
        parts.append(f"[{index:d},{text},{'true' if is_repr else 'false'}]")
    head = {k: v for k, v in batch.items() if k != "values"}
    return "\n" + marker + " " + json.dumps(head)[:-1] + ',"values":[' + ",".join(parts) + "]}"


def report(g: dict[str, Any], batch: dict[str, Any], marker: str, cap: int) -> None:
    """Print the batch's report and remove its bookkeeping names from ``g``."""
    # No flush: ipykernel flushes at the end of the cell; a flush is a thread round trip.
    print(report_line(batch, marker, cap))
    for name in BOOKKEEPING:
        g.pop(name, None)
