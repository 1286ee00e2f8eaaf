"""A finished job's output as one text in the order it happened (``JobResult.flow``).

stdout runs on unmarked; a switch to stderr is marked ``[stderr]`` and the way back
``[stdout]``; a display's text and the value (``Out[n]:``) stand where they came.  The
error is left to the caller, which renders it with its traceback.  Output before
``shown_before`` (the client's cursor when the call began) was already returned to this
client and is left out; output that threads printed after the job ended comes last,
under a line that says so; a gap in the record (the runtime kept head and tail only) is
marked with how much is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from smartcolab.shared.protocol import JobResult, OutputItem


@dataclass
class OrderedText:
    text: str
    value: str | None  # the text of the execute_result, if any (shown or not)
    seen: int  # cursor units left out because the client was shown them already
    gap: bool  # the record itself has a hole (head + tail kept)


def _unseen(item: OutputItem, shown_before: int) -> str:
    """The part of a stream piece after the cursor (cursor units: bytes or characters)."""
    if item.at >= shown_before:
        return item.text
    skip = shown_before - item.at
    if item.end - item.at == len(item.text):  # characters (or pure ASCII)
        return item.text[skip:]
    return item.text.encode("utf-8")[skip:].decode("utf-8", "ignore")


def ordered_text(res: JobResult, *, shown_before: int = 0) -> OrderedText:
    pieces: list[str] = []
    stream = "stdout"
    value: str | None = None
    seen = 0
    gap = False
    last_end: int | None = None
    late = False
    for item in res.flow:
        if item.kind == "result" and item.text:
            value = item.text
        if last_end is not None and item.at > last_end and item.at > shown_before:
            gap = True
            pieces.append(_line(pieces, f"... [{item.at - max(last_end, shown_before):,} bytes "
                                "of output left out here] ...\n"))
        last_end = item.end
        if item.end <= shown_before and item.end > item.at:
            seen += item.end - item.at
            continue
        if item.kind == "error" or not item.text:
            continue
        if item.after_end and not late:
            late = True
            pieces.append(_line(pieces, "[after the job ended, from a thread it started]\n"))
        if item.kind in ("stdout", "stderr"):
            text = _unseen(item, shown_before)
            seen += max(0, min(shown_before, item.end) - item.at)
            if item.kind != stream:
                pieces.append(_line(pieces, f"[{item.kind}]\n"))
                stream = item.kind
            pieces.append(text)
        else:
            label = f"Out[{res.execution_count or ''}]: " if item.kind == "result" else ""
            pieces.append(_line(pieces, label + item.text.rstrip("\n") + "\n"))
    return OrderedText("".join(pieces), value, seen, gap)


def _line(pieces: list[str], text: str) -> str:
    """``text`` starting on a line of its own."""
    return "\n" + text if pieces and not pieces[-1].endswith("\n") else text
