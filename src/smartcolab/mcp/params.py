"""Typed tool parameters shared by the tools modules (pydantic constraints = clear errors)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from smartcolab.shared.protocol import JOB_ID_PATTERN, MAX_CODE_CHARS, MAX_TIMEOUT_S, NAME_PATTERN

RuntimeName = Annotated[str | None, Field(
    default=None, pattern=NAME_PATTERN,
    description="Name of the runtime to use (see list_runtimes); omit for the default runtime.")]
SessionName = Annotated[str, Field(
    default="main", pattern=NAME_PATTERN,
    description="Kernel session on the runtime; each session has its own variables.")]
Code = Annotated[str, Field(
    min_length=1, max_length=MAX_CODE_CHARS,
    description="Python source to run, exactly as in a notebook cell (%pip and !shell work).")]
JobId = Annotated[str, Field(pattern=JOB_ID_PATTERN, description="A job id from a previous result.")]
Timeout = Annotated[float | None, Field(
    gt=0, le=MAX_TIMEOUT_S,
    description="Seconds before the job is interrupted on the runtime; null for no limit.")]


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
    title: str
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


def add_tools(server: MCPServer[Any], tools: list[ToolDef], settings: Any) -> None:
    """Add each tool with its docstring dedented (the model reads it)."""
    for t in tools:
        fn = with_defaults(t.fn, t.defaults(settings)) if t.defaults else t.fn
        server.add_tool(fn, title=t.title, annotations=t.annotations,
                        description=inspect.cleandoc(t.fn.__doc__ or ""),
                        meta=t.meta)
