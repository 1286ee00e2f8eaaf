"""List the user's variables inside the kernel: type, shape or length, dtype, size, preview.

Nothing is imported for the purpose: numpy arrays, pandas frames and torch tensors are
recognised by their attributes (``shape``, ``dtype``, ``nbytes``, ``memory_usage``,
``element_size``).
"""

from __future__ import annotations

import contextlib
import reprlib
import sys
from typing import Any

from .namespace import shell, type_name, user_names

SIMPLE = (int, float, complex, bool, str, bytes, type(None), list, tuple, dict, set, frozenset)
PREVIEW_CHARS = 120
SIZED_ITEMS = 10_000  # a container's size counts this many items at most


def _shape(value: Any) -> list[int] | None:
    try:
        shape = getattr(value, "shape", None)
        if isinstance(shape, tuple) and all(isinstance(int(s), int) for s in shape):
            return [int(s) for s in shape]
    except Exception:
        pass
    return None


def _size(value: Any, module: str) -> int | None:
    """Approximate bytes: the library's own count when it has one, else ``getsizeof``."""
    try:
        if hasattr(value, "element_size") and hasattr(value, "nelement"):
            return int(value.element_size() * value.nelement())
        if module.startswith("pandas") and hasattr(value, "memory_usage"):
            usage = value.memory_usage(deep=False)
            return int(usage.sum()) if hasattr(usage, "sum") else int(usage)
        if isinstance(getattr(value, "nbytes", None), int):
            return int(value.nbytes)
        size = sys.getsizeof(value)
        if isinstance(value, (list, tuple, set, frozenset)):
            size += sum(sys.getsizeof(x) for x in list(value)[:SIZED_ITEMS])
        elif isinstance(value, dict):
            size += sum(sys.getsizeof(k) + sys.getsizeof(x)
                        for k, x in list(value.items())[:SIZED_ITEMS])
        return size
    except Exception:
        return None


def describe(name: str, value: Any) -> dict[str, Any]:
    """One variable as a ``VariableInfo``-shaped dict."""
    info: dict[str, Any] = {"name": name, "type": type_name(value)}
    if isinstance(value, type) or (callable(value) and not hasattr(value, "shape")):
        return info
    shape = _shape(value)
    if shape is not None:
        info["shape"] = shape
    else:
        with contextlib.suppress(Exception):
            info["length"] = len(value)
    try:
        dtype = getattr(value, "dtype", None)
        if dtype is not None:
            info["dtype"] = str(dtype)
    except Exception:
        pass
    size = _size(value, getattr(type(value), "__module__", "builtins"))
    if size is not None:
        info["size_bytes"] = size
    if isinstance(value, SIMPLE):
        with contextlib.suppress(Exception):
            info["preview"] = reprlib.repr(value)[:PREVIEW_CHARS]
    return info


def list_variables(ns: dict[str, Any], hidden: dict[str, Any],
                   private: bool) -> list[dict[str, Any]]:
    """Every user variable of ``ns``, sorted by name."""
    return [describe(n, v) for n, v in sorted(user_names(ns, hidden, private))]


def variables(private: bool) -> list[dict[str, Any]]:
    """Entry point in a kernel: the variables of the user's namespace."""
    ip = shell()
    return list_variables(ip.user_ns, ip.user_ns_hidden, private)
