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
from smartcolab.mcp.tool_errors import translated
from smartcolab.shared.errors import SessionBusy
from smartcolab.shared.protocol import LONG_TIMEOUT_S


def _busy_fields(exc: SessionBusy) -> dict[str, object]:
    d = exc.details
    return {"running_job": d.get("running_job"), "running_for_s": d.get("running_for_s"),
            "queued": d.get("queued")}


async def run_code_quick(code: Code, ctx: BridgeContext, session: SessionName = "main",
                         runtime: RuntimeName = None) -> CallToolResult:
    """Run a short Python snippet on the remote runtime and return its output.

    Use for quick checks, inspecting variables, imports and light computation
    (job timeout 120 s). State persists between calls in the same session, like
    notebook cells. Returns stdout/stderr, the value of the last expression and
    plots as images. If the code is still running when the wait budget (about
    50 s) is spent, the result says "running" with a job id: continue with
    get_job. For training, downloads or anything slow use run_code_long. If the
    session is busy with another job, nothing runs: the answer names that job and
    the choices at once.
    """
    deps = deps_of(ctx)
    require_code(code)
    with translated(runtime):
        try:
            spec, client, followed = await submit_and_wait(
                deps, ctx, runtime=runtime, code=code, session=session,
                job_timeout=deps.settings.quick_timeout_s, if_idle=True)
        except SessionBusy as exc:  # answered at once: nothing queued behind the busy job
            return CallToolResult(content=[TextContent(type="text", text=busy_text(exc, session))],
                                  structured_content={"status": "session_busy", "session": session,
                                                      **_busy_fields(exc)}, is_error=True)
        return render(deps, spec, client, followed).result()


async def run_code_long(
    code: Code, ctx: BridgeContext,
    timeout: Timeout = LONG_TIMEOUT_S,
    background: Annotated[bool, Field(
        description="Return at once with the job id instead of waiting.")] = False,
    download: Annotated[list[str], Field(
        max_length=50,
        description="Paths or globs under the runtime's working root to fetch into the "
                    "local save directory when the job succeeds.")] = [],  # noqa: B006
    session: SessionName = "main",
    runtime: RuntimeName = None,
) -> CallToolResult:
    """Run heavy Python work (training, data downloads, long loops) on the runtime.

    The job timeout is 600 s by default; pass `timeout` in seconds, or null for no
    limit. The call returns when the job ends or after the wait budget (about 50 s):
    then the result says "running" with the job id, the output so far and what to
    call next (get_job to wait again, get_job_output for the full log, cancel_job to
    stop it). With background=true it returns right after submitting. If the session
    is busy, the job is queued behind the running one and the call returns at once
    saying so. `download`
    lists files (globs allowed, e.g. "outputs/*.png") copied to the local save
    directory once the job succeeds; sizes and sha256 digests are listed.
    """
    deps = deps_of(ctx)
    require_code(code)
    with translated(runtime):
        notes: list[str] = []
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


def _long_defaults(settings: BridgeSettings) -> dict[str, float]:
    # The schema shows the configured default job timeout (smartcolab mcp --long-timeout).
    return {"timeout": settings.long_timeout_s}


TOOLS = [
    ToolDef(run_code_quick, "Run Python (quick)", RUNS),
    ToolDef(run_code_long, "Run Python (long job)", RUNS, defaults=_long_defaults, meta=MONITOR),
]
