"""The user's namespace as a kernel-side module sees it: user variables, memory, the shell.

Shared by ``variables``, ``cleanup`` and ``persist``.  IPython is reached at run time
only (``shell``), so the functions here also work on a plain dict in a test.
"""

from __future__ import annotations

import importlib
import os
import types
from collections.abc import Iterator
from typing import Any


def shell() -> Any:
    """The running IPython shell (inside a kernel)."""
    return importlib.import_module("IPython").get_ipython()


def user_names(ns: dict[str, Any], hidden: dict[str, Any],
               private: bool) -> Iterator[tuple[str, Any]]:
    """The user's (name, value) pairs: not IPython's own names; ``_x`` and modules only
    with ``private``."""
    for name in list(ns):
        value = ns[name]
        if name in hidden and hidden[name] is value:
            continue
        if not private and (name.startswith("_") or isinstance(value, types.ModuleType)):
            continue
        yield name, value


def type_name(value: Any) -> str:
    """``int`` for builtins, ``module.Qualname`` for everything else."""
    t = type(value)
    mod = getattr(t, "__module__", "builtins")
    return str(t.__qualname__) if mod == "builtins" else f"{mod}.{t.__qualname__}"


def rss() -> int | None:
    """This process's resident memory in bytes (psutil when present, else /proc)."""
    try:
        psutil: Any = importlib.import_module("psutil")
        return int(psutil.Process().memory_info().rss)
    except Exception:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except Exception:
            return None
