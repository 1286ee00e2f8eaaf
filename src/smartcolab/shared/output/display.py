"""Display outputs (Jupyter MIME bundles) made readable for a model.

A kernel's ``display_data``/``execute_result`` carries one object in several formats.
``choose`` picks what a model can use: one text (Markdown and LaTeX as their source,
JSON pretty-printed, HTML as text with tables as Markdown tables, else the plain repr),
at most one raster image (PNG, JPEG, GIF, WebP), and everything else (SVG, PDF,
widgets, vendor types) as attachments, which callers save and name, so that nothing
is dropped without a word.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif", "image/webp")
# Richest text first: IPython's Markdown/Latex/JSON objects carry a useless text/plain
# ("<IPython.core.display.Markdown object>"); a DataFrame's HTML table beats its repr.
TEXT_MIMES = ("text/markdown", "text/latex", "application/json", "text/html", "text/plain")
# Formats with nothing a model could read; saved as files where the caller can.
EXTENSIONS = {
    "image/svg+xml": "svg", "application/pdf": "pdf", "text/html": "html",
    "application/javascript": "js", "application/vnd.jupyter.widget-view+json": "widget.json",
}
_DEFAULT_REPR = re.compile(r"^<[^<>\n]*>$")  # "<Figure size 640x480 with 1 Axes>", "<x at 0x7f>"
MAX_JSON_CHARS = 20_000


def image_extension(mime: str) -> str:
    """The usual file extension of an image MIME type (``image/jpeg`` -> ``jpg``)."""
    sub = mime.rsplit("/", 1)[-1].lower()
    return {"jpeg": "jpg", "svg+xml": "svg"}.get(sub, re.sub(r"[^a-z0-9]+", "", sub) or "img")


@dataclass
class Attachment:
    """An output format not shown to the model: its MIME type and its data as sent."""

    mime: str
    data: str

    @property
    def extension(self) -> str:
        if self.mime in EXTENSIONS:
            return EXTENSIONS[self.mime]
        sub = self.mime.rsplit("/", 1)[-1]
        return "json" if sub.endswith("+json") else re.sub(r"[^a-z0-9]+", "-", sub.lower())[:20] or "bin"


@dataclass
class Display:
    text: str | None = None
    text_mime: str | None = None
    image_mime: str | None = None
    image_base64: str | None = None
    attachments: list[Attachment] = field(default_factory=list)


def choose(data: Mapping[str, Any]) -> Display:
    """Split one MIME bundle into the text, the image and the attachments."""
    shown = Display()
    for mime in IMAGE_MIMES:
        value = data.get(mime)
        if isinstance(value, str):
            shown.image_mime, shown.image_base64 = mime, value.replace("\n", "")
            break
    for mime in TEXT_MIMES:
        if mime in data:
            text = text_of(mime, data[mime])
            if text is None:
                continue
            if mime == "text/plain" and _DEFAULT_REPR.match(text.strip()) and len(data) > 1:
                continue  # "<Figure size 640x480 with 1 Axes>" says nothing next to the image
            shown.text, shown.text_mime = text, mime
            break
    used = {shown.image_mime, shown.text_mime, "text/plain"}
    for mime, value in data.items():
        if mime in used or mime in IMAGE_MIMES:
            continue
        if mime == "text/html" and shown.text_mime in ("text/markdown", "text/latex"):
            continue  # the same content, already shown as source
        blob = value if isinstance(value, str) else json.dumps(value, indent=1, default=str)
        shown.attachments.append(Attachment(mime=mime, data=blob))
    return shown


def text_of(mime: str, value: Any) -> str | None:
    """The readable text of one format, or None when it has none."""
    if mime == "application/json":
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
        if len(text) > MAX_JSON_CHARS:
            text = text[:MAX_JSON_CHARS] + f"\n... [JSON cut at {MAX_JSON_CHARS:,} of {len(text):,} characters]"
        return text
    if not isinstance(value, str):
        value = "".join(value) if isinstance(value, list) else None
    if value is None:
        return None
    return html_to_text(value) if mime == "text/html" else value


class _HtmlText(HTMLParser):
    """HTML to plain text; ``<table>`` becomes a Markdown table."""

    _BLOCK = frozenset({"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "hr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._rows: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self._header_rows = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "table":
            self._rows, self._header_rows = [], 0
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("td", "th") and self._rows is not None:
            self._cell = []
        elif tag in self._BLOCK:
            self._emit("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in ("td", "th") and self._rows is not None and self._cell is not None:
            if not self._rows:
                self._rows.append([])
            self._rows[-1].append(" ".join("".join(self._cell).split()).replace("|", "\\|"))
            self._cell = None
        elif tag == "thead" and self._rows is not None:
            self._header_rows = len(self._rows)
        elif tag == "table" and self._rows is not None:
            rows, self._rows = self._rows, None
            self.parts.append("\n" + markdown_table([r for r in rows if r], self._header_rows) + "\n")
        elif tag in self._BLOCK:
            self._emit("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._emit(data)

    def _emit(self, text: str) -> None:
        if self._cell is not None:
            self._cell.append(text)
        elif self._rows is None:
            self.parts.append(text)


def markdown_table(rows: list[list[str]], header_rows: int = 1) -> str:
    """Rows of cells as a Markdown table; a DataFrame's two header rows are merged."""
    if not rows:
        return ""
    width = max(len(r) for r in rows)
    rows = [r + [""] * (width - len(r)) for r in rows]
    heads = rows[: max(1, header_rows)]
    header = [" ".join(c for c in col if c) for col in zip(*heads, strict=True)]
    body = rows[max(1, header_rows):]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * width]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def html_to_text(html: str) -> str:
    """A readable text rendering of HTML output; tables keep their shape."""
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    lines = []
    for line in "".join(parser.parts).splitlines():
        line = line.strip() if line.startswith("|") else " ".join(line.split())
        if line:
            lines.append(line)
    return "\n".join(lines)
