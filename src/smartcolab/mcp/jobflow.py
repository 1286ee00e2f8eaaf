"""Submit a job and follow it within a wait budget, reporting progress, cancelling on cancel.

The one waiting loop of the bridge: long-polls ``GET /jobs/{id}?wait=..&since=..``
in slices of at most ``progress_interval_s``, reports MCP progress after each
slice with the last output line, and returns when the job ends or the wait
budget is spent (the job keeps running remotely). If the tool call is cancelled,
the remote job is cancelled too (shielded, bounded).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field

import anyio
from mcp.server.mcpserver import Context

from smartcolab.client.backend import RuntimeBackend
from smartcolab.client.epochs import EpochChange
from smartcolab.client.jupyter.jobs import TRACKING_NOTE
from smartcolab.client.registry import RuntimeSpec
from smartcolab.mcp.deps import BridgeDeps
from smartcolab.mcp.results import Rendered, RenderOptions, last_line, render_job
from smartcolab.shared.errors import SessionExists, SessionNotFound, SmartColabError
from smartcolab.shared.protocol import TERMINAL_STATUSES, JobSubmit, JobView

log = logging.getLogger(__name__)

CANCEL_GRACE_S = 10.0
FAST_POLL_FLOOR_S = 0.05
CLIENT_LABEL = "smartcolab-mcp"


def new_job_id() -> str:
    """A client-chosen id: a retried submission is recognised and never runs twice."""
    return f"j-{uuid.uuid4().hex[:20]}"


@dataclass
class Followed:
    """A job view after following it, with the output gathered on the way."""

    view: JobView
    output: str = ""
    notes: list[str] = field(default_factory=list)


class Progress:
    """Monotonic MCP progress: seconds elapsed, message = last output line."""

    def __init__(self, ctx: Context | None) -> None:
        self._ctx = ctx
        self._start = time.monotonic()
        self._last = -1.0

    async def report(self, message: str | None) -> None:
        if self._ctx is None:
            return
        value = max(self._last + 0.001, time.monotonic() - self._start)
        self._last = value
        try:
            await self._ctx.report_progress(round(value, 3), None, message)
        except Exception as exc:  # a progress failure must never fail the job
            log.debug("progress report failed: %s", exc)


def epoch_note(deps: BridgeDeps, change: EpochChange) -> str:
    """Say that remote state is gone, and which earlier jobs built it."""
    lost = deps.journal.succeeded_in_epoch(change.runtime, change.session, change.before)
    text = (f"STATE LOST: session {change.session!r} on runtime {change.runtime!r} was restarted "
            f"since the bridge last saw it (epoch {change.before} -> {change.after}). Variables, "
            "imports, loaded models and open files from earlier calls are gone.")
    if lost:
        listed = "; ".join(f"{e.job_id}: {_first_line(e.code)}" for e in lost[-8:])
        text += f" Re-run what you need from these earlier jobs: {listed}"
    return text


def _first_line(code: str) -> str:
    line = next((ln.strip() for ln in code.splitlines() if ln.strip()), "")
    return line[:80] + ("..." if len(line) > 80 or code.count("\n") > 0 else "")


def observe_epoch(deps: BridgeDeps, runtime: str, view: JobView) -> list[str]:
    change = deps.epochs.observe(runtime, view.session, view.epoch)
    return [epoch_note(deps, change)] if change else []


async def follow(deps: BridgeDeps, ctx: Context | None, spec: RuntimeSpec, client: RuntimeBackend,
                 view: JobView, *, budget_s: float, progress: Progress | None = None,
                 recorded: bool = False) -> Followed:
    """Long-poll ``view``'s job until it ends or ``budget_s`` is spent.

    ``recorded``: the caller already wrote ``view`` to the journal (saves a write
    when the job was over at once, the common case for quick code).
    """
    progress = progress or Progress(ctx)
    settings = deps.settings
    chunks = [view.output] if view.output else []
    notes = observe_epoch(deps, spec.name, view)
    unseen = not view.epoch
    cursor = view.cursor
    deadline = time.monotonic() + budget_s
    polled = False
    try:
        while view.status not in TERMINAL_STATUSES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            started = time.monotonic()
            view = await client.get_job(view.job_id, wait=min(settings.progress_interval_s, remaining),
                                        since=cursor)
            polled = True
            if unseen and view.epoch:
                # The first view had no epoch yet (a Jupyter job still queued behind a
                # starting kernel): observe the first one that comes.
                notes, unseen = observe_epoch(deps, spec.name, view), False
            if view.output:
                chunks.append(view.output)
            cursor = view.cursor
            deps.journal.record_view(view, output_tail="".join(chunks)[-4000:]
                                     if view.status not in TERMINAL_STATUSES else None)
            await progress.report(last_line("".join(chunks[-3:])) or view.status)
            if time.monotonic() - started < FAST_POLL_FLOOR_S and not view.output:
                # A runtime that does not hold long-polls must not make us spin.
                await anyio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_GRACE_S):
            try:
                await client.cancel_job(view.job_id)
                deps.journal.record_status(view.job_id, "cancelled",
                                           error="cancelled by the MCP client")
                log.info("tool call cancelled: cancelled job %s", view.job_id)
            except SmartColabError as exc:
                log.warning("could not cancel job %s: %s", view.job_id, exc)
        raise
    deps.cursors[view.job_id] = cursor
    if view.status in TERMINAL_STATUSES and (polled or not recorded):
        deps.journal.record_view(view)
    return Followed(view, "".join(chunks), notes)


async def submit_and_wait(deps: BridgeDeps, ctx: Context | None, *, runtime: str | None,
                          code: str, job_timeout: float | None, session: str = "main",
                          budget_s: float | None = None, force: bool = False
                          ) -> tuple[RuntimeSpec, Followed]:
    """Submit ``code`` as a new job and follow it within the wait budget."""
    spec, client = await deps.registry.client(runtime)
    budget = deps.settings.wait_budget_s if budget_s is None else budget_s
    job = JobSubmit(job_id=new_job_id(), code=code, session=session, timeout=job_timeout,
                    force=force, client=CLIENT_LABEL)
    deps.journal.record_submit(job_id=job.job_id, runtime=spec.name, url=spec.url,
                               session=session, code=code, timeout=job_timeout)
    progress = Progress(ctx)
    try:
        # The first slice of waiting rides on the submission itself: one round trip
        # for quick code.
        first_wait = min(deps.settings.progress_interval_s, budget)
        try:
            view = await client.submit(job, wait=first_wait)
        except SessionNotFound:
            # Sessions are created on first use, like opening a new notebook.
            with contextlib.suppress(SessionExists):
                await client.create_session(session)
            view = await client.submit(job, wait=first_wait)
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_GRACE_S), \
                contextlib.suppress(SmartColabError):
            await client.cancel_job(job.job_id)
        deps.journal.record_status(job.job_id, "cancelled", error="cancelled by the MCP client")
        raise
    except SmartColabError as exc:
        deps.journal.record_status(job.job_id, "not_submitted", error=exc.message)
        raise
    # One journal write per quick call: a finished job is recorded as follow() would.
    over = view.status in TERMINAL_STATUSES
    deps.journal.record_view(view, output_tail=None if over else view.output)
    await progress.report(last_line(view.output) or view.status)
    remaining = budget - (time.monotonic() - progress._start)
    followed = await follow(deps, ctx, spec, client, view, budget_s=max(0.0, remaining),
                            progress=progress, recorded=True)
    return spec, followed


def render(deps: BridgeDeps, spec: RuntimeSpec, followed: Followed,
           extra_notes: list[str] | None = None) -> Rendered:
    s = deps.settings
    opts = RenderOptions(s.max_result_chars, s.max_images, s.max_image_bytes, s.save_dir)
    notes = [*followed.notes, *(extra_notes or [])]
    if spec.kind == "jupyter":  # no job store on a plain Jupyter Server: say who keeps the job
        notes.append(TRACKING_NOTE)
    rendered = render_job(followed.view, runtime=spec.name, opts=opts,
                          running_output=followed.output, notes=notes,
                          wait_budget_s=s.wait_budget_s)
    rendered.structured["job_tracking"] = "bridge" if spec.kind == "jupyter" else "runtime"
    return rendered
