"""Readable value names in ``--help``: ``--port INTEGER``, not ``--port <int>``.

Typer 0.2x labels every option with its Python annotation (``<bool>`` after a flag,
``<list[Path]>`` after a repeatable option).  Click's names (TEXT, INTEGER, FLOAT,
PATH) are what people know from other tools, and a flag takes no value at all, so
both parameter classes are given this one label function.  An explicit ``metavar=``
still wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import typer.core

_NAMES: dict[object, str] = {str: "TEXT", int: "INTEGER", float: "NUMBER", Path: "PATH"}


def readable_type(param: Any, ctx: Any = None) -> str | None:
    """The label shown after an option or argument in help, or None for a flag."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    if getattr(param, "metavar", None):
        return str(param.metavar)
    desc = param.type_descriptor
    if desc.is_choice and desc.choices:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices)
    if desc.is_path:
        return "PATH"
    annotation = desc.annotation
    if desc.is_list and get_args(annotation):
        annotation = get_args(annotation)[0]
    if annotation is bool:
        return None
    return _NAMES.get(annotation, getattr(annotation, "__name__", "VALUE").upper())


def install() -> None:
    """Give typer's option and argument classes the readable labels (idempotent)."""
    for cls in (typer.core.TyperOption, typer.core.TyperArgument):
        if hasattr(cls, "display_type_rich"):
            patched: Any = readable_type
            cls.display_type_rich = patched  # type: ignore[method-assign]
