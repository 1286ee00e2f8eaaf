"""Guarded mode: a seatbelt against accidents, NOT a sandbox.

With ``smartcolab serve --guarded`` the code of every job is parsed (after IPython
has turned ``!cmd`` and ``%magic`` lines into ordinary calls) and refused, with the
reason, before it reaches a kernel when it plainly calls:

* a shell or another program: ``os.system``, ``os.popen``, ``os.exec*``,
  ``os.spawn*``, ``pty.spawn``, anything in ``subprocess``,
  ``asyncio.create_subprocess_*``, ``!cmd`` and the ``%%bash``/``%sx`` magics;
* ``shutil.rmtree`` on a literal path that is a root, a parent of a root, or
  outside every root;
* ``os.remove``/``unlink``/``rmdir``/``removedirs`` or ``Path(...).unlink()``/
  ``rmdir()`` on a literal path outside every root.

It catches what a model writes by mistake, not what someone writes on purpose:
``eval``, string building, ``ctypes``, a pip package or a file written and then
imported all go around it.  Anyone who holds the secret can run code as the
runtime's user; guarded mode does not change that.
"""

from __future__ import annotations

import ast
import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from smartcolab.runtime.security.audit import code_digest
from smartcolab.shared.errors import GuardRefused
from smartcolab.shared.protocol import JobSubmit

if TYPE_CHECKING:
    from smartcolab.runtime.state import RuntimeState

SEATBELT_NOTE = ("guarded mode is a seatbelt against accidents, not a sandbox; the runtime's "
                 "owner can turn it off by serving without --guarded")
_SHELL_CALLS = frozenset({
    "os.system", "os.popen", "posix.system", "pty.spawn", "os.posix_spawn", "os.posix_spawnp",
    "asyncio.create_subprocess_shell", "asyncio.create_subprocess_exec",
})
_SHELL_PREFIXES = ("subprocess.", "os.exec", "os.spawn")
_REMOVE_CALLS = frozenset({"os.remove", "os.unlink", "os.rmdir", "os.removedirs"})
_PATH_REMOVE_METHODS = frozenset({"unlink", "rmdir"})
_SHELL_MAGICS = frozenset({"bash", "sh", "script", "system", "sx", "perl", "ruby", "zsh"})
# Names a notebook namespace usually holds from an earlier cell.
_DEFAULT_NAMES = {name: name for name in ("os", "subprocess", "shutil", "pty", "posix",
                                          "asyncio", "pathlib", "importlib")}
_DEFAULT_NAMES["Path"] = "pathlib.Path"


@dataclass(frozen=True)
class Refusal:
    line: int
    reason: str


def check_code(code: str, roots: list[Path]) -> None:
    """Raise ``GuardRefused`` if ``code`` plainly does something guarded mode refuses.

    Code that does not parse is let through: the kernel reports the syntax error.
    """
    source = _ipython_to_python(code)
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return
    guard = _Guard([Path(r).resolve() for r in roots])
    try:
        guard.run(tree)
    except RecursionError:
        return
    if guard.refusals:
        first = guard.refusals[0]
        raise GuardRefused(
            f"guarded mode refused this code before running it: line {first.line}: "
            f"{first.reason}. Nothing ran. Note: {SEATBELT_NOTE}.",
            details={"refusals": [{"line": r.line, "reason": r.reason}
                                  for r in guard.refusals[:20]]},
        )


async def check_submission(state: RuntimeState, job: JobSubmit, client: str | None) -> None:
    """The submit path's one call: check the job's code when the runtime is guarded."""
    if not state.config.guarded:
        return
    try:
        # Off the event loop: a megabyte of code takes a while to parse.
        await asyncio.to_thread(check_code, job.code, state.config.roots)
    except GuardRefused as exc:
        state.audit.event("guard_refused", job_id=job.job_id, client=client,
                          code_sha256=code_digest(job.code),
                          reasons=[r["reason"] for r in exc.details.get("refusals", [])])
        raise


def _ipython_to_python(code: str) -> str:
    """Turn ``!cmd`` / ``%magic`` lines into the calls IPython would make."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover - ipykernel always brings IPython
        return code
    try:
        return str(TransformerManager().transform_cell(code))  # type: ignore[no-untyped-call]
    except Exception:  # any transform failure: check the raw text instead
        return code


class _Guard:
    def __init__(self, roots: list[Path]) -> None:
        self.roots = roots
        self.names: dict[str, str] = dict(_DEFAULT_NAMES)
        self.refusals: list[Refusal] = []

    def run(self, tree: ast.AST) -> None:
        # Imports first, anywhere in the cell: a call may come before its import.
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.names[alias.asname] = alias.name
                    else:
                        head = alias.name.split(".")[0]
                        self.names[head] = head
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    if alias.name != "*":
                        self.names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                reason = self._check_call(node)
                if reason:
                    self.refusals.append(Refusal(getattr(node, "lineno", 0), reason))

    # -------------------------------------------------------------- names
    def _qualname(self, node: ast.expr) -> str | None:
        """The dotted name an expression refers to, through imports and aliases."""
        if isinstance(node, ast.Name):
            return self.names.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self._qualname(node.value)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Call):
            func = self._qualname(node.func)
            arg = _literal_str(node.args[0]) if node.args else None
            if func in ("__import__", "importlib.import_module") and arg:
                return arg
            if func == "getattr" and len(node.args) >= 2:
                base = self._qualname(node.args[0])
                attr = _literal_str(node.args[1])
                return f"{base}.{attr}" if base and attr else None
            if func == "get_ipython":
                return "get_ipython()"
        return None

    # -------------------------------------------------------------- rules
    def _check_call(self, node: ast.Call) -> str | None:
        if isinstance(node.func, ast.Attribute) and node.func.attr in _PATH_REMOVE_METHODS:
            target = node.func.value
            if isinstance(target, ast.Call) and self._qualname(target.func) == "pathlib.Path":
                return self._check_remove(f"Path(...).{node.func.attr}()",
                                          target.args[0] if target.args else None)
        name = self._qualname(node.func)
        if name is None:
            return None
        if name in _SHELL_CALLS or name.startswith(_SHELL_PREFIXES):
            return f"{name}() starts a shell command or another program"
        if name in ("get_ipython().system", "get_ipython().getoutput"):
            return "shell commands (!cmd) are refused; use %pip for package installs"
        if name in ("get_ipython().run_cell_magic", "get_ipython().run_line_magic"):
            magic = _literal_str(node.args[0]) if node.args else None
            if magic in _SHELL_MAGICS:
                return f"the %{magic} magic runs shell commands"
            return None
        if name == "shutil.rmtree":
            return self._check_rmtree(node)
        if name in _REMOVE_CALLS:
            return self._check_remove(name, _first_arg(node, "path"))
        return None

    def _check_rmtree(self, node: ast.Call) -> str | None:
        path = self._literal_path(_first_arg(node, "path"))
        if path is None:
            return None
        for root in self.roots:
            if path == root or path in root.parents:
                return f"shutil.rmtree({str(path)!r}) would delete the root {str(root)!r}"
        if not self._inside_roots(path):
            return f"shutil.rmtree({str(path)!r}) deletes outside the runtime's roots"
        return None

    def _check_remove(self, what: str, arg: ast.expr | None) -> str | None:
        path = self._literal_path(arg)
        if path is None or self._inside_roots(path):
            return None
        return f"{what} on {str(path)!r} deletes outside the runtime's roots"

    def _literal_path(self, arg: ast.expr | None) -> Path | None:
        """A literal path argument, resolved as the kernel would (relative to root 0)."""
        if isinstance(arg, ast.Call) and self._qualname(arg.func) == "pathlib.Path":
            arg = arg.args[0] if arg.args else None
        text = _literal_str(arg) if arg is not None else None
        if text is None or "\x00" in text:
            return None
        raw = Path(os.path.expanduser(text))
        base = self.roots[0] if self.roots else Path.cwd()
        try:
            return (raw if raw.is_absolute() else base / raw).resolve()
        except (OSError, RuntimeError):
            return None

    def _inside_roots(self, path: Path) -> bool:
        return any(path == root or root in path.parents for root in self.roots)


def _first_arg(node: ast.Call, keyword: str) -> ast.expr | None:
    if node.args:
        return node.args[0]
    for kw in node.keywords:
        if kw.arg == keyword:
            return kw.value
    return None


def _literal_str(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None
