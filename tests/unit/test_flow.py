"""The ordered output record (shared/output/flow.py) and its rendering (mcp/ordered.py)."""

from __future__ import annotations

from smartcolab.mcp.ordered import ordered_text
from smartcolab.shared.output.flow import FlowRecord
from smartcolab.shared.protocol import JobResult


def _feed(record: FlowRecord, pieces: list[tuple[str, str]]) -> int:
    pos = 0
    for kind, text in pieces:
        size = len(text.encode("utf-8"))
        record.add(kind, text, at=pos, end=pos + size)  # type: ignore[arg-type]
        pos += size
    return pos


def test_streams_and_displays_keep_their_order_and_runs_merge() -> None:
    record = FlowRecord(10_000)
    _feed(record, [("stdout", "a1\n"), ("stdout", "a2\n"), ("stderr", "warn\n"),
                   ("display", "<table>"), ("stdout", "b\n"), ("result", "42")])
    kinds = [(i.kind, i.text) for i in record.items()]
    assert kinds == [("stdout", "a1\na2\n"), ("stderr", "warn\n"), ("display", "<table>"),
                     ("stdout", "b\n"), ("result", "42")]
    text = ordered_text(JobResult(flow=record.items(), execution_count=3)).text
    assert text == "a1\na2\n[stderr]\nwarn\n<table>\n[stdout]\nb\nOut[3]: 42\n"


def test_a_flood_keeps_head_and_tail_and_marks_the_gap() -> None:
    record = FlowRecord(2_000)
    total = _feed(record, [("stdout" if i % 7 else "stderr", f"line {i:05d}\n")
                           for i in range(5_000)])
    items = record.items()
    kept = sum(len(i.text) for i in items)
    assert kept <= 2_000 and items[0].text.startswith("line 00000")
    assert items[-1].end == total and items[-1].text.endswith("line 04999\n")
    rendered = ordered_text(JobResult(flow=items))
    assert rendered.gap and "bytes of output left out here" in rendered.text


def test_one_huge_write_is_split_between_head_and_tail() -> None:
    record = FlowRecord(1_000)
    _feed(record, [("stdout", "é" * 10_000)])
    items = record.items()
    assert len(items) == 2 and all(set(i.text) == {"é"} for i in items)
    assert items[0].at == 0 and items[1].end == 20_000
    assert sum(len(i.text.encode()) for i in items) <= 1_000


def test_output_already_shown_is_left_out() -> None:
    record = FlowRecord(10_000)
    _feed(record, [("stdout", "one\ntwo\n"), ("stderr", "err\n"), ("stdout", "three\n")])
    res = JobResult(flow=record.items())
    rendered = ordered_text(res, shown_before=4)  # "one\n" was returned already
    assert rendered.text == "two\n[stderr]\nerr\n[stdout]\nthree\n"
    assert rendered.seen == 4
    everything = ordered_text(res, shown_before=100)
    assert everything.text == "" and everything.seen == 18


def test_character_cursors_of_the_jupyter_kind() -> None:
    record = FlowRecord(10_000, len)
    record.add("stdout", "ééé\n", at=0, end=4)
    assert ordered_text(JobResult(flow=record.items()), shown_before=2).text == "é\n"
