"""Typed tool parameters shared by the tools modules (pydantic constraints = clear errors)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
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


def register_tool(server: MCPServer, fn: Callable[..., Any], *, annotations: ToolAnnotations,
                  title: str) -> None:
    """Add ``fn`` as a tool with its docstring dedented (the model reads it)."""
    server.add_tool(fn, title=title, annotations=annotations,
                    description=inspect.cleandoc(fn.__doc__ or ""))
