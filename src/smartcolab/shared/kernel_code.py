"""The cells both sides send into a Jupyter kernel, built from ``smartcolab.kernelside``.

The code that runs inside kernels lives in real modules (``kernelside/``: linted, typed,
tested in process).  This loader reads their source (never imports them: shared and
kernelside import nothing of ours) and wraps it in one cell: ``kernelside/boot.py``
loads the modules as a private package, calls an entry point and prints its result as
one JSON line after ``MARKER``, which ``parse`` reads.  The cell runs as
``exec(compile(...), {fresh dict})``, so it leaves no name in the user's namespace (with
``store_history=False``, not even ``_`` or ``Out``).  The runtime server sends these to
its own kernels and the bridge to a plain Jupyter Server's kernels; neither imports the
other.
"""

from __future__ import annotations

import ast
import functools
import json
from importlib import resources
from typing import Any

from smartcolab.shared.errors import KernelUnavailable

__all__ = ["EPOCH_EXPRESSION", "MARKER", "call", "expression_value", "parse", "source"]

MARKER = "__smartcolab_json__:"
PACKAGE = "smartcolab.kernelside"
# Reads back the token that ``kernelside/epoch.py`` keeps in builtins, as a user
# expression: its value travels in the execute_reply, which needs no IOPub.
EPOCH_EXPRESSION = "__import__('builtins').__dict__.get('__smartcolab_epoch__')"


@functools.cache
def source(module: str) -> str:
    """The source text of ``smartcolab.kernelside.<module>`` (dotted: ``tab.agent``)."""
    *packages, name = module.split(".")
    path = resources.files(PACKAGE)
    for package in packages:
        path = path.joinpath(package)
    return path.joinpath(f"{name}.py").read_text(encoding="utf-8")


def _siblings(module: str) -> list[str]:
    """The kernelside modules ``module`` imports (relative imports only), as dotted names."""
    package = module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source(module))):
        if isinstance(node, ast.ImportFrom) and node.level:
            up = node.level - 1
            if up > len(package):
                raise ValueError(f"kernelside.{module}: a relative import leaves kernelside")
            base = package[:len(package) - up]
            found += ([".".join([*base, node.module])] if node.module
                      else [".".join([*base, a.name]) for a in node.names])
    return found


@functools.cache
def bundle(module: str) -> tuple[tuple[str, str], ...]:
    """``module`` and what it imports, dependencies first, as (name, source) pairs."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name not in order:
            for dep in _siblings(name):
                visit(dep)
            order.append(name)

    visit(module)
    return tuple((name, source(name)) for name in order)


def call(module: str, function: str, args: dict[str, Any] | None = None) -> str:
    """A cell that runs ``kernelside.<module>.<function>(**args)`` in the kernel and prints
    its JSON result after ``MARKER``."""
    program = (source("boot") + "\n\nrun(" + repr(list(bundle(module))) + ", "
               + repr(module) + ", " + repr(function) + ", "
               + repr(json.dumps(args or {})) + ", " + repr(MARKER) + ")\n")
    return (f"exec(compile({program!r}, '<smartcolab>', 'exec'), "
            "{'__builtins__': __builtins__, '__name__': '_smartcolab_boot'})")


def expression_value(reply: dict[str, Any], name: str) -> Any:
    """The value of user expression ``name`` in an ``execute_reply`` (None if absent)."""
    found = (reply.get("user_expressions") or {}).get(name) or {}
    text = (found.get("data") or {}).get("text/plain") if found.get("status") == "ok" else None
    if not isinstance(text, str):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None


def parse(stdout: str) -> Any:
    """The JSON an entry point printed after the marker."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    raise KernelUnavailable("the kernel did not answer the inspection request; "
                            "its output was: " + stdout[-500:])
