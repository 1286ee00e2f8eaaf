"""Load kernel-side modules from their source inside a kernel, call one entry point.

This is the first thing a kernel receives (``shared/kernel_code.py`` builds the cell):
the modules arrive as source text, are executed as a private package
(``_smartcolab_kernelside``, so their relative imports work), the entry point runs, and
its result is printed as one JSON line after a marker.  The package is removed from
``sys.modules`` afterwards: nothing is left behind, and a newer bridge never meets an
older copy.
"""

from __future__ import annotations

import json
import sys
import types
from typing import Any

PACKAGE = "_smartcolab_kernelside"


def load(sources: list[tuple[str, str]]) -> dict[str, types.ModuleType]:
    """Execute ``(name, source)`` pairs, in order, as modules of the private package.

    A dotted name (``tab.agent``) is a module of a subpackage, made here as an empty
    package (so ``from ..job_agent import`` works in it).  The caller removes them all from
    ``sys.modules`` (``unload``).
    """
    packages = {"": _package(PACKAGE)}
    loaded = {}
    for name, source in sources:
        parent, _, leaf = name.rpartition(".")
        package = _subpackage(packages, parent)
        full = f"{PACKAGE}.{name}"
        module = types.ModuleType(full)
        module.__package__ = package.__name__
        sys.modules[full] = module
        exec(compile(source, f"<smartcolab.kernelside.{name}>", "exec"), vars(module))
        setattr(package, leaf, module)
        loaded[name] = module
    return loaded


def _package(full: str) -> types.ModuleType:
    package = types.ModuleType(full)
    package.__path__ = []
    package.__package__ = full
    sys.modules[full] = package
    return package


def _subpackage(packages: dict[str, types.ModuleType], name: str) -> types.ModuleType:
    """The package ``name`` (dotted, relative to ours), made with its parents if new."""
    if name not in packages:
        parent, _, leaf = name.rpartition(".")
        above = _subpackage(packages, parent)
        packages[name] = _package(f"{PACKAGE}.{name}")
        setattr(above, leaf, packages[name])
    return packages[name]


def unload(names: list[str]) -> None:
    """Remove the modules ``names`` (dotted) and every package above them."""
    for name in names:
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            sys.modules.pop(".".join([PACKAGE, *parts[:end]]), None)
    sys.modules.pop(PACKAGE, None)


def run(sources: list[tuple[str, str]], module: str, function: str, args_json: str,
        marker: str) -> Any:
    """Load ``sources``, call ``module.function(**args)``, print marker + its JSON result."""
    try:
        loaded = load(sources)
        result = getattr(loaded[module], function)(**json.loads(args_json))
    finally:
        unload([name for name, _ in sources])
    print(marker + json.dumps(result))
    return result
