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

    The caller removes them from ``sys.modules`` (``unload``).
    """
    package = types.ModuleType(PACKAGE)
    package.__path__ = []
    sys.modules[PACKAGE] = package
    loaded = {}
    for name, source in sources:
        full = f"{PACKAGE}.{name}"
        module = types.ModuleType(full)
        module.__package__ = PACKAGE
        sys.modules[full] = module
        exec(compile(source, f"<smartcolab.kernelside.{name}>", "exec"), vars(module))
        setattr(package, name, module)
        loaded[name] = module
    return loaded


def unload(names: list[str]) -> None:
    for name in names:
        sys.modules.pop(f"{PACKAGE}.{name}", None)
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
