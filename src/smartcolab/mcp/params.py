"""Typed tool parameters, and how a tools module's functions become strict MCP tools.

The SDK builds each tool's argument model from its signature; ``build_tools`` makes
that model strict (unknown arguments refused, no ``"60"`` -> 60 or ``"yes"`` -> true),
turns validation errors into one short text that lists the valid arguments, and
publishes a compact input schema (no generated titles, no ``anyOf`` with null for an
omittable parameter, no regex patterns: the server checks them and says what is
wrong). Every definition costs context in every conversation: see
docs/bridge.md, "Tool surface".
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp.types import ToolAnnotations
from pydantic import ConfigDict, Field, ValidationError, create_model

from smartcolab.shared.protocol import JOB_ID_PATTERN, MAX_CODE_CHARS, MAX_TIMEOUT_S, NAME_PATTERN

# Described once, in list_runtimes and run_code_quick: 17 and 9 copies cost context.
RuntimeName = Annotated[str | None, Field(default=None, pattern=NAME_PATTERN)]
SessionName = Annotated[str, Field(default="main", pattern=NAME_PATTERN)]
Code = Annotated[str, Field(
    min_length=1, max_length=MAX_CODE_CHARS,
    description="Python, as in a notebook cell (%pip, !shell work).")]
JobId = Annotated[str, Field(pattern=JOB_ID_PATTERN)]
Timeout = Annotated[float | None, Field(
    gt=0, le=MAX_TIMEOUT_S, description="Job timeout in seconds; null: no limit.")]


def require_code(code: str) -> str:
    """Empty or whitespace-only code is refused before anything is sent."""
    if not code.strip():
        raise ToolError("invalid_input: code is empty. Pass the Python source to run.")
    return code


ToolFn = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class ToolDef:
    """A tool: a module-level async function, its title and annotations.

    ``defaults`` names parameters whose default is a setting (the model sees the
    configured value in the schema); the server fills them in when it adds the tool.
    ``meta`` is the tool's ``_meta`` in tools/list.
    """

    fn: ToolFn
    # None: clients show the name. A title that only restates the name costs context.
    title: str | None
    annotations: ToolAnnotations
    defaults: Callable[[Any], Mapping[str, Any]] | None = field(default=None)
    meta: dict[str, Any] | None = field(default=None)


def with_defaults(fn: ToolFn, defaults: Mapping[str, Any]) -> ToolFn:
    """``fn`` with some parameter defaults replaced (in the signature the SDK reads)."""
    sig = inspect.signature(fn, eval_str=True)
    params = [p.replace(default=defaults[p.name]) if p.name in defaults else p
              for p in sig.parameters.values()]

    @functools.wraps(fn)
    async def tool(*args: Any, **kwargs: Any) -> Any:
        return await fn(*args, **kwargs)

    tool.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return tool


class _StrictArgs(ArgModelBase):
    # JSON gives numbers and booleans their own types: a string is a caller's mistake.
    model_config = ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=True)


class StrictTool(Tool):
    """A tool whose arguments are checked before the SDK sees them, errors in plain words."""

    async def run(self, arguments: dict[str, Any], context: Any,
                  convert_result: bool = False) -> Any:
        meta = self.fn_metadata
        try:
            meta.arg_model.model_validate(meta.pre_parse_json(arguments))
        except ValidationError as exc:
            raise ToolError(argument_error(self.name, meta.arg_model, exc)) from exc
        return await super().run(arguments, context, convert_result)


def _arg_names(model: type[ArgModelBase]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def argument_error(tool: str, model: type[ArgModelBase], exc: ValidationError) -> str:
    """What was wrong with the arguments, and which arguments the tool takes."""
    unknown: list[str] = []
    problems: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False):
        name = str(err["loc"][0]) if err["loc"] else "arguments"
        if err["type"] == "extra_forbidden":
            unknown.append(name)
            continue
        if err["type"] == "missing":
            msg = "required"
        else:
            msg = err["msg"].replace("Input should be None", "or null")
            value = err.get("input")
            if isinstance(value, str) and err["type"] in ("float_type", "int_type", "bool_type"):
                msg += f" (got the string {value[:40]!r}: send numbers and booleans unquoted)"
            elif err["type"] not in ("string_too_long", "too_long"):
                msg += f" (got {str(value)[:60]!r})" if isinstance(value, str) else ""
        problems.setdefault(name, []).append(msg)
    lines = [f"invalid_input: bad arguments for {tool}."]
    if unknown:
        lines.append(f"- unknown argument{'s' if len(unknown) > 1 else ''}: "
                     + ", ".join(repr(u[:60]) for u in unknown[:10]))
    lines += [f"- {name}: {'; '.join(dict.fromkeys(msgs))}" for name, msgs in problems.items()]
    fields = model.model_fields
    valid = [f"{n} (required)" if fields[n].is_required() else n for n in fields]
    lines.append(f"Valid arguments: {', '.join(valid) or 'none'}.")
    lines.append("What to do: fix the arguments and call again.")
    return "\n".join(lines)


def _strict(model: type[ArgModelBase]) -> type[ArgModelBase]:
    fields: dict[str, Any] = {n: (f.annotation, f) for n, f in model.model_fields.items()}
    return create_model(model.__name__, __base__=_StrictArgs, **fields)


# Checked by the server with a clear error; in the schema they only cost context.
_INPUT_DROPPED = frozenset({"title", "pattern", "maxLength", "minLength", "maxItems",
                            "additionalProperties"})


def compact_schema(schema: Any, *, drop: frozenset[str] = _INPUT_DROPPED,
                   collapse: bool = True, in_properties: bool = False) -> Any:
    """The published form of a pydantic JSON schema: no generated titles, no limits the
    server checks anyway, no empty defaults, and an omittable parameter (default null)
    shown as its plain type (``collapse``; input schemas only)."""
    if isinstance(schema, list):
        return [compact_schema(s, drop=drop, collapse=collapse) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if in_properties:  # keys are parameter names, not keywords
        return {k: compact_schema(v, drop=drop, collapse=collapse) for k, v in schema.items()}
    out = {k: compact_schema(v, drop=drop, collapse=collapse,
                             in_properties=k in ("properties", "$defs"))
           for k, v in schema.items() if k not in drop}
    if not collapse:
        return out
    if "default" in out and (out["default"] is False or out["default"] in ([], "")):
        del out["default"]
    # ">= 0" and "> 0" only cost context: the server's error names the bound if crossed.
    for bound in ("minimum", "exclusiveMinimum"):
        if out.get(bound) == 0:
            del out[bound]
    options = out.get("anyOf")
    if "default" in out and out["default"] is None and isinstance(options, list):
        rest = [o for o in options if o != {"type": "null"}]
        if len(rest) == 1:
            del out["anyOf"], out["default"]
            out = {**rest[0], **out}
    return out


def one_paragraph(doc: str) -> str:
    """A docstring as the model reads it: dedented, wrapped lines joined."""
    return re.sub(r"(?<!\n)\n(?!\n)", " ", inspect.cleandoc(doc))


def build_tool(t: ToolDef, settings: Any) -> Tool:
    """One strict tool, its docstring dedented (the model reads it)."""
    fn = with_defaults(t.fn, t.defaults(settings)) if t.defaults else t.fn
    tool = StrictTool.from_function(fn, title=t.title, annotations=t.annotations,
                                    description=one_paragraph(t.fn.__doc__ or ""),
                                    meta=t.meta)
    strict = _strict(tool.fn_metadata.arg_model)
    output = tool.fn_metadata.output_schema
    metadata: FuncMetadata = tool.fn_metadata.model_copy(update={
        "arg_model": strict,
        "output_schema": output and compact_schema(output, drop=frozenset({"title"}),
                                                   collapse=False)})
    return tool.model_copy(update={
        "fn_metadata": metadata,
        "parameters": compact_schema(strict.model_json_schema(by_alias=True))})


def build_tools(tools: list[ToolDef], settings: Any) -> list[Tool]:
    return [build_tool(t, settings) for t in tools]
