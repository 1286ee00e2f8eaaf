"""Package-manager magics that fail like any other failing code.

IPython's ``%pip`` (and ``%conda``, ``%mamba``, ``%micromamba``, ``%uv``) run the tool as
a subprocess and only print what it says: a failed install still ends the cell "ok", so
a job that installs nothing reports ``succeeded``.  Here each such magic is wrapped:
after the original runs, the exit status it left in ``_exit_code`` (set by IPython's
``system``) is checked, and a non-zero status raises ``CalledProcessError``, so the cell,
and the job, fail with pip's own output above the error.  ``!pip`` is left as it is: a
shell escape in a notebook never stops a cell.
"""

from __future__ import annotations

import subprocess
from typing import Any

GUARDED = ("pip", "conda", "mamba", "micromamba", "uv")
_UNSET = object()


def _guard(ip: Any, name: str, inner: Any) -> Any:
    def magic(line: str = "", *args: Any, **kwargs: Any) -> Any:
        ns = ip.user_ns
        before = ns.pop("_exit_code", _UNSET)
        result = inner(line, *args, **kwargs)
        status = ns.get("_exit_code", _UNSET)
        if status is _UNSET:  # this implementation does not report a status: keep quiet
            if before is not _UNSET:
                ns["_exit_code"] = before
            return result
        if isinstance(status, int) and status != 0:
            raise subprocess.CalledProcessError(status, f"%{name} {line}".strip())
        return result

    magic.__doc__ = getattr(inner, "__doc__", None)
    magic._sc_guarded = True  # type: ignore[attr-defined]
    return magic


def guard_install_magics(ip: Any) -> list[str]:
    """Wrap the package-manager line magics this kernel has; the names wrapped."""
    line_magics = ip.magics_manager.magics.get("line", {})
    wrapped = []
    for name in GUARDED:
        inner = line_magics.get(name)
        if inner is None:
            continue
        resolve = getattr(type(inner), "_resolve", None)
        if resolve is not None:  # IPython 9 lists magics before importing them
            try:
                inner = resolve(inner)
            except Exception:
                continue
        if getattr(inner, "_sc_guarded", False):
            continue
        ip.register_magic_function(_guard(ip, name, inner), magic_kind="line", magic_name=name)
        wrapped.append(name)
    return wrapped
