"""The HTTP client for one runtime: one typed method per endpoint of its API.

Used by the MCP bridge and the CLI.  What a request goes through (signing, keep-alive,
retries, the size cap, error mapping) is ``connection.RuntimeConnection``; this adds
the endpoints, their answers parsed as the wire models and checked (ids and names as
asked), and the read timeouts of long polls and persistence.
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx2
from pydantic import BaseModel

from smartcolab.client.http.connection import RuntimeConnection
from smartcolab.client.http.tunnel_pages import not_a_runtime
from smartcolab.client.retry import NO_RETRY as NO_RETRY
from smartcolab.client.retry import RetryPolicy as RetryPolicy
from smartcolab.client.untrusted import check_job_id, check_job_view, check_session_view
from smartcolab.shared import routes
from smartcolab.shared.protocol import (
    MAX_WAIT_S,
    CleanupReport,
    CleanupRequest,
    Health,
    JobList,
    JobSubmit,
    JobView,
    OutputPage,
    PersistManifest,
    Probe,
    RestoreReport,
    RestoreRequest,
    SaveRequest,
    SessionList,
    SessionView,
    SnapshotList,
    VariableList,
)

M = TypeVar("M", bound=BaseModel)

# Extra read time on top of a long-poll's wait: tunnels add latency.
LONG_POLL_SLACK_S = 30.0
# The runtime gives a save or restore up to 300 s inside the kernel.
PERSIST_READ_TIMEOUT_S = 330.0


class RuntimeClient(RuntimeConnection):
    """A pooled, signed, retrying connection to one runtime server."""

    async def __aenter__(self) -> RuntimeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------ answers as models
    async def _get_model(self, model: type[M], path: str, *, timeout: float | None = None,
                         **params: Any) -> M:
        response = await self.request("GET", path, params=params, timeout=timeout)
        return self._model(model, response)

    async def _post_model(self, model: type[M], path: str, *, json: Any = None,
                          body: BaseModel | None = None, exclude: set[str] | None = None,
                          idempotent: bool = False, timeout: float | None = None,
                          **params: Any) -> M:
        """POST ``json``, or the model ``body`` serialised once by pydantic (``exclude``:
        its fields left out), and parse the answer as ``model``."""
        content = headers = None
        if body is not None:
            content = body.model_dump_json(exclude=exclude).encode()
            headers = {"Content-Type": "application/json"}
        response = await self.request("POST", path, params=params, json=json, content=content,
                                      headers=headers, idempotent=idempotent, timeout=timeout)
        return self._model(model, response)

    def _model(self, model: type[M], response: httpx2.Response) -> M:
        """The answer as ``model``, parsed from its bytes by pydantic in one pass; an answer
        that does not fit goes the long way, for the errors that way gives."""
        try:
            return model.model_validate_json(response.content)
        except ValueError:
            return model.model_validate(self._json(response))

    def _json(self, response: httpx2.Response) -> Any:
        """The answer's JSON; anything else (a web page in the runtime's place) is refused."""
        try:
            return response.json()
        except ValueError:
            raise not_a_runtime(self.url, response) from None

    # ------------------------------------------------------------ system
    async def health(self) -> Health:
        return await self._get_model(Health, routes.HEALTH)

    async def probe(self) -> Probe:
        return await self._get_model(Probe, routes.PROBE)

    async def shutdown(self) -> None:
        await self.request("POST", routes.SHUTDOWN, idempotent=True)

    # ------------------------------------------------------------ jobs
    async def submit(self, job: JobSubmit, *, wait: float = 0.0) -> JobView:
        """Submit a job; safe to retry: the runtime runs one job per job id."""
        wait = max(0.0, min(wait, MAX_WAIT_S))
        return check_job_view(await self._post_model(
            # if_idle only when set: a runtime that predates it would refuse the field.
            JobView, routes.JOBS, idempotent=True,
            body=job, exclude=None if job.if_idle else {"if_idle"},
            timeout=wait + LONG_POLL_SLACK_S, wait=wait or None), job.job_id)

    async def get_job(self, job_id: str, *, wait: float = 0.0, since: int | None = None) -> JobView:
        wait = max(0.0, min(wait, MAX_WAIT_S))
        return check_job_view(await self._get_model(
            JobView, routes.fill(routes.JOB, job_id=job_id), timeout=wait + LONG_POLL_SLACK_S,
            wait=wait or None, since=since), job_id)

    async def cancel_job(self, job_id: str) -> JobView:
        return check_job_view(await self._post_model(
            JobView, routes.fill(routes.JOB_CANCEL, job_id=job_id), idempotent=True), job_id)

    async def list_jobs(self, *, limit: int = 50, session: str | None = None,
                        status: str | None = None) -> JobList:
        jobs = await self._get_model(JobList, routes.JOBS, limit=limit, session=session,
                                     status=status)
        for view in jobs.jobs:
            check_job_view(view)
        return jobs

    async def job_output(self, job_id: str, *, offset: int = 0, limit: int = 65536) -> OutputPage:
        page = await self._get_model(OutputPage, routes.fill(routes.JOB_OUTPUT, job_id=job_id),
                                     offset=offset, limit=limit)
        check_job_id(page.job_id, job_id)
        return page

    async def job_file(self, job_id: str, name: str) -> bytes | None:
        """An output kept in the job's folder (its name from ``RichOutput.image_kept_as``)."""
        response = await self.request("GET", routes.fill(routes.JOB_FILE, job_id=job_id,
                                                         name=name))
        return response.content

    # ------------------------------------------------------------ sessions
    async def sessions(self) -> SessionList:
        listed = await self._get_model(SessionList, routes.SESSIONS)
        for view in listed.sessions:
            check_session_view(view)
        return listed

    async def create_session(self, name: str) -> SessionView:
        return check_session_view(
            await self._post_model(SessionView, routes.SESSIONS, json={"name": name}), name)

    async def restart_session(self, name: str) -> SessionView:
        return check_session_view(await self._post_model(
            SessionView, routes.fill(routes.SESSION_RESTART, name=name), idempotent=True,
            timeout=120.0), name)

    async def delete_session(self, name: str) -> None:
        await self.request("DELETE", routes.fill(routes.SESSION, name=name), idempotent=True)

    async def variables(self, session: str = "main", *, include_private: bool = False) -> VariableList:
        return await self._get_model(VariableList, routes.fill(routes.SESSION_VARIABLES, name=session),
                                     private=include_private or None)

    async def cleanup(self, session: str = "main",
                      request: CleanupRequest | None = None) -> CleanupReport:
        body = (request or CleanupRequest()).model_dump(mode="json")
        return await self._post_model(CleanupReport, routes.fill(routes.SESSION_CLEANUP, name=session), json=body,
                                      idempotent=True, timeout=120.0)

    # ------------------------------------------------------------ persistence
    async def save_variables(self, session: str = "main",
                             request: SaveRequest | None = None) -> PersistManifest:
        """Pickle the session's variables on the runtime; unpicklable ones come back in ``failed``."""
        body = (request or SaveRequest()).model_dump(mode="json")
        return await self._post_model(PersistManifest, routes.fill(routes.SESSION_SAVE, name=session), json=body,
                                      idempotent=True, timeout=PERSIST_READ_TIMEOUT_S)

    async def restore_variables(self, session: str = "main",
                                request: RestoreRequest | None = None) -> RestoreReport:
        """Load a saved snapshot's variables into the session (after a restart, say)."""
        body = (request or RestoreRequest()).model_dump(mode="json")
        return await self._post_model(RestoreReport, routes.fill(routes.SESSION_RESTORE, name=session), json=body,
                                      idempotent=True, timeout=PERSIST_READ_TIMEOUT_S)

    async def snapshots(self) -> SnapshotList:
        return await self._get_model(SnapshotList, routes.SNAPSHOTS)
