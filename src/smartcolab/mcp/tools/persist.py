"""Tools that keep a session's variables across runtime loss: save and restore.

Snapshots are an optional part of a backend (``Capability.PERSISTENCE``); a kind that
lacks it refuses with a message that says what to do instead.
"""

from __future__ import annotations

from typing import Annotated

from mcp.types import CallToolResult, TextContent
from pydantic import Field

from smartcolab.mcp.annotations import ADDS, REPLACES_REMOTE
from smartcolab.mcp.deps import BridgeContext, deps_of
from smartcolab.mcp.jobflow import epoch_note
from smartcolab.mcp.params import RuntimeName, SessionName, ToolDef
from smartcolab.mcp.tool_errors import translated
from smartcolab.shared.protocol import NAME_PATTERN, RestoreRequest, SaveRequest, VariableProblem

Names = Annotated[list[str], Field(max_length=1000, description="Variable names; empty: all.")]
Snapshot = Annotated[str | None, Field(pattern=NAME_PATTERN, description=(
    "Default: the session's name (autosaves: autosave-SESSION)."))]


def _problems(title: str, problems: list[VariableProblem]) -> list[str]:
    if not problems:
        return []
    return [f"{title}:"] + [f"- {p.name}" + (f" ({p.type})" if p.type else "") + f": {p.error}"
                            for p in problems]


def _result(lines: list[str], structured: dict[str, object]) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text="\n".join(lines))],
                          structured_content=structured)


async def save_colab_variables(ctx: BridgeContext, names: Names = [],  # noqa: B006
                               snapshot: Snapshot = None, session: SessionName = "main",
                               runtime: RuntimeName = None) -> CallToolResult:
    """Save a session's variables to the runtime's persistent disk (Drive on Colab if
    mounted), surviving restarts and new VMs. Unpicklable objects are reported; the
    same snapshot name replaces."""
    deps = deps_of(ctx)
    with translated(runtime):
        spec, client = await deps.registry.client(runtime)
        m = await client.save_variables(session, SaveRequest(names=names, snapshot=snapshot))
        saved = ", ".join(f"{v.name} ({v.type}, {v.size_bytes:,} B)" for v in m.variables)
        lines = [f"saved {len(m.variables)} variable(s) of session {session!r} on "
                 f"{spec.name!r} as snapshot {m.snapshot!r} in {m.directory} "
                 f"({m.total_bytes:,} B, {m.pickler}): {saved or 'none'}"]
        lines += _problems("not saved", m.failed) + _problems("skipped", m.skipped)
        return _result(lines, m.model_dump(mode="json"))


async def restore_colab_variables(ctx: BridgeContext, names: Names = [],  # noqa: B006
                                  snapshot: Snapshot = None, session: SessionName = "main",
                                  runtime: RuntimeName = None) -> CallToolResult:
    """Load saved variables into a session (after a restart or STATE LOST). Ones that
    cannot be rebuilt (a class of the old kernel) are reported: define it,
    restore again."""
    deps = deps_of(ctx)
    with translated(runtime):
        spec, client = await deps.registry.client(runtime)
        report = await client.restore_variables(
            session, RestoreRequest(names=names, snapshot=snapshot))
        change = deps.epochs.observe(spec.name, report.session, report.epoch)
        lines = [f"restored {len(report.restored)} variable(s) into session {session!r} on "
                 f"{spec.name!r} from snapshot {report.snapshot!r}: "
                 f"{', '.join(report.restored) or 'none'}"]
        lines += _problems("not restored", report.failed)
        if change:
            lines += ["", epoch_note(deps, change)]
        return _result(lines, report.model_dump(mode="json"))


TOOLS = [
    ToolDef(save_colab_variables, None, ADDS),
    ToolDef(restore_colab_variables, None, REPLACES_REMOTE),
]
