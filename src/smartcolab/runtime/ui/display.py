"""Show the monitor page inline in a notebook cell's output.

In Colab the browser cannot reach the VM's ports directly; Colab's own
``serve_kernel_port_as_iframe`` proxies a kernel-side port into an iframe of the
cell output.  Elsewhere (Jupyter on the same machine) a plain iframe to the local
port works.
"""

from __future__ import annotations

import importlib
from typing import Any

from smartcolab.runtime.ui import UI_PATH, page_url

DEFAULT_HEIGHT_PX = 760


def _colab_output() -> Any | None:
    try:
        return importlib.import_module("google.colab.output")
    except ImportError:
        return None


def show_monitor(port: int, secret: str | None = None, *, host: str = "127.0.0.1",
                 height: int = DEFAULT_HEIGHT_PX) -> str:
    """Display the runtime's /ui page in the current cell's output; return how it was shown.

    With ``secret`` the page opens already signed in (the secret travels in the URL
    fragment, which no server receives).  Note that a notebook saves cell outputs:
    clear the serving cell's output before sharing the notebook, as for the banner
    that prints the secret.  Returns ``"colab"`` or ``"iframe"``.
    """
    fragment = page_url("", secret)  # "/ui" or "/ui#secret=..."
    colab = _colab_output()
    if colab is not None:
        colab.serve_kernel_port_as_iframe(port, path=fragment, width="100%", height=str(height))
        return "colab"
    from IPython.display import IFrame, display

    shown_host = f"[{host}]" if ":" in host else host
    frame = IFrame(src=page_url(f"http://{shown_host}:{port}", secret), width="100%",
                   height=height)
    display(frame)  # type: ignore[no-untyped-call]
    return "iframe"


__all__ = ["UI_PATH", "show_monitor"]
