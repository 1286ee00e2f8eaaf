"""Tools that run code: run_code_quick and run_code_long."""

from __future__ import annotations

from typing import Annotated

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from smartcolab.mcp.deps import BridgeDeps
from smartcolab.mcp.downloads import fetch_downloads
from smartcolab.mcp.jobflow import render, submit_and_wait
from smartcolab.mcp.params import (
    Code,
    RuntimeName,
    SessionName,
    Timeout,
    register_tool,
    require_code,
)
from smartcolab.mcp.tool_errors import translated

RUNS_CODE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False,
                            open_world_hint=True)


def register(server: MCPServer, deps: BridgeDeps) -> None:
    async def run_code_quick(code: Code, ctx: Context, session: SessionName = "main",
                             runtime: RuntimeName = None) -> CallToolResult:
        """Run a short Python snippet on the remote runtime and return its output.

        Use for quick checks, inspecting variables, imports and light computation
        (job timeout 120 s). State persists between calls in the same session, like
        notebook cells. Returns stdout/stderr, the value of the last expression and
        plots as images. If the code is still running when the wait budget (about
        50 s) is spent, the result says "running" with a job id: continue with
        get_job. For training, downloads or anything slow use run_code_long.
        """
        require_code(code)
        with translated(runtime):
            spec, followed = await submit_and_wait(
                deps, ctx, runtime=runtime, code=code, session=session,
                job_timeout=deps.settings.quick_timeout_s)
            return render(deps, spec, followed).result()

    async def run_code_long(
        code: Code, ctx: Context,
        timeout: Timeout = deps.settings.long_timeout_s,
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
        stop it). With background=true it returns right after submitting. `download`
        lists files (globs allowed, e.g. "outputs/*.png") copied to the local save
        directory once the job succeeds; sizes and sha256 digests are listed.
        """
        require_code(code)
        with translated(runtime):
            spec, followed = await submit_and_wait(
                deps, ctx, runtime=runtime, code=code, session=session, job_timeout=timeout,
                budget_s=0.0 if background else None)
            notes: list[str] = []
            if download:
                if followed.view.status == "succeeded":
                    notes.extend(await fetch_downloads(deps, spec.name, download))
                elif followed.view.status not in ("failed", "timed_out", "cancelled", "lost"):
                    deps.pending_downloads[followed.view.job_id] = list(download)
                    notes.append("download: the files will be fetched when get_job sees this "
                                 "job succeed.")
            return render(deps, spec, followed, notes).result()

    register_tool(server, run_code_quick, annotations=RUNS_CODE, title="Run Python (quick)")
    register_tool(server, run_code_long, annotations=RUNS_CODE, title="Run Python (long job)")
