"""The MCP side of following a job: journal, epochs, progress and rendering around
``client/follow.py``'s ``Follower``.

Polls in slices of at most ``progress_interval_s``, reports MCP progress after each
slice with the last output line, and returns when the job ends or the wait budget is
spent (the job keeps running remotely).  If the call that submitted a job is cancelled,
the remote job is cancelled too (shielded, bounded) and the journal says so; a call that
only waits (``get_job``) never cancels the job it waits on.  What a call returns counts
as shown to its MCP client (``deps.cursors``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from mcp.server.mcpserver import Context

from smartcolab.client.backend import RuntimeBackend
from smartcolab.client.epochs import EpochChange
from smartcolab.client.follow import Follower, new_job_id
from smartcolab.client.registry import RuntimeSpec
from smartcolab.mcp.deps import BridgeDeps
from smartcolab.mcp.results import Rendered, RenderOptions, last_line, render_job
from smartcolab.shared.errors import SessionBusy, SmartColabError
from smartcolab.shared.protocol import TERMINAL_STATUSES, JobSubmit, JobView

log = logging.getLogger(__name__)

CLIENT_LABEL = "smartcolab-mcp"


@dataclass
class Followed:
    """A job view after following it, with the output gathered on the way."""

    view: JobView
    output: str = ""
    notes: list[str] = field(default_factory=list)
    # How long the call really waited, and the client's cursor when it began.
    waited_s: float | None = None
    shown_before: int = 0


class Progress:
    """Monotonic MCP progress: seconds elapsed, message = last output line."""

    def __init__(self, ctx: Context[Any, Any] | None) -> None:
        self._ctx = ctx
        self._start = time.monotonic()
        self._last = -1.0

    def elapsed(self) -> float:
        return time.monotonic() - self._start

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


def follower(deps: BridgeDeps, client: RuntimeBackend, *, cancel_on_cancel: bool = True
             ) -> Follower:
    """The follower of a tool call: polls in progress-sized slices; cancels the job with the
    call unless ``cancel_on_cancel`` is false (a call that only waits)."""
    def cancelled(view: JobView) -> None:
        deps.journal.record_status(view.job_id, "cancelled", error="cancelled by the MCP client")

    return Follower(client, poll_s=deps.settings.progress_interval_s,
                    cancel_on_cancel=cancel_on_cancel, on_cancelled=cancelled)


async def follow(deps: BridgeDeps, ctx: Context[Any, Any] | None, spec: RuntimeSpec, client: RuntimeBackend,
                 view: JobView, *, budget_s: float, progress: Progress | None = None,
                 recorded: bool = False, cancel_on_cancel: bool = True) -> Followed:
    """Long-poll ``view``'s job until it ends or ``budget_s`` is spent.

    ``recorded``: the caller already wrote ``view`` to the journal (saves a write
    when the job was over at once, the common case for quick code).
    ``cancel_on_cancel``: cancelling this call cancels the job (false for get_job).
    """
    progress = progress or Progress(ctx)
    chunks = [view.output] if view.output else []
    notes = observe_epoch(deps, spec.name, view)
    unseen = not view.epoch
    polled = False

    async def seen(polled_view: JobView) -> None:
        nonlocal notes, unseen, polled
        polled = True
        if unseen and polled_view.epoch:
            # The first view had no epoch yet (a Jupyter job still queued behind a
            # starting kernel): observe the first one that comes.
            notes, unseen = observe_epoch(deps, spec.name, polled_view), False
        if polled_view.output:
            chunks.append(polled_view.output)
        over = polled_view.status in TERMINAL_STATUSES
        deps.journal.record_view(polled_view,
                                 output_tail=None if over else "".join(chunks)[-4000:])
        await progress.report(last_line("".join(chunks[-3:])) or polled_view.status)

    view = await follower(deps, client, cancel_on_cancel=cancel_on_cancel).follow(
        view, budget_s=budget_s, on_view=seen)
    deps.cursors.put(ctx, view.job_id, view.cursor)
    if view.status in TERMINAL_STATUSES and (polled or not recorded):
        deps.journal.record_view(view)
    return Followed(view, "".join(chunks), notes, waited_s=progress.elapsed())


async def submit_and_wait(deps: BridgeDeps, ctx: Context[Any, Any] | None, *, runtime: str | None,
                          code: str, job_timeout: float | None, session: str = "main",
                          budget_s: float | None = None, force: bool = False,
                          if_idle: bool = False
                          ) -> tuple[RuntimeSpec, RuntimeBackend, Followed]:
    """Submit ``code`` as a new job and follow it within the wait budget.

    ``if_idle``: raise ``SessionBusy`` (details name the running job) instead of queueing
    behind other work in the session.
    """
    spec, client = await deps.registry.client(runtime)
    budget = deps.settings.wait_budget_s if budget_s is None else budget_s
    job = JobSubmit(job_id=new_job_id(), code=code, session=session, timeout=job_timeout,
                    force=force, client=CLIENT_LABEL, if_idle=if_idle)
    deps.journal.record_submit(job_id=job.job_id, runtime=spec.name, url=spec.url,
                               session=session, code=code, timeout=job_timeout)
    progress = Progress(ctx)
    try:
        # The first slice of waiting rides on the submission itself.
        view = await follower(deps, client).submit(
            job, wait=min(deps.settings.progress_interval_s, budget))
    except SmartColabError as exc:
        deps.journal.record_status(job.job_id, "not_submitted", error=exc.message)
        raise
    # One journal write per quick call: a finished job is recorded as follow() would.
    over = view.status in TERMINAL_STATUSES
    deps.journal.record_view(view, output_tail=None if over else view.output)
    await progress.report(last_line(view.output) or view.status)
    remaining = budget - progress.elapsed()
    followed = await follow(deps, ctx, spec, client, view, budget_s=max(0.0, remaining),
                            progress=progress, recorded=True)
    return spec, client, followed


def render(deps: BridgeDeps, spec: RuntimeSpec, client: RuntimeBackend, followed: Followed,
           extra_notes: list[str] | None = None) -> Rendered:
    s = deps.settings
    opts = RenderOptions(s.max_result_chars, s.max_images, s.max_image_bytes, s.save_dir)
    notes = [*followed.notes, *(extra_notes or [])]
    if client.tracking_note:  # e.g. no job store on a plain Jupyter Server: say who keeps it
        notes.append(client.tracking_note)
    rendered = render_job(followed.view, runtime=spec.name, opts=opts,
                          running_output=followed.output, notes=notes,
                          waited_s=followed.waited_s, shown_before=followed.shown_before)
    rendered.structured["job_tracking"] = client.job_tracking
    return rendered


def busy_text(exc: SessionBusy, session: str, *, queued_as: str | None = None) -> str:
    """What a busy session is doing, and the choices (``queued_as``: this call's job, queued)."""
    d = exc.details
    running = d.get("running_job")
    if running:
        took = d.get("running_for_s")
        what = f"job {running}" + (f" (running for {took:.0f} s" if isinstance(took, (int, float))
                                    else " (running")
        code = d.get("running_code")
        what += f": {_first_line(code)})" if isinstance(code, str) and code.strip() else ")"
    else:
        what = "jobs that are queued to run"
    queued = d.get("queued")
    if isinstance(queued, int) and queued and running:
        what += f", with {queued} more queued"
    ref = running or (d.get("queued_jobs") or [None])[0]
    wait = f"get_job(job_id={ref!r})" if ref else "list_jobs"
    if queued_as is not None:
        ahead = f"; or stop the job ahead with cancel_job(job_id={ref!r})" if ref else ""
        return (f"Session {session!r} is busy with {what}. This call's job {queued_as} is queued "
                f"behind it and runs when it ends; it was not waited for. Choices: wait with "
                f"get_job(job_id={queued_as!r}); drop it with cancel_job(job_id={queued_as!r})"
                f"{ahead}.")
    return (f"Not run: session {session!r} is busy with {what}. Nothing was queued. Choices: "
            f"wait for it with {wait}, then call again; run this in another session (e.g. "
            "session='scratch': a separate kernel without this session's variables); "
            + (f"stop it with cancel_job(job_id={ref!r}); " if ref else "")
            + "or use run_code_long, which queues behind it.")
