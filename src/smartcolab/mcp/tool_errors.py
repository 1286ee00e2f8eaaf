"""The one place where a ``SmartColabError`` becomes the ``ToolError`` text a model reads.

Each message says what happened and what to do next. Tools wrap their bodies in
``with translated(runtime_name):``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from mcp.server.mcpserver.exceptions import ToolError

from smartcolab.shared.errors import (
    ChecksumMismatch,
    FileExistsOnRuntime,
    FileNotFoundOnRuntime,
    Forbidden,
    InsufficientStorage,
    InvalidInput,
    JobNotFound,
    KernelUnavailable,
    LocalPathRefused,
    LocalWriteFailed,
    LowMemory,
    NotFound,
    PageError,
    PathOutsideRoots,
    PayloadTooLarge,
    RateLimited,
    RuntimeMisbehaved,
    RuntimeUnreachable,
    SessionBusy,
    ShuttingDown,
    SmartColabError,
    StateLost,
    TabDisconnected,
    Unauthorized,
    UnknownRuntime,
    Unsupported,
)

__all__ = ["ToolError", "for_model", "to_tool_error", "translated"]

# Runtime messages are written for any HTTP client; a model can call only tools.
_ENDPOINT_HINTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\(?long-poll the job with GET /jobs/\{id\}\?wait=\d+\)?"),
     "wait for it with get_job"),
    (re.compile(r"POST /sessions/(\{name\}|main)/save"), "save_colab_variables"),
    (re.compile(r"\(?POST /sessions/(\{name\}|main)/restart\)?"), "with restart_colab_runtime"),
    (re.compile(r"\(?GET /jobs/\{id\}/output\)?"), "get_job_output"),
    (re.compile(r"GET /files/(archive|content)"), "download_from_colab"),
    (re.compile(r"PUT /files/content( \(streamed\))?"), "upload_to_colab"),
    (re.compile(r"delete one \(DELETE /sessions/\{name\}\) first"),
     "use one of the existing sessions (list_jobs shows them)"),
    (re.compile(r"; create it with POST /sessions"), "; a tool call creates it when needed"),
    (re.compile(r" or delete it\b"), ""),
]
_ANY_ENDPOINT = re.compile(r"\s*\(?\b(GET|POST|PUT|DELETE|PATCH) /[^\s)]*\)?")


def for_model(text: str) -> str:
    """A runtime's message with its HTTP endpoints replaced by the tools that do the same
    (or left out where no tool does)."""
    for pattern, tool in _ENDPOINT_HINTS:
        text = pattern.sub(tool, text)
    return _ANY_ENDPOINT.sub("", text)


def to_tool_error(exc: SmartColabError, runtime: str | None = None) -> ToolError:
    """Turn any smartcolab error into a ToolError whose text tells the model what to do."""
    where = f" (runtime {runtime[:80]!r})" if runtime else ""
    msg = for_model(exc.message)
    hint: str
    if isinstance(exc, TabDisconnected):
        hint = ("A reloaded tab reconnects by itself: call again in a few seconds. A closed "
                "tab must be opened again: connect_runtime with kind 'colab-tab' gives its link.")
    elif isinstance(exc, PageError):
        hint = ("The notebook page refused the call: check the cell ids with "
                "notebook_read_cells, then call again.")
    elif isinstance(exc, RuntimeUnreachable):
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
    elif isinstance(exc, Unsupported):
        hint = ("This kind of runtime cannot do it: use what the message suggests, or a "
                "runtime of another kind (list_runtimes).")
    elif isinstance(exc, InvalidInput):
        hint = "Fix the argument and call again."
    elif isinstance(exc, LocalPathRefused):
        hint = ("Uploads read only from the local save directory and --upload-root "
                "directories: copy the file there, or ask the user to add the directory.")
    elif isinstance(exc, FileExistsOnRuntime):
        hint = "Pass overwrite=true to replace it, or choose another path."
    elif isinstance(exc, (PayloadTooLarge, InsufficientStorage, LocalWriteFailed)):
        hint = "Free space (or choose a smaller file), then call again."
    elif isinstance(exc, ChecksumMismatch):
        hint = "The copy did not match its sha256 and was not kept: call again."
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
