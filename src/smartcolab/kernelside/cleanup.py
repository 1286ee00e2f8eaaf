"""Free memory inside the kernel: delete variables only when asked, then collect.

Never deletes files and never touches IPython's own names.  Reports what it did and
the memory freed (RSS before and after; CUDA cache when torch is loaded).
"""

from __future__ import annotations

import gc
import sys
from typing import Any

from .namespace import rss, shell, user_names


def delete_names(ns: dict[str, Any], hidden: dict[str, Any], names: list[str], reset: bool,
                 notes: list[str]) -> list[str]:
    """Delete ``names`` (every user variable with ``reset``) from ``ns``; the deleted names."""
    targets = [n for n, _v in user_names(ns, hidden, False)] if reset else names
    deleted: list[str] = []
    for name in targets:
        if name in ns and not (name in hidden and hidden[name] is ns[name]):
            del ns[name]
            deleted.append(name)
        else:
            notes.append(f"not a user variable, left alone: {name}")
    return deleted


def _close_figures() -> int:
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return 0
    count = len(plt.get_fignums())
    plt.close("all")
    return count


def _empty_cuda_cache(notes: list[str]) -> int | None:
    torch: Any = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if torch.cuda.is_available():
            reserved = torch.cuda.memory_reserved()
            torch.cuda.empty_cache()
            return int(reserved - torch.cuda.memory_reserved())
    except Exception as exc:
        notes.append(f"torch.cuda.empty_cache failed: {exc}")
    return None


def clean(ip: Any, reset: bool, names: list[str]) -> dict[str, Any]:
    """Delete what was asked from ``ip``'s namespace, close figures, collect garbage."""
    before = rss()
    notes: list[str] = []
    deleted = delete_names(ip.user_ns, ip.user_ns_hidden, names, reset, notes)
    if deleted:
        try:
            ip.displayhook.flush()  # Out, _, __, ___ and _N still hold deleted results
            notes.append("the output cache (Out, _) was cleared so deleted objects can be freed")
        except Exception:
            pass
    closed = _close_figures()
    collected = gc.collect()
    gpu_freed = _empty_cuda_cache(notes)
    after = rss()
    return {"collected_objects": collected, "rss_before": before, "rss_after": after,
            "freed_bytes": None if before is None or after is None else before - after,
            "gpu_freed_bytes": gpu_freed, "deleted": deleted, "closed_figures": closed,
            "notes": notes}


def cleanup(reset: bool, names: list[str]) -> dict[str, Any]:
    """Entry point in a kernel."""
    return clean(shell(), reset, names)
