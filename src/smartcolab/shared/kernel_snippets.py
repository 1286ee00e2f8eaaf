"""Code both sides send into a Jupyter kernel: variables and cleanup, computed in the kernel.

Shared like ``shared/protocol.py`` and for the same reason: the runtime server sends these to
its own kernels (``runtime/engine/introspect.py``) and the bridge sends them to a plain Jupyter
Server's kernels (``client/jupyter/snippets.py``); neither imports the other.  Each
snippet runs as ``exec(compile(SRC), {fresh dict})`` without history, so it leaves no
name in the user's namespace (not even ``_`` or ``Out``), and prints one JSON line after
a marker, which ``parse`` reads.
"""

from __future__ import annotations

import json
from typing import Any

from smartcolab.shared.errors import KernelUnavailable

__all__ = ["CLEANUP_SRC", "MARKER", "VARIABLES_SRC", "parse", "wrap"]

MARKER = "__smartcolab_json__:"

_COMMON = r'''
import json as _json, sys as _sys, types as _types
from IPython import get_ipython as _gi
_ip = _gi()
_ns = _ip.user_ns
_hidden = _ip.user_ns_hidden
_args = _json.loads(_sc_args)

def _user_names(private):
    for name in list(_ns):
        value = _ns[name]
        if name in _hidden and _hidden[name] is value:
            continue
        if not private and (name.startswith("_") or isinstance(value, _types.ModuleType)):
            continue
        yield name, value

def _rss():
    try:
        import psutil
        return psutil.Process().memory_info().rss
    except Exception:
        try:
            import os
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except Exception:
            return None
'''

VARIABLES_SRC = _COMMON + r'''
import reprlib as _reprlib
_simple = (int, float, complex, bool, str, bytes, type(None), list, tuple, dict, set, frozenset)

def _describe(name, v):
    t = type(v)
    mod = getattr(t, "__module__", "builtins")
    info = {"name": name, "type": t.__qualname__ if mod == "builtins" else f"{mod}.{t.__qualname__}"}
    if isinstance(v, type) or callable(v) and not hasattr(v, "shape"):
        return info
    try:
        shape = getattr(v, "shape", None)
        if isinstance(shape, tuple) and all(isinstance(int(s), int) for s in shape):
            info["shape"] = [int(s) for s in shape]
    except Exception:
        pass
    if "shape" not in info:
        try:
            info["length"] = len(v)
        except Exception:
            pass
    try:
        dtype = getattr(v, "dtype", None)
        if dtype is not None:
            info["dtype"] = str(dtype)
    except Exception:
        pass
    size = None
    try:
        if hasattr(v, "element_size") and hasattr(v, "nelement"):
            size = int(v.element_size() * v.nelement())
        elif mod.startswith("pandas") and hasattr(v, "memory_usage"):
            usage = v.memory_usage(deep=False)
            size = int(usage.sum()) if hasattr(usage, "sum") else int(usage)
        elif isinstance(getattr(v, "nbytes", None), int):
            size = int(v.nbytes)
        else:
            size = _sys.getsizeof(v)
            if isinstance(v, (list, tuple, set, frozenset)):
                size += sum(_sys.getsizeof(x) for x in list(v)[:10000])
            elif isinstance(v, dict):
                size += sum(_sys.getsizeof(k) + _sys.getsizeof(x) for k, x in list(v.items())[:10000])
    except Exception:
        pass
    if size is not None:
        info["size_bytes"] = size
    if isinstance(v, _simple):
        try:
            info["preview"] = _reprlib.repr(v)[:120]
        except Exception:
            pass
    return info

print(MARKER + _json.dumps([_describe(n, v) for n, v in sorted(_user_names(_args["private"]))]))
'''

CLEANUP_SRC = _COMMON + r'''
import gc as _gc
_before = _rss()
_deleted, _notes = [], []
if _args["reset"]:
    _targets = [n for n, _v in _user_names(False)]
else:
    _targets = _args["names"]
for _n in _targets:
    if _n in _ns and not (_n in _hidden and _hidden[_n] is _ns[_n]):
        del _ns[_n]
        _deleted.append(_n)
    else:
        _notes.append(f"not a user variable, left alone: {_n}")
if _deleted:
    try:
        _ip.displayhook.flush()  # Out, _, __, ___ and _N still hold deleted results
        _notes.append("the output cache (Out, _) was cleared so deleted objects can be freed")
    except Exception:
        pass
_closed = 0
if "matplotlib.pyplot" in _sys.modules:
    _plt = _sys.modules["matplotlib.pyplot"]
    _closed = len(_plt.get_fignums())
    _plt.close("all")
_collected = _gc.collect()
_gpu_freed = None
_torch = _sys.modules.get("torch")
if _torch is not None:
    try:
        if _torch.cuda.is_available():
            _r0 = _torch.cuda.memory_reserved()
            _torch.cuda.empty_cache()
            _gpu_freed = int(_r0 - _torch.cuda.memory_reserved())
    except Exception as _e:
        _notes.append(f"torch.cuda.empty_cache failed: {_e}")
_after = _rss()
print(MARKER + _json.dumps({
    "collected_objects": _collected, "rss_before": _before, "rss_after": _after,
    "freed_bytes": None if _before is None or _after is None else _before - _after,
    "gpu_freed_bytes": _gpu_freed, "deleted": _deleted, "closed_figures": _closed,
    "notes": _notes}))
'''


def wrap(src: str, args: dict[str, Any] | None = None) -> str:
    """A cell that runs ``src`` in a fresh namespace: nothing is left in the user's."""
    body = "import json as _json\n" + src.replace("MARKER", repr(MARKER))
    return (f"exec(compile({body!r}, '<smartcolab>', 'exec'), "
            f"{{'__builtins__': __builtins__, '_sc_args': {json.dumps(args or {})!r}}})")


def parse(stdout: str) -> Any:
    """The JSON a snippet printed after the marker."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    raise KernelUnavailable("the kernel did not answer the inspection request; "
                            "its output was: " + stdout[-500:])
