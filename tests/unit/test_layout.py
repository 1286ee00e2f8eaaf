"""The house plan: which part of the package may import which (see DESIGN.md, Layout)."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "src" / "smartcolab"

# part -> the parts of ours it may import (itself always allowed).  kernelside code is
# sent to kernels by source; client and mcp may load it for that purpose.
ALLOWED: dict[str, set[str]] = {
    "shared": set(),
    "kernelside": set(),
    "runtime": {"shared", "kernelside"},
    "client": {"shared", "kernelside"},
    "mcp": {"client", "shared", "kernelside"},
    "cli": {"runtime", "client", "mcp", "shared", "kernelside"},
}
TOP_LEVEL_OK = {"__init__.py", "__main__.py"}
# A folder is one part or one piece of a part: past this many modules (its __init__.py not
# counted) it hides what lives in it; split it into subpackages whose names say so.
MAX_MODULES = 12
# STYLE.md: "a module that grows past ~400 lines is two".  The wire models stay one module
# by design (the one file both sides share, with the error types).
MAX_LINES = 400
LONG_BY_DESIGN = {"shared/protocol.py"}


def part_of(path: Path) -> str:
    return path.relative_to(PKG).parts[0]


def imported_parts(path: Path, source: str | None = None) -> set[str]:
    """The parts of smartcolab a module imports (absolute and relative imports)."""
    tree = ast.parse(path.read_text() if source is None else source)
    own = path.relative_to(PKG.parent).with_suffix("").parts
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = own[: len(own) - node.level]
                names = [".".join([*base, node.module] if node.module else base)]
            elif node.module:
                names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "smartcolab" and len(parts) > 1:
                found.add(parts[1])
    return found


def modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if p.parent != PKG)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_follow_the_house_plan(path: Path) -> None:
    part = part_of(path)
    assert part in ALLOWED, f"{part}/ is not a part of the house plan; add it to DESIGN.md first"
    wrong = imported_parts(path) - ALLOWED[part] - {part}
    assert not wrong, f"{path.relative_to(PKG)} ({part}) imports {sorted(wrong)}"


def test_only_entry_points_at_the_top() -> None:
    top = {p.name for p in PKG.glob("*.py")}
    assert top <= TOP_LEVEL_OK, f"modules outside every part: {sorted(top - TOP_LEVEL_OK)}"


def modules_per_folder(paths: list[Path]) -> Counter[Path]:
    return Counter(p.parent for p in paths if p.name != "__init__.py")


def test_no_folder_holds_more_than_twelve_modules() -> None:
    crowded = {str(folder.relative_to(PKG)): n
               for folder, n in modules_per_folder(modules()).items() if n > MAX_MODULES}
    assert not crowded, f"folders over {MAX_MODULES} modules: {crowded}"


def too_long(lengths: dict[str, int]) -> dict[str, int]:
    return {name: n for name, n in lengths.items() if n > MAX_LINES and name not in LONG_BY_DESIGN}


def test_no_module_grows_past_four_hundred_lines() -> None:
    long = too_long({str(p.relative_to(PKG)): len(p.read_text().splitlines())
                     for p in PKG.rglob("*.py")})
    assert not long, f"modules over {MAX_LINES} lines (split each into two): {long}"


def test_every_folder_is_a_package_that_says_what_lives_there() -> None:
    for folder in {p.parent for p in PKG.rglob("*.py")}:
        init = folder / "__init__.py"
        assert init.exists(), f"{folder.relative_to(PKG)}/ has no __init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init.relative_to(PKG)}: no docstring"


def test_the_checker_sees_a_violation() -> None:
    """The rule test itself can fail: a client module importing mcp and runtime is caught."""
    assert "client" in imported_parts(PKG / "mcp" / "server.py")
    source = "from smartcolab.mcp import results\nfrom ..runtime import state\n"
    assert imported_parts(PKG / "client" / "probe_module.py", source) == {"mcp", "runtime"}
    crowded = [PKG / "cli" / f"m{i}.py" for i in range(MAX_MODULES + 1)] + [PKG / "cli" / "__init__.py"]
    assert modules_per_folder(crowded) == {PKG / "cli": MAX_MODULES + 1}
    assert too_long({"shared/protocol.py": 900, "cli/app.py": 401, "cli/user.py": 400}) \
        == {"cli/app.py": 401}
