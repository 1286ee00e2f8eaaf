"""Job and session endpoints (the routes ``client/http/client.py`` calls)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import FileResponse

from smartcolab.runtime.engine import introspect
from smartcolab.runtime.engine.jobs import job_dir
from smartcolab.runtime.engine.output import read_page
from smartcolab.runtime.security import guard
from smartcolab.runtime.state import RuntimeState, SessionManager
from smartcolab.shared import routes
from smartcolab.shared.errors import InvalidInput, NotFound, RangeNotSatisfiable
from smartcolab.shared.protocol import (
    JOB_ID_PATTERN,
    MAX_WAIT_S,
    NAME_PATTERN,
    CleanupReport,
    CleanupRequest,
    JobList,
    JobStatus,
    JobSubmit,
    JobView,
    OutputPage,
    SessionCreate,
    SessionList,
    SessionView,
    VariableList,
)

router = APIRouter(tags=["jobs"])

MAX_PAGE_BYTES = 4 * 1024 * 1024
# A cancel waits this long beyond the kill grace for the job to reach its final status.
CANCEL_SLACK_S = 15.0

Wait = Annotated[float, Query(ge=0, description=f"seconds to wait, capped at {MAX_WAIT_S:g}")]
JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="the job's id")]
SessionName = Annotated[str, Path(pattern=NAME_PATTERN, description="a session's name")]


def _manager(request: Request) -> SessionManager:
    state: RuntimeState = request.app.state.sc
    return state.manager


def _client(request: Request) -> str | None:
    # The address resolved by limits.py (forwarding headers of trusted proxies).
    resolved = request.scope.get("state", {}).get("sc_client")
    if resolved:
        return str(resolved)
    return f"{request.client.host}:{request.client.port}" if request.client else None


def _job_answer(content: bytes, status_code: int = 200) -> Response:
    # Already JSON (``SessionManager.view_json``): FastAPI's validation and second
    # serialisation of the response model are skipped; the schema still names JobView.
    return Response(content, status_code=status_code, media_type="application/json")


@router.post(routes.JOBS, response_model=JobView, status_code=201, responses={
    200: {"model": JobView, "description": "A job with this id existed: it is returned, not rerun"}})
async def submit_job(request: Request, body: JobSubmit, wait: Wait = 0.0) -> Response:
    """Queue a job (201), or return the existing job with this id (200); never runs it twice.

    With ``wait`` the answer comes when the job ends or after ``wait`` seconds.
    """
    return await submit(request, body, wait)


async def submit(request: Request, body: JobSubmit, wait: float) -> Response:
    """``submit_job`` itself, shared with the short way of ``fastlane.py``."""
    manager = _manager(request)
    client = _client(request)
    await guard.check_submission(request.app.state.sc, body, client)
    rec, live, created = manager.submit(body, client)
    if live is not None and wait > 0:
        await live.wait(since=None, wait_s=min(wait, MAX_WAIT_S))
    return _job_answer(manager.view_json(rec, live), 201 if created else 200)


@router.get(routes.JOBS, response_model=JobList)
async def list_jobs(request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                    session: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
                    status: JobStatus | None = None) -> JobList:
    """Recent jobs first; filter by session and status."""
    manager = _manager(request)
    recs = manager.store.list(limit=limit, session=session, status=status)
    views = []
    for rec in recs:
        live = manager.live.get(rec.job_id)
        view = manager.view(live.rec if live else rec, live, since=None)
        view.output = ""  # a listing is an index, not an output dump
        view.output_truncated = False
        views.append(view)
    return JobList(jobs=views)


@router.get(routes.JOB, response_model=JobView)
async def get_job(request: Request, job_id: JobId, wait: Wait = 0.0,
                  since: Annotated[int | None, Query(ge=0)] = None) -> Response:
    """Status, output after ``since`` and the result when done; long-polls with ``wait``."""
    manager = _manager(request)
    rec, live = manager.find(job_id)
    assert rec is not None
    if live is not None and wait > 0:
        await live.wait(since=since or 0, wait_s=min(wait, MAX_WAIT_S))
    return _job_answer(manager.view_json(rec, live, since=since))


@router.post(routes.JOB_CANCEL, response_model=JobView)
async def cancel_job(request: Request, job_id: JobId) -> JobView:
    """Remove a queued job, or interrupt a running one (restart after the grace period)."""
    manager = _manager(request)
    live = manager.cancel(job_id)
    if live is not None and not live.terminal:
        await live.wait(since=None, wait_s=manager.config.kill_grace_s + CANCEL_SLACK_S)
    rec, live = manager.find(job_id)
    assert rec is not None
    return manager.view(rec, live)


@router.get(routes.JOB_OUTPUT, response_model=OutputPage)
async def job_output(request: Request, job_id: JobId,
                     offset: Annotated[int, Query(ge=0)] = 0,
                     limit: Annotated[int, Query(ge=1, le=MAX_PAGE_BYTES)] = 65536) -> OutputPage:
    """A page of the job's full output; offsets are bytes of its UTF-8 text."""
    manager = _manager(request)
    rec, live = manager.find(job_id)
    assert rec is not None
    total = live.output_bytes if live else rec.output_bytes
    if offset > total:
        raise RangeNotSatisfiable(f"offset {offset} is past the end of the output ({total} bytes)",
                                  details={"total_bytes": total})
    text, next_offset = read_page(job_dir(manager.config, job_id) / "output.txt", offset, limit,
                                  total)
    text = manager.redactor.redact(text)
    finished = live is None or live.terminal
    return OutputPage(job_id=job_id, offset=offset, next_offset=next_offset, total_bytes=total,
                      text=text, complete=finished and next_offset >= total)


KeptName = Annotated[str, Path(pattern=r"^output-\d{3}\.[a-z0-9][a-z0-9.-]{0,30}$",
                              description="the kept output's file name")]


@router.get(routes.JOB_FILE, response_class=FileResponse)
async def job_file(request: Request, job_id: JobId, name: KeptName) -> FileResponse:
    """An output kept in the job's folder: an image or display format over the size cap
    that the job's result could not carry (named in ``image_kept_as`` / ``kept_as``)."""
    manager = _manager(request)
    rec, _ = manager.find(job_id)
    assert rec is not None
    path = job_dir(manager.config, job_id) / name
    if not path.is_file():
        raise NotFound(f"job {job_id!r} kept no output named {name!r}",
                       details={"job_id": job_id, "name": name})
    return FileResponse(path, media_type="application/octet-stream")


# ---------------------------------------------------------------- sessions
@router.get(routes.SESSIONS, response_model=SessionList, tags=["sessions"])
async def list_sessions(request: Request) -> SessionList:
    manager = _manager(request)
    return SessionList(sessions=[s.view() for s in manager.sessions.values()])


@router.post(routes.SESSIONS, response_model=SessionView, status_code=201, tags=["sessions"])
async def create_session(request: Request, body: SessionCreate) -> SessionView:
    """Start a new named kernel session."""
    return (await _manager(request).create(body.name)).view()


@router.post(routes.SESSION_RESTART, response_model=SessionView, tags=["sessions"])
async def restart_session(request: Request, name: SessionName) -> SessionView:
    """Restart the kernel: its variables are lost, a running job is cancelled."""
    session = _manager(request).session(name)
    await session.restart()
    return session.view()


@router.post(routes.SESSION_INTERRUPT, response_model=SessionView, tags=["sessions"])
async def interrupt_session(request: Request, name: SessionName) -> SessionView:
    """Interrupt the running job (it ends ``cancelled``); the queue goes on."""
    session = _manager(request).session(name)
    session.interrupt()
    return session.view()


@router.delete(routes.SESSION, status_code=204, tags=["sessions"])
async def delete_session(request: Request, name: SessionName) -> Response:
    """Stop a session's jobs and shut its kernel down (``main`` cannot be deleted)."""
    await _manager(request).delete(name)
    return Response(status_code=204)


@router.get(routes.SESSION_VARIABLES, response_model=VariableList, tags=["sessions"])
async def variables(request: Request, name: SessionName, private: bool = False) -> VariableList:
    """The session's variables, computed inside its kernel (409 while a job runs)."""
    session = _manager(request).session(name)
    found = await introspect.variables(session, include_private=private)
    return VariableList(session=name, epoch=session.epoch, variables=found)


@router.post(routes.SESSION_CLEANUP, response_model=CleanupReport, tags=["sessions"])
async def cleanup(request: Request, name: SessionName, body: CleanupRequest) -> CleanupReport:
    """gc, CUDA cache, matplotlib figures; deletes variables only when asked."""
    bad = [n for n in body.names if not n.isidentifier()]
    if bad:
        raise InvalidInput(f"not Python variable names: {', '.join(map(repr, bad[:10]))}",
                           details={"names": bad[:50]})
    session = _manager(request).session(name)
    return await introspect.cleanup(session, body)
