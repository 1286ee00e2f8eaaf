"""Terminal semantics for output shown to models and people (shared/output/terminal.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from smartcolab.shared.output.terminal import MAX_COL, render, strip_ansi


def test_a_progress_bar_keeps_only_its_last_frame() -> None:
    frames = "".join(f"\r{i:4d}/2000 [{'#' * (i // 100):<20}]" for i in range(1, 2001))
    shown = render("training\n" + frames + "\ndone\n")
    assert shown == f"training\n2000/2000 [{'#' * 20}]\ndone\n"


def test_shorter_frame_overwrites_the_start_of_a_longer_one() -> None:
    assert render("abcdef\rxy") == "xycdef"
    assert render("abcdef\rxy\x1b[K") == "xy"


def test_backspace_and_crlf() -> None:
    assert render("abc\b\bZ") == "aZc"
    assert render("line1\r\nline2\r\n") == "line1\nline2\n"
    assert render("\b\bstart") == "start"


def test_cursor_up_redraws_nested_bars() -> None:
    # tqdm with two bars: draw both, move up, redraw both.
    text = "outer 0%\ninner 0%\x1b[A\router 50%\n\rinner 100%"
    assert render(text) == "outer 50%\ninner 100%"


def test_colours_are_dropped_and_text_kept() -> None:
    red = "\x1b[31mError\x1b[0m: bad\x1b]0;title\x07"
    assert render(red) == "Error: bad"
    assert strip_ansi(red) == "Error: bad"


def test_erase_modes() -> None:
    assert render("hello world\r\x1b[2K") == ""
    assert render("hello\x1b[3D\x1b[1K!") == "  !lo"
    assert render("abc\x1b[1G>") == ">bc"


@given(st.text(alphabet=st.characters(blacklist_characters="\r\b\x1b")))
def test_text_without_control_codes_is_unchanged(text: str) -> None:
    assert render(text) == text


@given(st.lists(st.text(alphabet="abc xyz", min_size=0, max_size=12), min_size=1, max_size=20))
def test_each_line_is_its_frames_overlaid(frames: list[str]) -> None:
    expected: list[str] = []
    for frame in frames:
        expected[: len(frame)] = list(frame)
    assert render("\r" + "\r".join(frames)) == "".join(expected).rstrip(" ")


def test_a_huge_cursor_move_is_bounded() -> None:
    # Unbounded, this would build a line of a billion spaces.
    out = render("a\x1b[999999999Cb\x1b[999999999Gc")
    assert len(out) <= MAX_COL + 2
    assert out.startswith("a ") and out.endswith("c")
