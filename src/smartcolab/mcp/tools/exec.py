"""Tools that run code: run_code_quick and run_code_long."""

from __future__ import annotations

from typing import Annotated

from mcp.types import CallToolResult, TextContent
from pydantic import Field

from smartcolab.mcp.annotations import RUNS
from smartcolab.mcp.app import TOOL_META as MONITOR
from smartcolab.mcp.deps import BridgeContext, BridgeSettings, deps_of
from smartcolab.mcp.downloads import fetch_downloads
from smartcolab.mcp.jobflow import busy_text, render, submit_and_wait
from smartcolab.mcp.params import (
    Code,
    RuntimeName,
    SessionName,
    Timeout,
    ToolDef,
    require_code,
)
from smartcolab.mcp.results import fetch_kept
from smartcolab.mcp.tool_errors import translated
from smartcolab.shared.errors import InvalidInput, SessionBusy
from smartcolab.shared.protocol import LONG_TIMEOUT_S, QUICK_TIMEOUT_S


def _busy_fields(exc: SessionBusy) -> dict[str, object]:
    d = exc.details
    return {"running_job": d.get("running_job"), "running_for_s": d.get("running_for_s"),
            "queued": d.get("queued")}


async def run_code_quick(
    code: Code, ctx: BridgeContext,
    timeout: Annotated[float, Field(
        gt=0, description="Job timeout in seconds, at most the default.")] = QUICK_TIMEOUT_S,
    session: SessionName = "main", runtime: RuntimeName = None,
) -> CallToolResult:
    """Run a short snippet (checks, imports, light work); returns output, last
    value, plots. Variables persist per `session` (a kernel, default "main"). After
    about 50 s it answers "running" with a job id: follow with get_job. Slow work:
    run_code_long. A busy session is not queued: the answer names its job and choices.
    """
    deps = deps_of(ctx)
    require_code(code)
    with translated(runtime):
        if timeout > deps.settings.quick_timeout_s:
            raise InvalidInput(f"timeout: at most {deps.settings.quick_timeout_s:g} s for "
                               "run_code_quick; use run_code_long for longer work")
        try:
            spec, client, followed = await submit_and_wait(
                deps, ctx, runtime=runtime, code=code, session=session,
                job_timeout=timeout, if_idle=True)
        except SessionBusy as exc:  # answered at once: nothing queued behind the busy job
            return CallToolResult(content=[TextContent(type="text", text=busy_text(exc, session))],
                                  structured_content={"status": "session_busy", "session": session,
                                                      **_busy_fields(exc)}, is_error=True)
        notes = await fetch_kept(client, followed.view)
        return render(deps, spec, client, followed, notes).result()


async def run_code_long(
    code: Code, ctx: BridgeContext,
    timeout: Timeout = LONG_TIMEOUT_S,
    background: Annotated[bool, Field(description="Return right after submitting.")] = False,
    download: Annotated[list[str], Field(
        max_length=50, description="Globs (e.g. 'out/*.png') copied to the save "
                                   "directory if the job succeeds.")] = [],  # noqa: B006
    session: SessionName = "main",
    runtime: RuntimeName = None,
) -> CallToolResult:
    """Run slow work (training, downloads, long loops). After about 50 s it answers
    "running" with the job id and output so far: get_job waits on, get_job_output
    pages the log, cancel_job stops it. A busy session queues it.
    """
    deps = deps_of(ctx)
    require_code(code)
    with translated(runtime):
        behind = None
        try:
            spec, client, followed = await submit_and_wait(
                deps, ctx, runtime=runtime, code=code, session=session, job_timeout=timeout,
                budget_s=0.0 if background else None, if_idle=True)
        except SessionBusy as exc:
            # Queued behind the busy job, and said so at once instead of waiting on it.
            spec, client, followed = await submit_and_wait(
                deps, ctx, runtime=runtime, code=code, session=session, job_timeout=timeout,
                budget_s=0.0)
            followed.notes.insert(0, busy_text(exc, session, queued_as=followed.view.job_id))
            behind = exc.details.get("running_job")
        notes = await fetch_kept(client, followed.view)
        if download:
            if followed.view.status == "succeeded":
                notes.extend(await fetch_downloads(deps, spec.name, download))
            elif followed.view.status not in ("failed", "timed_out", "cancelled", "lost"):
                deps.pending_downloads[followed.view.job_id] = list(download)
                notes.append("download: the files will be fetched when get_job sees this "
                             "job succeed.")
        rendered = render(deps, spec, client, followed, notes)
        if behind is not None:
            rendered.structured["queued_behind"] = behind
        return rendered.result()


def _quick_defaults(settings: BridgeSettings) -> dict[str, float]:
    # The schema shows the configured quick timeout (smartcolab mcp --quick-timeout),
    # which is also the largest a call may ask for.
    return {"timeout": settings.quick_timeout_s}


def _long_defaults(settings: BridgeSettings) -> dict[str, float]:
    # The schema shows the configured default job timeout (smartcolab mcp --long-timeout).
    return {"timeout": settings.long_timeout_s}


TOOLS = [
    ToolDef(run_code_quick, None, RUNS, defaults=_quick_defaults),
    ToolDef(run_code_long, None, RUNS, defaults=_long_defaults, meta=MONITOR),
]
