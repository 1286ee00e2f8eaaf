"""CLI bodies for code and jobs: ``exec``, ``jobs list|show|cancel|output``, ``vars``, ``cleanup``.

``exec`` submits a job with a fresh id (the idempotency key) and follows it with
long-polls, printing new output as it arrives; when a poll's text was capped it pages
the exact bytes from ``/jobs/{id}/output`` so nothing is skipped.  Ctrl-C cancels the
remote job before exiting.  The exit code is the job's status (``JOB_EXIT_CODES``).
"""

from __future__ import annotations

import base64
import sys
import time
from datetime import datetime
from pathlib import Path

import anyio
import typer
from rich.table import Table

from smartcolab.cli.common import (
    EXIT_INTERRUPTED,
    JOB_EXIT_CODES,
    Target,
    err,
    human_bytes,
    open_runtime,
    out,
    print_json,
    runtime_label,
)
from smartcolab.client.backend import RuntimeBackend
from smartcolab.client.follow import Follower, new_job_id
from smartcolab.shared.output.display import image_extension
from smartcolab.shared.protocol import TERMINAL_STATUSES, CleanupRequest, JobSubmit, JobView

POLL_WAIT_S = 20.0
FIRST_WAIT_S = 1.0
PAGE_BYTES = 256 * 1024
CANCEL_DEADLINE_S = 15.0


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


async def _print_range(client: RuntimeBackend, job_id: str, start: int, end: int) -> None:
    """Print output bytes [start, end) exactly, paging through the full output."""
    offset = start
    while offset < end:
        page = await client.job_output(job_id, offset=offset, limit=min(PAGE_BYTES, end - offset))
        if page.next_offset <= offset:
            break
        _write(page.text)
        offset = page.next_offset


def _follower(client: RuntimeBackend, *, cancel: bool = True) -> Follower:
    """Polls in long slices; with ``cancel``, Ctrl-C cancels the remote job and says so."""
    def cancelled(view: JobView) -> None:
        err.print(f"cancelled job {view.job_id}")

    return Follower(client, poll_s=POLL_WAIT_S, cancel_on_cancel=cancel,
                    cancel_grace_s=CANCEL_DEADLINE_S, on_cancelled=cancelled)


async def follow(client: RuntimeBackend, view: JobView, *, stream: bool = True,
                 since: int = 0, cancel: bool = True) -> JobView:
    """Long-poll a job until it ends, printing its output as it arrives.

    ``cancel``: Ctrl-C cancels the job (``exec``); watching a job's output does not.
    """
    cursor = since

    async def show(seen: JobView) -> None:
        nonlocal cursor
        if stream and seen.cursor > cursor:
            if seen.output_truncated:
                await _print_range(client, seen.job_id, cursor, seen.cursor)
            else:
                _write(seen.output)
            cursor = seen.cursor

    await show(view)
    return await _follower(client, cancel=cancel).follow(view, on_view=show)


def save_images(view: JobView, image_dir: Path | None) -> list[Path]:
    """Write the job's image outputs into ``image_dir`` (named after the job)."""
    if image_dir is None or view.result is None:
        return []
    image_dir.mkdir(parents=True, exist_ok=True)
    saved = []
    images = [o for o in view.result.outputs if o.image_base64 and o.image_mime]
    for i, image in enumerate(images, 1):
        path = image_dir / f"{view.job_id}-{i}.{image_extension(image.image_mime or '')}"
        path.write_bytes(base64.b64decode(image.image_base64 or ""))
        saved.append(path)
    return saved


def report_end(view: JobView, saved: list[Path]) -> None:
    """After the streamed output: results, images, the error, and the final status."""
    result = view.result
    if result is not None:
        # Text results are already in the streamed output; only images need a word.
        for o in result.outputs:
            if o.image_base64 and not saved:
                # (No "[...]" around it: rich would read that as a markup tag and drop it.)
                err.print(f"[dim]an image ({o.image_mime}, {human_bytes(o.image_bytes)}) was "
                          "not saved: pass --images DIR to save it[/dim]")
        for path in saved:
            err.print(f"[dim]saved image: {path}[/dim]")
        if result.error is not None and not view.output.strip().endswith(result.error.evalue):
            err.print(f"[red]{result.error.ename}: {result.error.evalue}[/red]")
        if result.message:
            err.print(f"[yellow]{result.message}[/yellow]")
    if view.status != "succeeded":
        took = f" after {view.duration_s:.1f} s" if view.duration_s is not None else ""
        err.print(f"[bold red]job {view.job_id} {view.status}{took}[/bold red]")


async def exec_code(target: Target, code: str, *, session: str, job_timeout: float | None,
                    images: Path | None, as_json: bool) -> int:
    """Run code, stream its output, return the exit code of its status."""
    async with open_runtime(target) as (_spec, client):
        job = JobSubmit(job_id=new_job_id("cli"), code=code, session=session,
                        timeout=job_timeout, client="smartcolab-cli")
        try:
            # The follower cancels the remote job when this is interrupted (Ctrl-C).
            view = await _follower(client).submit(job, wait=FIRST_WAIT_S)
            view = await follow(client, view, stream=not as_json)
        except (KeyboardInterrupt, anyio.get_cancelled_exc_class()):
            raise typer.Exit(EXIT_INTERRUPTED) from None
        saved = save_images(view, images)
        if as_json:
            print_json(view)
        else:
            report_end(view, saved)
        return JOB_EXIT_CODES.get(view.status, 1)


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _one_line(code: str, width: int = 48) -> str:
    line = " ".join(code.split())
    return line if len(line) <= width else line[: width - 1] + "…"


async def list_jobs(target: Target, *, limit: int, session: str | None, status: str | None,
                    as_json: bool) -> None:
    async with open_runtime(target) as (spec, client):
        jobs = await client.list_jobs(limit=limit, session=session, status=status)
    if as_json:
        print_json(jobs)
        return
    table = Table(title=f"jobs on {runtime_label(spec)}")
    table.add_column("job id", no_wrap=True)
    for col in ("status", "session", "created", "duration", "output", "code"):
        table.add_column(col)
    for j in jobs.jobs:
        dur = f"{j.duration_s:.2f} s" if j.duration_s is not None else "-"
        table.add_row(j.job_id, j.status, j.session, _when(j.created_at), dur,
                      human_bytes(j.output_bytes), _one_line(j.code))
    out.print(table if jobs.jobs else f"no jobs on {runtime_label(spec)}")


async def show_job(target: Target, job_id: str, *, wait: float, as_json: bool) -> int:
    async with open_runtime(target) as (_spec, client):
        view = await client.get_job(job_id, wait=wait)
    if as_json:
        print_json(view)
    else:
        table = Table(show_header=False, title=f"job {job_id}")
        rows = [("status", view.status), ("session", view.session), ("timeout", str(view.timeout)),
                ("created", _when(view.created_at)), ("started", _when(view.started_at)),
                ("finished", _when(view.finished_at)),
                ("duration", f"{view.duration_s:.3f} s" if view.duration_s is not None else "-"),
                ("output", human_bytes(view.output_bytes)), ("code", view.code)]
        if view.result and view.result.error:
            rows.append(("error", f"{view.result.error.ename}: {view.result.error.evalue}"))
        if view.result and view.result.message:
            rows.append(("note", view.result.message))
        for k, v in rows:
            table.add_row(k, v)
        out.print(table)
    return JOB_EXIT_CODES.get(view.status, 0)


async def cancel_job(target: Target, job_id: str, *, as_json: bool) -> None:
    async with open_runtime(target) as (_spec, client):
        view = await client.cancel_job(job_id)
    if as_json:
        print_json(view)
    else:
        out.print(f"job {job_id}: {view.status}")


async def job_output(target: Target, job_id: str, *, follow_live: bool, offset: int) -> int:
    """Print a job's full output (paged); with ``follow_live``, keep printing until it ends."""
    async with open_runtime(target) as (_spec, client):
        view = await client.get_job(job_id, since=None)
        await _print_range(client, job_id, offset, view.cursor)
        if follow_live and view.status not in TERMINAL_STATUSES:
            live = await client.get_job(job_id, wait=POLL_WAIT_S, since=view.cursor)
            view = await follow(client, live, since=view.cursor, cancel=False)
        return JOB_EXIT_CODES.get(view.status, 0) if view.status in TERMINAL_STATUSES else 0


async def show_vars(target: Target, *, session: str, private: bool, as_json: bool) -> None:
    async with open_runtime(target) as (_spec, client):
        listing = await client.variables(session, include_private=private)
    if as_json:
        print_json(listing)
        return
    table = Table(title=f"variables in session {session}")
    for col in ("name", "type", "shape/len", "size", "preview"):
        table.add_column(col)
    for v in listing.variables:
        shape = str(tuple(v.shape)) if v.shape is not None else (
            str(v.length) if v.length is not None else "-")
        table.add_row(v.name, v.type, shape, human_bytes(v.size_bytes), _one_line(v.preview or "", 40))
    out.print(table if listing.variables else f"no variables in session {session}")


async def cleanup(target: Target, *, session: str, names: list[str], reset: bool,
                  as_json: bool) -> None:
    started = time.monotonic()
    async with open_runtime(target) as (_spec, client):
        report = await client.cleanup(session, CleanupRequest(reset=reset, names=names))
    if as_json:
        print_json(report)
        return
    out.print(f"cleanup of session {session}: {report.collected_objects} objects collected, "
              f"{human_bytes(report.freed_bytes)} freed, {report.closed_figures} figures closed"
              f" ({time.monotonic() - started:.1f} s)")
    if report.deleted:
        out.print(f"deleted: {', '.join(report.deleted)}")
    for note in report.notes:
        out.print(f"note: {note}")
