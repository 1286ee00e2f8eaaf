"""Property: capped output is always a true head, a true tail and an honest count.

For the head+tail cap of a string, of a stream fed in arbitrary chunks, and of a
spill file range: the kept head is a prefix of the full text, the kept tail a
suffix, the marker states exactly the bytes left out (head + omitted + tail ==
total), nothing is cut when it fits, characters are never split, and paging the
spill file gives back every byte exactly once.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from smartcolab.runtime.engine.output import (
    HeadTail,
    SpillFile,
    cap_head_tail,
    omitted_marker,
    read_capped,
    read_page,
)

MARK = re.compile(re.escape(omitted_marker(999_999_999)).replace("999999999", r"(\d+)"))

# Mixed widths: ASCII, 2-, 3- and 4-byte UTF-8 characters, newlines.
chars = st.sampled_from(["a", "b", "\n", "é", "ß", "€", "中", "😀", "𝄞"])
texts = st.lists(chars, max_size=300).map("".join)
limits = st.integers(min_value=0, max_value=120)


def split_capped(full: str, capped: str, truncated: bool) -> tuple[str, int, str]:
    """(head, omitted bytes, tail) of a capped text, checked against the full text."""
    found = list(MARK.finditer(capped))
    if not truncated:
        assert not found or capped == full
        return capped, 0, ""
    assert len(found) >= 1
    # The marker is the last match whose head is a true prefix (the text itself
    # cannot contain our marker here: the alphabet has no digits).
    match = found[0]
    head, tail = capped[:match.start()], capped[match.end():]
    return head, int(match.group(1)), tail


def assert_consistent(full: str, capped: str, truncated: bool, half: int) -> None:
    data = full.encode()
    head, omitted, tail = split_capped(full, capped, truncated)
    if not truncated:
        assert capped == full
        return
    assert full.startswith(head) and full.endswith(tail)
    assert len(head.encode()) + omitted + len(tail.encode()) == len(data)
    assert omitted > 0
    assert len(head.encode()) <= half and len(tail.encode()) <= half


@settings(max_examples=400, deadline=None)
@given(text=texts, limit=limits)
def test_cap_head_tail(text: str, limit: int) -> None:
    capped, truncated = cap_head_tail(text, limit)
    assert truncated == (len(text.encode()) > limit)
    assert_consistent(text, capped, truncated, limit // 2)


@settings(max_examples=400, deadline=None)
@given(chunks=st.lists(texts, max_size=12), limit=limits)
def test_head_tail_stream(chunks: list[str], limit: int) -> None:
    stream = HeadTail(limit)
    for chunk in chunks:
        stream.append(chunk)
    full = "".join(chunks)
    block = stream.block()
    assert stream.total_bytes == len(full.encode())
    assert block.total_chars == len(full)
    # limit // 2 bytes each side, whole characters only: what fits in the head is kept whole.
    if len(full.encode()) <= limit // 2:
        assert not block.truncated and block.text == full
    assert_consistent(full, block.text, block.truncated, limit // 2)


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(texts, min_size=1, max_size=8), limit=st.integers(1, 120),
       data=st.data())
def test_spill_file_capped_reads_and_pages(chunks: list[str], limit: int,
                                           data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spill = SpillFile(Path(tmp) / "output.txt")
        cursors = [0]
        for chunk in chunks:
            spill.write(chunk)
            cursors.append(spill.size)  # a long-poll cursor is always a write boundary
        spill.close()
        full = "".join(chunks)
        raw = full.encode()
        assert spill.size == len(raw)
        if raw:
            assert spill.path.stat().st_size == len(raw)
        start = data.draw(st.sampled_from(cursors), label="since")
        text, truncated = read_capped(spill.path, start, len(raw), limit)
        expected = raw[start:].decode()
        assert truncated == (len(raw) - start > limit)
        assert_consistent(expected, text, truncated, limit // 2)
        # Paging with any page size returns every byte once, in order.
        offset, pages = 0, []
        while offset < len(raw):
            page, next_offset = read_page(spill.path, offset, limit, len(raw))
            assert next_offset > offset
            pages.append(page)
            offset = next_offset
        assert "".join(pages) == full
