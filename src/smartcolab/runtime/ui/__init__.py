"""The live job monitor page (static HTML/CSS/JS in this folder) and how to show it.

The files here are package data: hatchling puts them in the wheel with the code,
and ``runtime/api/ui.py`` serves them at ``/ui``.  ``display.show_monitor`` shows the page
inline in a notebook cell.
"""

from __future__ import annotations

from urllib.parse import quote

UI_PATH = "/ui"


def page_url(base_url: str, secret: str | None = None) -> str:
    """The monitor page's URL; the secret, if given, rides in the fragment.

    A fragment is never sent to any server (not in a request line, a log or a
    Referer), unlike a query string; the page moves it to session storage and
    removes it from the address bar.
    """
    url = base_url.rstrip("/") + UI_PATH
    return f"{url}#secret={quote(secret, safe='')}" if secret else url
