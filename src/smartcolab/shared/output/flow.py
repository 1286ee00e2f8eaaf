"""A job's output in the order it happened: stdout, stderr and displays interleaved.

A kernel sends stream text, displays and errors as separate messages; grouping them
per stream (all stdout, then all stderr, then displays) loses what a terminal or a
notebook shows.  ``FlowRecord`` keeps one ordered list of ``OutputItem``, each with
its position in the job's cursor units (bytes of the runtime's spill file, characters
on the Jupyter kind), so a client can leave out what it has already been shown.

Memory stays bounded: items are kept while their text fits in a head of ``limit // 2``
(in the measure's units), then only a tail of that size; what falls out in between
shows as a gap between one item's ``end`` and the next one's ``at``.  Consecutive
pieces of one stream are merged.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from smartcolab.shared.protocol import OutputItem, OutputKind

Measure = Callable[[str], int]
# Counted per item on top of its text: a flood of tiny alternating writes stays bounded too.
ITEM_OVERHEAD = 64
STREAMS = ("stdout", "stderr")


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _split(text: str, units: int, measure: Measure) -> str:
    """The longest front of ``text`` within ``units`` (never splitting a character)."""
    if measure is len:
        return text[:units]
    return text.encode("utf-8")[:units].decode("utf-8", "ignore")


def _cut_front(text: str, units: int, measure: Measure) -> str:
    """``text`` without about its first ``units`` (never splitting a character)."""
    if measure is len:
        return text[units:]
    return text.encode("utf-8")[units:].decode("utf-8", "ignore")


class FlowRecord:
    """The ordered, bounded output record of one job."""

    def __init__(self, limit: int, measure: Measure = utf8_len) -> None:
        self.half = max(1, limit // 2)
        self.measure = measure
        self.head: list[OutputItem] = []
        self.tail: deque[OutputItem] = deque()
        self._head_size = 0
        self._tail_size = 0
        self._head_open = True
        self._merged = False
        self._after_end = False

    def add(self, kind: OutputKind, text: str, *, at: int, end: int,
            output: int | None = None, after_end: bool = False) -> None:
        """One piece of output that took cursor positions ``[at, end)``; ``after_end``: printed
        after the job had ended (by a thread it started)."""
        self._after_end = after_end
        if self._head_open:
            room = self.half - self._head_size - (0 if self._mergeable(kind, at) else ITEM_OVERHEAD)
            size = self.measure(text)
            if size <= room:
                self._put(self.head, kind, text, at, end, output)
                self._head_size += size + (0 if self._merged else ITEM_OVERHEAD)
                return
            self._head_open = False
            if room > 0 and kind in STREAMS:
                front = _split(text, room, self.measure)
                if front:
                    cut = at + self.measure(front)
                    self._put(self.head, kind, front, at, cut, output)
                    self._head_size += self.measure(front) + (0 if self._merged else ITEM_OVERHEAD)
                    text, at = text[len(front):], cut
        self._put(self.tail, kind, text, at, end, output)
        self._tail_size += self.measure(text) + (0 if self._merged else ITEM_OVERHEAD)
        self._trim()

    def _mergeable(self, kind: OutputKind, at: int) -> bool:
        last = self.head[-1] if self.head else None
        return (last is not None and last.kind == kind and kind in STREAMS and last.end == at
                and last.after_end == self._after_end)

    def _put(self, items: list[OutputItem] | deque[OutputItem], kind: OutputKind, text: str,
             at: int, end: int, output: int | None) -> None:
        last = items[-1] if items else None
        self._merged = (last is not None and last.kind == kind and kind in STREAMS
                        and last.end == at and last.after_end == self._after_end)
        if last is not None and self._merged:
            last.text += text
            last.end = end
        else:
            items.append(OutputItem(kind=kind, text=text, at=at, end=end, output=output,
                                    after_end=self._after_end))

    def items(self) -> list[OutputItem]:
        return [*self.head, *self.tail]

    def _size(self, item: OutputItem) -> int:
        return self.measure(item.text) + ITEM_OVERHEAD

    def _trim(self) -> None:
        while self._tail_size > self.half and len(self.tail) > 1:
            self._tail_size -= self._size(self.tail.popleft())
        if self._tail_size > self.half and self.tail:
            first = self.tail[0]
            over = self._tail_size - self.half
            kept = _cut_front(first.text, over, self.measure)
            removed = self.measure(first.text) - self.measure(kept)
            first.text, first.at = kept, first.at + removed
            self._tail_size -= removed
