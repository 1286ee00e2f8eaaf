"""The one place where a ``SmartColabError`` becomes the ``ToolError`` text a model reads.

Each message says what happened and what to do next. Tools wrap their bodies in
``with translated(runtime_name):``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mcp.server.mcpserver.exceptions import ToolError

from smartcolab.shared.errors import (
    FileNotFoundOnRuntime,
    Forbidden,
    InvalidInput,
    JobNotFound,
    KernelUnavailable,
    LowMemory,
    NotFound,
    PathOutsideRoots,
    RateLimited,
    RuntimeMisbehaved,
    RuntimeUnreachable,
    SessionBusy,
    ShuttingDown,
    SmartColabError,
    StateLost,
    Unauthorized,
    UnknownRuntime,
)

__all__ = ["ToolError", "to_tool_error", "translated"]


def to_tool_error(exc: SmartColabError, runtime: str | None = None) -> ToolError:
    """Turn any smartcolab error into a ToolError whose text tells the model what to do."""
    where = f" (runtime {runtime[:80]!r})" if runtime else ""
    msg = exc.message
    hint: str
    if isinstance(exc, RuntimeUnreachable):
        hint = ("Re-run the notebook's serving cell, or call connect_runtime with its new URL "
                "(the secret is found by secret_name or secret_env, never pasted). Jobs this bridge submitted can still be read with get_job / "
                "list_jobs (from the local journal).")
    elif isinstance(exc, Unauthorized):
        hint = ("The runtime refused the secret. Ask the user to store the secret the notebook "
                "printed with 'smartcolab runtimes add NAME URL --ask-secret' in a terminal, then "
                "call connect_runtime with secret_name=NAME (or fix COLAB_TOKEN).")
    elif isinstance(exc, RuntimeMisbehaved):
        hint = ("Nothing of that answer was kept. Make sure the runtime's URL is your own "
                "runtime (list_runtimes; connect_runtime to repoint it); do not retry against "
                "a runtime you do not trust.")
    elif isinstance(exc, UnknownRuntime):
        hint = "Pass one of the names list_runtimes shows, or omit runtime for the default."
    elif isinstance(exc, StateLost):
        hint = ("Variables, imports and loaded models from earlier calls are gone: re-run the "
                "setup code before continuing.")
    elif isinstance(exc, KernelUnavailable):
        hint = ("The Python kernel died or is restarting (often out of memory). Call "
                "probe_colab_environment to check memory, then re-run your setup code; "
                "restart_colab_runtime starts a fresh kernel.")
    elif isinstance(exc, LowMemory):
        hint = ("Free memory first with cleanup_colab (or delete large variables), or pass "
                "force=true if you accept the risk of the kernel being killed.")
    elif isinstance(exc, ShuttingDown):
        hint = "The runtime is shutting down; start it again, then call connect_runtime if its URL changed."
    elif isinstance(exc, SessionBusy):
        hint = "Another job is running in that session: wait with get_job, or cancel_job it."
    elif isinstance(exc, RateLimited):
        after = f" after {exc.retry_after:.0f} s" if exc.retry_after else " in a moment"
        hint = f"The runtime is busy or rate-limited: retry{after}, or call list_jobs to see what is queued."
    elif isinstance(exc, JobNotFound):
        hint = "Check the job id with list_jobs (it may belong to another runtime: pass runtime=...)."
    elif isinstance(exc, (PathOutsideRoots, FileNotFoundOnRuntime)):
        hint = "Paths are relative to the runtime's working root; call list_colab_files to see what exists."
    elif isinstance(exc, Forbidden):
        hint = "The runtime refused this operation."
    elif isinstance(exc, NotFound):
        hint = "Check the name or id you passed."
    elif isinstance(exc, InvalidInput):
        hint = "Fix the argument and call again."
    else:
        hint = "If this persists, call check_colab_connection."
    return ToolError(f"{exc.code}{where}: {msg}\nWhat to do: {hint}")


@contextmanager
def translated(runtime: str | None = None) -> Iterator[None]:
    """Re-raise smartcolab errors as ToolErrors; anything else is a real crash."""
    try:
        yield
    except SmartColabError as exc:
        raise to_tool_error(exc, runtime) from exc
