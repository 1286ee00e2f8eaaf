"""Tools that keep a session's variables across runtime loss: save and restore."""

from __future__ import annotations

from typing import Annotated

from mcp.server import MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from smartcolab.client.backend import RuntimeBackend
from smartcolab.client.http.client import RuntimeClient
from smartcolab.mcp.deps import BridgeDeps
from smartcolab.mcp.jobflow import epoch_note
from smartcolab.mcp.params import RuntimeName, SessionName, register_tool
from smartcolab.mcp.tool_errors import translated
from smartcolab.shared.errors import InvalidInput
from smartcolab.shared.protocol import NAME_PATTERN, RestoreRequest, SaveRequest, VariableProblem

WRITES_RUNTIME = ToolAnnotations(read_only_hint=False, destructive_hint=False,
                                 idempotent_hint=True, open_world_hint=True)
CHANGES_SESSION = ToolAnnotations(read_only_hint=False, destructive_hint=True,
                                  idempotent_hint=True, open_world_hint=True)

Names = Annotated[list[str], Field(max_length=1000, description=(
    "Variable names; empty = all user variables (save) or all in the snapshot (restore)."))]
Snapshot = Annotated[str | None, Field(pattern=NAME_PATTERN, description=(
    "Snapshot name (letters, digits, . _ -); default: the session's name. "
    "'autosave-<session>' holds automatic saves when the runtime has them on."))]


def _problems(title: str, problems: list[VariableProblem]) -> list[str]:
    if not problems:
        return []
    return [f"{title}:"] + [f"- {p.name}" + (f" ({p.type})" if p.type else "") + f": {p.error}"
                            for p in problems]


def _result(lines: list[str], structured: dict[str, object]) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text="\n".join(lines))],
                          structured_content=structured)


def _runtime_server(spec_name: str, client: RuntimeBackend) -> RuntimeClient:
    """Snapshots live in our runtime server; a plain Jupyter Server has no such API."""
    if not isinstance(client, RuntimeClient):
        raise InvalidInput(f"runtime {spec_name!r} is a Jupyter Server, which cannot keep "
                           "variable snapshots; save with code instead (e.g. pickle or joblib "
                           "to a file, then download_from_colab)")
    return client


def register(server: MCPServer, deps: BridgeDeps) -> None:
    async def save_colab_variables(names: Names = [],  # noqa: B006
                                   snapshot: Snapshot = None, session: SessionName = "main",
                                   runtime: RuntimeName = None) -> CallToolResult:
        """Save a session's variables on the runtime's persistent disk (Drive on Colab when
        the notebook mounted it, /kaggle/working on Kaggle), so they survive a kernel restart,
        a crash or a new Colab VM.

        Use after expensive steps (a trained model, a cleaned DataFrame). Objects that
        cannot be pickled (generators, locks, open files) are reported, not fatal; the
        rest is saved. Saving again under the same snapshot name replaces it. Restore
        with restore_colab_variables.
        """
        with translated(runtime):
            spec, client = await deps.registry.client(runtime)
            m = await _runtime_server(spec.name, client).save_variables(session, SaveRequest(names=names, snapshot=snapshot))
            saved = ", ".join(f"{v.name} ({v.type}, {v.size_bytes:,} B)" for v in m.variables)
            lines = [f"saved {len(m.variables)} variable(s) of session {session!r} on "
                     f"{spec.name!r} as snapshot {m.snapshot!r} in {m.directory} "
                     f"({m.total_bytes:,} B, {m.pickler}): {saved or 'none'}"]
            lines += _problems("not saved", m.failed) + _problems("skipped", m.skipped)
            return _result(lines, m.model_dump(mode="json"))

    async def restore_colab_variables(names: Names = [],  # noqa: B006
                                      snapshot: Snapshot = None, session: SessionName = "main",
                                      runtime: RuntimeName = None) -> CallToolResult:
        """Load variables saved by save_colab_variables into a session, typically a fresh
        kernel after a restart, a crash or STATE LOST.

        Existing variables with the same names are overwritten. Variables that cannot be
        rebuilt (e.g. instances of a class defined in the old kernel, without cloudpickle)
        are reported with the reason; re-define the class and restore again.
        """
        with translated(runtime):
            spec, client = await deps.registry.client(runtime)
            report = await _runtime_server(spec.name, client).restore_variables(
                session, RestoreRequest(names=names, snapshot=snapshot))
            change = deps.epochs.observe(spec.name, report.session, report.epoch)
            lines = [f"restored {len(report.restored)} variable(s) into session {session!r} on "
                     f"{spec.name!r} from snapshot {report.snapshot!r}: "
                     f"{', '.join(report.restored) or 'none'}"]
            lines += _problems("not restored", report.failed)
            if change:
                lines += ["", epoch_note(deps, change)]
            return _result(lines, report.model_dump(mode="json"))

    register_tool(server, save_colab_variables, annotations=WRITES_RUNTIME,
                  title="Save variables to disk")
    register_tool(server, restore_colab_variables, annotations=CHANGES_SESSION,
                  title="Restore saved variables")
