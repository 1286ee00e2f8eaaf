"""Tools that follow jobs: get_job, cancel_job, list_jobs, get_job_output.

When the runtime cannot be reached, get_job and list_jobs answer from the local
journal and say so.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated, Any, Literal

from mcp.types import CallToolResult, TextContent
from pydantic import Field

from smartcolab.client.journal import JournalEntry
from smartcolab.mcp.annotations import READS_REMOTE, REPLACES_REMOTE
from smartcolab.mcp.app import TOOL_META as MONITOR
from smartcolab.mcp.deps import BridgeContext, BridgeDeps, BridgeSettings, deps_of
from smartcolab.mcp.downloads import fetch_downloads
from smartcolab.mcp.jobflow import Followed, follow, render
from smartcolab.mcp.params import JobId, RuntimeName, ToolDef
from smartcolab.mcp.results import fetch_kept
from smartcolab.mcp.tool_errors import translated
from smartcolab.shared.errors import RuntimeUnreachable
from smartcolab.shared.protocol import MAX_WAIT_S, TERMINAL_STATUSES, JobView


def _stamp(t: float | None) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _journal_text(entry: JournalEntry) -> str:
    return (f"job {entry.job_id} on runtime {entry.runtime!r} (session {entry.session}): "
            f"{entry.status} (as last seen by this bridge at {_stamp(entry.updated_at)})\n"
            f"submitted {_stamp(entry.submitted_at)}, finished {_stamp(entry.finished_at)}"
            + (f", error: {entry.error}" if entry.error else "")
            + f"\ncode: {entry.code[:300]}"
            + (f"\noutput tail:\n{entry.output_tail}" if entry.output_tail else ""))


def _journal_dict(entry: JournalEntry) -> dict[str, Any]:
    return {"job_id": entry.job_id, "runtime": entry.runtime, "session": entry.session,
            "status": entry.status, "submitted_at": entry.submitted_at,
            "finished_at": entry.finished_at, "duration_s": entry.duration_s,
            "error": entry.error}


def _view_row(v: JobView) -> str:
    took = f"{v.duration_s:.1f}s" if v.duration_s is not None else "-"
    first = next((ln.strip() for ln in v.code.splitlines() if ln.strip()), "")[:60]
    who = f"  [{v.client}]" if v.client else ""  # which client submitted it
    return (f"{v.job_id}  {v.status:<9}  {v.session:<8}  {_stamp(v.created_at)}  {took:>8}  "
            f"{first}{who}")


def runtime_of(deps: BridgeDeps, job_id: str, runtime: str | None) -> str | None:
    if runtime:
        return runtime
    entry = deps.journal.get(job_id)
    return entry.runtime if entry else None


async def get_job(
    job_id: JobId, ctx: BridgeContext,
    wait: Annotated[float | None, Field(
        ge=0, le=3600,
        description="Seconds to wait for the end (default and most: the wait "
                    "budget, about 50 s); 0: at once.")] = None,
    from_start: Annotated[bool, Field(
        description="All output from the start, not only the unseen.")] = False,
    runtime: RuntimeName = None,
) -> CallToolResult:
    """A job's status and output not shown to you yet; waits for the end (then the
    full result) or `wait` s. Waiting never stops the job.
    If the runtime is unreachable: from the local journal, saying so.
    """
    deps = deps_of(ctx)
    name = runtime_of(deps, job_id, runtime)
    started = time.monotonic()
    with translated(name):
        budget = min(deps.settings.wait_budget_s, deps.settings.wait_budget_s if wait is None
                     else wait)
        spec, client = await deps.registry.client(name)
        since = None if from_start else deps.cursors.get(ctx, job_id)
        try:
            # A plain long-poll: cancelling it leaves the job alone.
            view = await client.get_job(
                job_id, wait=min(deps.settings.progress_interval_s, budget, MAX_WAIT_S),
                since=since)
        except RuntimeUnreachable as exc:
            entry = deps.journal.get(job_id)
            if entry is None:
                raise
            text = (f"The runtime is unreachable ({exc.message}).\nFrom the local journal:\n"
                    + _journal_text(entry))
            return CallToolResult(content=[TextContent(type="text", text=text)],
                                  structured_content={"source": "journal",
                                                      **_journal_dict(entry)})
        left = budget - (time.monotonic() - started)
        followed = await follow(deps, ctx, spec, client, view, budget_s=max(0.0, left),
                                cancel_on_cancel=False)
        followed.waited_s = time.monotonic() - started
        followed.shown_before = since or 0
        notes = await fetch_kept(client, followed.view)
        if wait is not None and wait > deps.settings.wait_budget_s:
            notes.append(f"wait={wait:g} is over the wait budget: waited at most "
                         f"{deps.settings.wait_budget_s:g} s.")
        pending = deps.pending_downloads.get(job_id)
        if pending and followed.view.status in TERMINAL_STATUSES:
            del deps.pending_downloads[job_id]
            if followed.view.status == "succeeded":
                notes.extend(await fetch_downloads(deps, spec.name, pending))
        return render(deps, spec, client, followed, notes).result()


async def cancel_job(job_id: JobId, ctx: BridgeContext,
                     runtime: RuntimeName = None) -> CallToolResult:
    """Stop a queued or running job (kernel interrupted, variables kept); an ended job
    is left as it is."""
    deps = deps_of(ctx)
    name = runtime_of(deps, job_id, runtime)
    with translated(name):
        spec, client = await deps.registry.client(name)
        view = await client.cancel_job(job_id)
        deps.journal.record_view(view)
        deps.pending_downloads.pop(job_id, None)
        return render(deps, spec, client, Followed(view, view.output)).result()


async def list_jobs(
    limit: Annotated[int, Field(ge=1, le=200)] = 20,
    status: Annotated[Literal["queued", "running", "succeeded", "failed", "timed_out",
                              "cancelled", "lost"] | None,
                      Field(description="Only jobs with this status.")] = None,
    session: Annotated[str | None, Field(description="Only jobs of this session.")] = None,
    runtime: RuntimeName = None,
    *, ctx: BridgeContext,
) -> CallToolResult:
    """Recent jobs, newest first (id, status, session, start, duration, code); from the
    local journal if the runtime is unreachable."""
    deps = deps_of(ctx)
    with translated(runtime):
        spec, client = await deps.registry.client(runtime)
        try:
            jobs = (await client.list_jobs(limit=limit, session=session, status=status)).jobs
        except RuntimeUnreachable as exc:
            entries = [e for e in deps.journal.recent(runtime=spec.name, limit=limit)
                       if (status is None or e.status == status)
                       and (session is None or e.session == session)]
            lines = [f"{e.job_id}  {e.status:<9}  {e.session:<8}  {_stamp(e.submitted_at)}  "
                     f"{e.code.strip().splitlines()[0][:60] if e.code.strip() else ''}"
                     for e in entries]
            text = (f"The runtime {spec.name!r} is unreachable ({exc.message}).\n"
                    f"From the local journal ({len(entries)} jobs this bridge submitted):\n"
                    + ("\n".join(lines) or "(none)"))
            return CallToolResult(content=[TextContent(type="text", text=text)],
                                  structured_content={"source": "journal", "jobs": [
                                      _journal_dict(e) for e in entries]})
        text = (f"{len(jobs)} job(s) on runtime {spec.name!r}:\n"
                + ("\n".join(_view_row(v) for v in jobs) or "(none)"))
        return CallToolResult(
            content=[TextContent(type="text", text=text)],
            structured_content={"source": "runtime", "runtime": spec.name, "jobs": [
                {"job_id": v.job_id, "status": v.status, "session": v.session,
                 "created_at": v.created_at, "duration_s": v.duration_s,
                 "client": v.client} for v in jobs]})


# Room for the page's header line within the result cap.
PAGE_HEADER_CHARS = 300


async def get_job_output(
    job_id: JobId,
    offset: Annotated[int, Field(ge=0, description="Byte offset (a page's next_offset).")] = 0,
    limit: Annotated[int, Field(ge=1, description=(
        "Characters per page (default and most: the result cap)."))] = 19_700,
    runtime: RuntimeName = None,
    *, ctx: BridgeContext,
) -> CallToolResult:
    """A page of a job's full raw output from a byte offset, with the next offset and
    total size."""
    deps = deps_of(ctx)
    name = runtime_of(deps, job_id, runtime)
    most = _page_chars(deps.settings)
    with translated(name):
        _, client = await deps.registry.client(name)
        # Offsets are bytes of UTF-8: a page of n bytes has at most n characters.
        page = await client.job_output(job_id, offset=offset, limit=min(limit, most))
        text = page.text[:most]
        left = max(0, page.total_bytes - page.next_offset)
        more = ("end of output." if page.complete else
                f"next: get_job_output(job_id={job_id!r}, offset={page.next_offset}); "
                f"{left:,} bytes after this page"
                + (f" (about {-(-left // max(1, len(text))):,} pages of this size)."
                   if left and text else "."))
        lowered = (f" (limit lowered to {most:,}: the result cap)" if limit > most else "")
        header = (f"job {job_id} output, bytes {page.offset:,}-{page.next_offset:,} of "
                  f"{page.total_bytes:,}: {len(text):,} characters{lowered}; {more}")
        return CallToolResult(
            content=[TextContent(type="text", text=f"{header}\n{text}")],
            structured_content={"job_id": job_id, "offset": page.offset,
                                "next_offset": page.next_offset, "chars": len(text),
                                "total_bytes": page.total_bytes, "complete": page.complete})


def _page_chars(settings: BridgeSettings) -> int:
    return max(100, settings.max_result_chars - PAGE_HEADER_CHARS)


def _output_defaults(settings: BridgeSettings) -> dict[str, int]:
    return {"limit": _page_chars(settings)}


TOOLS = [
    ToolDef(get_job, None, READS_REMOTE, meta=MONITOR),
    ToolDef(cancel_job, None, REPLACES_REMOTE),
    ToolDef(list_jobs, None, READS_REMOTE),
    ToolDef(get_job_output, None, READS_REMOTE, defaults=_output_defaults),
]
