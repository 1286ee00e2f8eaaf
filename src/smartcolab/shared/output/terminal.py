"""Text as a terminal would show it: carriage returns, backspaces and ANSI codes applied.

Progress bars (tqdm, Keras, pip) redraw one line many times with ``\\r`` or move the
cursor up with ``ESC[A``; a raw log of a 2,000-step bar is 2,000 frames.  A model or a
person reading a result wants what a terminal would show at the end: the last frame.
``render`` replays the text on a small screen of lines (no width, no wrapping) and
returns what is left; colours and other escape codes are dropped.  The raw log stays
on the runtime for paging.
"""

from __future__ import annotations

import re

# CSI sequences (ESC [ params intermediates final), OSC sequences (ESC ] ... BEL or ST),
# and lone two-character escapes (ESC =, ESC >, ESC 7 ...).
_ESCAPE = re.compile(r"\x1b\[([0-9;?]*)([ -/]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_=>78]")
_TOKENS = re.compile(r"[^\r\n\b\x1b]+|\r\n|[\r\n\b]|\x1b\[[0-9;?]*[ -/]*[@-~]"
                     r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_=>78]|\x1b")
_SPECIAL = re.compile(r"[\r\b\x1b]")


def strip_ansi(text: str) -> str:
    """Remove colour, cursor and title escape codes, keep every other character."""
    return _ESCAPE.sub("", text)


# A cursor moved right pads the line with spaces: without a bound, ``ESC[999999999C``
# would make a billion-element line.  No real terminal is this wide; the JS port of
# these rules (mcp/app/assets/terminal.js) uses the same bound.
MAX_COL = 100_000


class _Screen:
    """Lines of text with a cursor; only what progress output needs of a terminal."""

    def __init__(self) -> None:
        self.lines: list[list[str]] = [[]]
        self.row = 0
        self.col = 0

    def write(self, chunk: str) -> None:
        line = self.lines[self.row]
        if self.col > len(line):
            line.extend(" " * (self.col - len(line)))
        line[self.col:self.col + len(chunk)] = list(chunk)
        self.col += len(chunk)

    def newline(self) -> None:
        self.row += 1
        self.col = 0
        if self.row == len(self.lines):
            self.lines.append([])

    def move(self, rows: int) -> None:
        self.row = min(max(0, self.row + rows), len(self.lines) - 1)

    def csi(self, params: str, final: str) -> None:
        nums = [int(p) if p.isdigit() else 0 for p in params.replace("?", "").split(";")]
        n = nums[0] if nums and nums[0] else 1
        if final == "A":
            self.move(-n)
        elif final in "BE":
            self.move(n)
            if final == "E":
                self.col = 0
        elif final == "F":
            self.move(-n)
            self.col = 0
        elif final == "C":
            self.col = min(MAX_COL, self.col + n)
        elif final == "D":
            self.col = max(0, self.col - n)
        elif final == "G":
            self.col = min(MAX_COL, max(0, n - 1))
        elif final == "K":
            mode = nums[0] if nums else 0
            line = self.lines[self.row]
            if mode == 0:
                del line[self.col:]
            elif mode == 1:
                end = min(self.col + 1, len(line))  # inclusive, as EL 1 is
                line[:end] = [" "] * end
            else:
                line.clear()
        # Colours (m), scrolling, modes and the rest change nothing a reader keeps.

    def text(self) -> str:
        # Frames of different lengths leave padding behind; a reader never needs it.
        return "\n".join("".join(line).rstrip(" ") for line in self.lines)


def render(text: str) -> str:
    """What a terminal would show after printing ``text`` (last progress frame only)."""
    if not _SPECIAL.search(text):
        return text
    screen = _Screen()
    for match in _TOKENS.finditer(text):
        token = match.group(0)
        first = token[0]
        if first == "\n" or token == "\r\n":
            screen.newline()
        elif first == "\r":
            screen.col = 0
        elif first == "\b":
            screen.col = max(0, screen.col - 1)
        elif first == "\x1b":
            csi = re.fullmatch(r"\x1b\[([0-9;?]*)[ -/]*([@-~])", token)
            if csi:
                screen.csi(csi.group(1), csi.group(2))
        else:
            screen.write(token)
    return screen.text()
