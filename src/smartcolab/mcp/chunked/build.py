"""Chunked operations: validate the inputs and build each batch's program from the syntax tree.

The original pasted the loop body into an f-string, so only its first line ended up
inside the loop.  Here the body is dedented, parsed with ``ast`` (syntax errors are
reported with their line before anything runs) and its statements are placed, as
nodes, inside a ``for`` over ``range(start, stop)`` taken from a template that is
itself parsed.  The generated program is ``ast.unparse``-d to text only at the end,
so multi-line bodies, nested blocks, ``continue``, ``break`` and comments all work.

A batch reports what happened on its last stdout line: a marker, then JSON with the
iterations completed, the collected values, whether a ``break`` ended the loop and
the failing index.  The runner strips that line from the output people see.  On
failure the original exception is re-raised, so the job's traceback is the real one.
"""

from __future__ import annotations

import ast
import copy
import functools
import hashlib
import json
import re
import secrets
import textwrap
from dataclasses import asdict, dataclass, field
from typing import Any

from smartcolab.shared import kernel_code
from smartcolab.shared.errors import InvalidInput
from smartcolab.shared.protocol import MAX_CODE_CHARS, NAME_PATTERN

__all__ = [
    "MARKER_PREFIX",
    "BatchReport",
    "ChunkSpec",
    "batch_bounds",
    "build_batch",
    "make_spec",
    "parse_report",
]

MARKER_PREFIX = "\x1e__smartcolab_batch__"
# One collected value larger than this (as JSON) is kept as a shortened repr instead.
MAX_VALUE_CHARS = 20_000
MAX_BATCH_SIZE = 1_000_000
MAX_ITERATIONS = 10**12

# The report helper (kernelside/chunked/report.py) is installed once per kernel, as a module in
# sys.modules (not a variable people see), named after a digest of its source so that a
# changed helper is never mistaken for an old copy; each batch sends the installer as one
# string literal, which IPython's cell transformers pass over cheaply (they cost ~1 ms per
# 2 kB of code lines).
_HELPER_SOURCE = kernel_code.source("chunked.report")
HELPER_MODULE = "_smartcolab_chunked_" + hashlib.sha256(_HELPER_SOURCE.encode()).hexdigest()[:12]
_HELPER = (f"import sys, types\nmodule = types.ModuleType({HELPER_MODULE!r})\n"
           f"exec(compile({_HELPER_SOURCE!r}, '<smartcolab.kernelside.chunked.report>', 'exec'), "
           "vars(module))\n"
           f"sys.modules[{HELPER_MODULE!r}] = module\n")

# Names starting with _sc_ are the batch's own bookkeeping in the kernel namespace.
_TEMPLATE = f'''
_sc_batch = {{"start": _SC_START, "stop": _SC_STOP, "done": 0, "values": [],
             "broke": True, "failed": None, "elapsed_s": 0.0, "traceback": None}}
_sc_t0 = __import__("time").perf_counter()
try:
    for _sc_k in range(_SC_START, _SC_STOP):
        _SC_INDEX = _sc_k
        try:
            _SC_BODY
        except BaseException as _sc_exc:
            _sc_batch["failed"] = _sc_k
            # ipykernel points its arrow at the last line this frame ran (our finally),
            # so keep a plain traceback whose line numbers are the real ones.
            _sc_batch["traceback"] = "".join(__import__("traceback").format_exception(
                type(_sc_exc), _sc_exc, _sc_exc.__traceback__))[-_SC_CAP:]
            raise
        finally:
            if _sc_batch["failed"] is None:
                # A failing collect expression is a failure of this iteration too.
                _sc_batch["failed"] = _sc_k
                _SC_COLLECT
                _sc_batch["failed"] = None
                _sc_batch["done"] += 1
    else:
        _sc_batch["broke"] = False
finally:
    _sc_batch["elapsed_s"] = __import__("time").perf_counter() - _sc_t0
    _sc_h = __import__("sys").modules.get("{HELPER_MODULE}")
    if _sc_h is None:
        exec(_SC_HELPER, {{}})
        _sc_h = __import__("sys").modules["{HELPER_MODULE}"]
    _sc_h.report(globals(), _sc_batch, _SC_MARKER, _SC_CAP)
'''


@dataclass(frozen=True)
class ChunkSpec:
    """The validated inputs of one chunked operation; ``fingerprint`` identifies them."""

    checkpoint_name: str
    loop_code: str
    n_iterations: int
    batch_size: int
    setup_code: str = ""
    index_var: str = "i"
    collect: str | None = None
    body: list[ast.stmt] = field(default_factory=list, compare=False, repr=False)
    collect_expr: ast.expr | None = field(default=None, compare=False, repr=False)

    @property
    def fingerprint(self) -> str:
        """A digest of every input that changes what the operation computes."""
        inputs = {k: v for k, v in asdict(self).items()
                  if k not in ("checkpoint_name", "body", "collect_expr")}
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()

    def inputs(self) -> dict[str, Any]:
        """The inputs as plain JSON, as stored with the checkpoint."""
        return {k: v for k, v in asdict(self).items() if k not in ("body", "collect_expr")}


@dataclass
class BatchReport:
    """What a batch says about itself on its marker line."""

    start: int
    stop: int
    done: int
    broke: bool
    failed: int | None
    elapsed_s: float
    traceback: str | None = None
    # (index, value, is_repr): is_repr means the value could not be sent as JSON.
    values: list[tuple[int, Any, bool]] = field(default_factory=list)


def _syntax_error(what: str, exc: SyntaxError, code: str) -> InvalidInput:
    line = exc.lineno or 0
    lines = code.splitlines()
    text = lines[line - 1] if 0 < line <= len(lines) else (exc.text or "").rstrip("\n")
    return InvalidInput(
        f"{what} has a syntax error on line {line}: {exc.msg}: {text.strip()!r}. "
        "Fix it and call again; nothing was run.",
        details={"field": what, "line": line, "offset": exc.offset, "text": text,
                 "error": exc.msg})


def _parse(what: str, code: str, mode: str = "exec") -> ast.AST:
    try:
        return ast.parse(code, mode=mode)
    except SyntaxError as exc:
        raise _syntax_error(what, exc, code) from None
    except ValueError as exc:  # e.g. NUL bytes
        raise InvalidInput(f"{what} cannot be parsed: {exc}", details={"field": what}) from None


def _looks_like_ipython(code: str) -> bool:
    return any(line.lstrip().startswith(("%", "!")) for line in code.splitlines())


def make_spec(*, checkpoint_name: str, loop_code: str, n_iterations: int, batch_size: int,
              setup_code: str = "", index_var: str = "i", collect: str | None = None) -> ChunkSpec:
    """Validate the inputs of a chunked operation; raise ``InvalidInput`` before anything runs."""
    if not isinstance(checkpoint_name, str) or not re.fullmatch(NAME_PATTERN, checkpoint_name):
        raise InvalidInput(
            f"checkpoint_name {checkpoint_name!r} is not allowed: use 1-64 letters, digits, "
            "'_', '.' or '-', starting with a letter or digit.",
            details={"field": "checkpoint_name"})
    if not isinstance(index_var, str) or not index_var.isidentifier() or index_var.startswith("_sc_"):
        raise InvalidInput(f"index_var {index_var!r} must be a Python identifier (e.g. 'i').",
                           details={"field": "index_var"})
    if isinstance(n_iterations, bool) or not isinstance(n_iterations, int) or not (
            0 <= n_iterations <= MAX_ITERATIONS):
        raise InvalidInput(f"n_iterations must be an integer >= 0, got {n_iterations!r}.",
                           details={"field": "n_iterations"})
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not (
            1 <= batch_size <= MAX_BATCH_SIZE):
        raise InvalidInput(f"batch_size must be an integer from 1 to {MAX_BATCH_SIZE}, "
                           f"got {batch_size!r}.", details={"field": "batch_size"})
    for what, code in (("loop_code", loop_code), ("setup_code", setup_code),
                       ("collect", collect or "")):
        if len(code) > MAX_CODE_CHARS // 2:
            raise InvalidInput(f"{what} is too long ({len(code)} characters).",
                               details={"field": what})
    body_text = textwrap.dedent(loop_code).strip("\n")
    tree = _parse("loop_code", body_text)
    assert isinstance(tree, ast.Module)
    if not tree.body:
        raise InvalidInput("loop_code is empty: give the statements to run for each index.",
                           details={"field": "loop_code"})
    setup_text = textwrap.dedent(setup_code)
    if setup_text.strip() and not _looks_like_ipython(setup_text):
        _parse("setup_code", setup_text)
    collect_expr: ast.expr | None = None
    if collect is not None and collect.strip():
        expr_tree = _parse("collect", collect.strip(), mode="eval")
        assert isinstance(expr_tree, ast.Expression)
        collect_expr = expr_tree.body
    spec = ChunkSpec(checkpoint_name=checkpoint_name, loop_code=body_text,
                     n_iterations=n_iterations, batch_size=batch_size, setup_code=setup_text,
                     index_var=index_var, collect=collect.strip() if collect else None,
                     body=tree.body, collect_expr=collect_expr)
    # Compile one batch here: 'return' or 'yield' in the body, or a 'break' outside the
    # loop's reach, fail now rather than on the runtime.
    try:
        compile(build_batch(spec, 0, 1, marker="check"), "<loop_code>", "exec")
    except SyntaxError as exc:
        raise InvalidInput(f"loop_code cannot run inside a loop: {exc.msg}.",
                           details={"field": "loop_code", "error": exc.msg}) from None
    return spec


def batch_bounds(n_iterations: int, batch_size: int, start: int = 0) -> list[tuple[int, int]]:
    """The (start, stop) of every batch from ``start`` on."""
    return [(s, min(s + batch_size, n_iterations)) for s in range(start, n_iterations, batch_size)]


class _Fill(ast.NodeTransformer):
    def __init__(self, spec: ChunkSpec, start: int | str, stop: int | str, marker: str) -> None:
        # A str start/stop/marker slot is a name standing in for the literal (see _SLOTS).
        self.spec, self.start, self.stop, self.marker = spec, start, stop, marker

    def visit_Name(self, node: ast.Name) -> ast.AST:
        slots: dict[str, str | int] = {"_SC_START": self.start, "_SC_STOP": self.stop}
        if node.id in slots:
            value = slots[node.id]
            new: ast.expr = (ast.Name(value, ctx=ast.Load()) if isinstance(value, str)
                             else ast.Constant(value))
            return ast.copy_location(new, node)
        if node.id == "_SC_MARKER":
            new = (ast.Name(self.marker, ctx=ast.Load()) if self.marker == _SLOTS["marker"]
                   else ast.Constant(self.marker))
            return ast.copy_location(new, node)
        if node.id == "_SC_CAP":
            return ast.copy_location(ast.Constant(MAX_VALUE_CHARS), node)
        if node.id == "_SC_HELPER":
            return ast.copy_location(ast.Constant(_HELPER), node)
        if node.id == "_SC_INDEX":
            return ast.copy_location(ast.Name(self.spec.index_var, ctx=node.ctx), node)
        return node

    def visit_Expr(self, node: ast.Expr) -> ast.AST | list[ast.stmt]:
        if isinstance(node.value, ast.Name) and node.value.id == "_SC_BODY":
            return list(self.spec.body)
        if isinstance(node.value, ast.Name) and node.value.id == "_SC_COLLECT":
            if self.spec.collect_expr is None:
                return ast.Pass()
            # _sc_batch["values"].append((_sc_k, <collect>))
            append = ast.parse('_sc_batch["values"].append((_sc_k, None))').body[0]
            assert isinstance(append, ast.Expr) and isinstance(append.value, ast.Call)
            pair = append.value.args[0]
            assert isinstance(pair, ast.Tuple)
            pair.elts[1] = self.spec.collect_expr
            return append
        self.generic_visit(node)
        return node


_TEMPLATE_TREE = ast.parse(_TEMPLATE)


# Building a program from the tree costs ~2 ms; per operation it is built once with
# these unguessable names in place of start, stop and marker, which are then swapped
# for literals (identifiers for literals: no code is pasted into indentation).
_TOKEN = secrets.token_hex(8)
_SLOTS = {"start": f"_sc_start_{_TOKEN}", "stop": f"_sc_stop_{_TOKEN}",
          "marker": f"_sc_marker_{_TOKEN}"}


def _build(spec: ChunkSpec, start: int | str, stop: int | str, marker: str) -> str:
    tree = _Fill(spec, start, stop, marker).visit(copy.deepcopy(_TEMPLATE_TREE))
    ast.fix_missing_locations(tree)
    return ast.unparse(tree) + "\n"


@functools.lru_cache(maxsize=32)
def _program_with_slots(spec: ChunkSpec) -> str | None:
    if _TOKEN in spec.loop_code or _TOKEN in (spec.collect or ""):
        return None
    return _build(spec, _SLOTS["start"], _SLOTS["stop"], _SLOTS["marker"])


def build_batch(spec: ChunkSpec, start: int, stop: int, *, marker: str) -> str:
    """The program of one batch, iterations ``start`` to ``stop - 1``."""
    text = _program_with_slots(spec)
    if text is None:
        return _build(spec, start, stop, marker)
    return (text.replace(_SLOTS["start"], repr(start)).replace(_SLOTS["stop"], repr(stop))
            .replace(_SLOTS["marker"], repr(marker)))


def marker_for(job_id: str) -> str:
    """The marker line prefix of one batch job (hard to print by accident)."""
    return f"{MARKER_PREFIX}:{hashlib.sha256(job_id.encode()).hexdigest()[:16]}"


def parse_report(text: str, marker: str) -> tuple[BatchReport | None, str]:
    """Find the batch's report in its output; return it and the output without it."""
    pos = text.rfind(marker + " ")
    if pos < 0:
        return None, text
    end = text.find("\n", pos)
    line = text[pos + len(marker) + 1: end if end >= 0 else len(text)]
    # The report line starts with its own newline, so take that one back out.
    cleaned = text[:pos].removesuffix("\n") + (text[end + 1:] if end >= 0 else "")
    try:
        raw = json.loads(line)
        report = BatchReport(
            start=int(raw["start"]), stop=int(raw["stop"]), done=int(raw["done"]),
            broke=bool(raw["broke"]), failed=None if raw["failed"] is None else int(raw["failed"]),
            elapsed_s=float(raw["elapsed_s"]), traceback=raw.get("traceback"),
            values=[(int(i), v, bool(r)) for i, v, r in raw["values"]])
    except (ValueError, KeyError, TypeError):
        return None, text
    return report, cleaned
