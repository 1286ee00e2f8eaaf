"""The HTTP client for one runtime: signing, keep-alive, retries, error mapping.

Used by the MCP bridge and the CLI.  Every request is HMAC-signed (see
``protocol.canonical_request``) and carries ``ngrok-skip-browser-warning``.  Calls
that are safe to repeat (GETs, and job submission thanks to the client-chosen job
id) are retried with exponential backoff and jitter on connection errors, 429 and
5xx; a runtime's error body becomes the matching ``SmartColabError`` in exactly one
function, ``_check_status``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
import ssl
import threading
import time
from collections.abc import AsyncIterator, Generator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any, TypeVar

import httpx2
from pydantic import BaseModel

from smartcolab import __version__
from smartcolab.client.http.tunnel_pages import not_a_runtime, tunnel_error
from smartcolab.client.retry import NO_RETRY as NO_RETRY
from smartcolab.client.retry import RetryPolicy as RetryPolicy
from smartcolab.client.untrusted import check_job_id, check_job_view, check_session_view
from smartcolab.shared import routes
from smartcolab.shared.errors import (
    IncompatibleRuntime,
    RuntimeMisbehaved,
    RuntimeUnreachable,
    SmartColabError,
    error_from_body,
)
from smartcolab.shared.protocol import (
    API_VERSION,
    EMPTY_SHA256,
    H_API_VERSION,
    H_CONTENT_SHA256,
    H_EPOCH,
    H_NGROK_SKIP,
    H_NONCE,
    H_SIGNATURE,
    H_TIMESTAMP,
    KEEPALIVE_CLIENT_S,
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
    canonical_request,
    sign,
)

M = TypeVar("M", bound=BaseModel)

DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_READ_TIMEOUT_S = 60.0
# The largest JSON answer a runtime may send: a job view holds at most 8 images of 5 MiB
# (base64) and 64 KiB of text; anything bigger is a runtime we must not trust.
MAX_RESPONSE_BYTES = 128 * 1024 * 1024
# Extra read time on top of a long-poll's wait: tunnels add latency.
LONG_POLL_SLACK_S = 30.0
# The runtime gives a save or restore up to 300 s inside the kernel.
PERSIST_READ_TIMEOUT_S = 330.0
USER_AGENT = "smartcolab-client"
# Absolute URLs remembered per client (``RuntimeClient._url``); cleared when full.
URL_CACHE_SIZE = 256


class HmacAuth(httpx2.Auth):
    """Signs each request; a streamed body must declare its digest in a header."""

    # Never buffer a body here: a streamed upload (a file of gigabytes) declares its
    # digest in X-SC-Content-SHA256 instead; bytes and JSON bodies are already in memory.
    requires_request_body = False

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        declared = request.headers.get(H_CONTENT_SHA256)
        if declared is None:
            body = request.content if _has_buffered_body(request) else b""
            declared = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
            request.headers[H_CONTENT_SHA256] = declared
        raw = request.url.raw_path.decode("latin-1")
        path, _, query = raw.partition("?")
        ts = f"{time.time():.3f}"
        nonce = secrets.token_hex(16)
        request.headers[H_TIMESTAMP] = ts
        request.headers[H_NONCE] = nonce
        request.headers[H_SIGNATURE] = sign(
            self._secret, canonical_request(request.method, path, query, declared, ts, nonce))
        yield request


def _default_ssl_context() -> ssl.SSLContext:
    """Loading the CA bundle costs ~45 ms: once per process (per trust setting), shared."""
    return _ssl_context_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=4)
def _ssl_context_for(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    return httpx2.create_ssl_context()  # reads SSL_CERT_FILE / SSL_CERT_DIR itself


def _has_buffered_body(request: httpx2.Request) -> bool:
    try:
        request.content  # noqa: B018 - raises if the body is a stream
    except httpx2.RequestNotRead:
        return False
    return True


class RuntimeClient:
    """A pooled, signed, retrying connection to one runtime server."""

    def __init__(self, url: str, secret: str | None, *, retry: RetryPolicy = RetryPolicy(),
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
                 read_timeout: float = DEFAULT_READ_TIMEOUT_S,
                 transport: httpx2.AsyncBaseTransport | None = None,
                 verify: bool | str | ssl.SSLContext = True) -> None:
        self.url = url.rstrip("/")
        self.retry = retry
        self.max_response_bytes = MAX_RESPONSE_BYTES
        self.last_epoch: str | None = None
        self._common: dict[str, Any] = dict(
            base_url=self.url,
            auth=HmacAuth(secret) if secret else None,
            headers={H_NGROK_SKIP: "1", "User-Agent": USER_AGENT},
            timeout=httpx2.Timeout(read_timeout, connect=connect_timeout),
            verify=_default_ssl_context() if verify is True else verify,
            follow_redirects=False,
        )
        self._http = httpx2.AsyncClient(
            limits=httpx2.Limits(max_connections=32, max_keepalive_connections=16,
                                 keepalive_expiry=KEEPALIVE_CLIENT_S),
            transport=transport, **self._common)
        self._blocking: httpx2.Client | None = None
        self._blocking_lock = threading.Lock()
        self._urls: dict[tuple[str, tuple[tuple[str, Any], ...]], httpx2.URL] = {}

    async def aclose(self) -> None:
        await self._http.aclose()
        with self._blocking_lock:
            blocking, self._blocking = self._blocking, None
        if blocking is not None:
            blocking.close()

    async def __aenter__(self) -> RuntimeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------ core
    def build_request(self, method: str, path: str, *,
                      params: Mapping[str, Any] | None = None, json: Any = None,
                      content: Any = None, headers: Mapping[str, str] | None = None,
                      timeout: float | None = None,
                      http: httpx2.AsyncClient | httpx2.Client | None = None) -> httpx2.Request:
        """The one place a request is made, for every way of sending it.

        Parameters that are ``None`` are left out of the query; ``timeout`` is the read
        timeout of this call (a long-poll's wait plus slack), the connect timeout stays.
        Signing happens when the request is sent (``HmacAuth``), so a retry is signed
        afresh with a new nonce.
        """
        http = http or self._http
        return http.build_request(
            method, self._url(http, path, {k: v for k, v in (params or {}).items()
                                           if v is not None}),
            json=json, content=content, headers={"Accept-Encoding": "identity", **(headers or {})},
            timeout=httpx2.Timeout(timeout, connect=DEFAULT_CONNECT_TIMEOUT_S) if timeout
            else httpx2.USE_CLIENT_DEFAULT)

    def _url(self, http: httpx2.AsyncClient | httpx2.Client, path: str,
             params: dict[str, Any]) -> httpx2.URL:
        """The absolute URL of ``path`` with ``params``, as httpx2 builds it, remembered.

        httpx2 parses a URL three times per request (the path, the merge with the base
        URL, the query): about a third of the bridge's CPU for a short job.  The same
        path and query (every submission, every poll of one job) are parsed once; an
        absolute ``URL`` is taken by httpx2 as it is.
        """
        try:
            key = (path, tuple(params.items()))
            url = self._urls.get(key)
        except TypeError:  # a value that cannot be a key (a list): not remembered
            return http.build_request("GET", path, params=params).url
        if url is None:
            url = http.build_request("GET", path, params=params).url
            if len(self._urls) >= URL_CACHE_SIZE:
                self._urls.clear()
            self._urls[key] = url
        return url

    async def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                      json: Any = None, content: bytes | None = None,
                      headers: Mapping[str, str] | None = None, idempotent: bool | None = None,
                      timeout: float | None = None) -> httpx2.Response:
        """Send one request, retrying when safe; raise ``SmartColabError`` on failure."""
        if idempotent is None:
            idempotent = method.upper() in ("GET", "HEAD", "OPTIONS")
        policy = self.retry if idempotent else NO_RETRY
        async for attempt in policy.retrying():
            with attempt:
                request = self.build_request(method, path, params=params, json=json,
                                             content=content, headers=headers, timeout=timeout)
                try:
                    response = await self._read_capped(await self._http.send(request, stream=True))
                except httpx2.TransportError as exc:
                    raise self._unreachable(exc) from exc
                self._check_status(response)
                return response
        raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises

    async def _read_capped(self, response: httpx2.Response) -> httpx2.Response:
        """The whole answer, refused past ``max_response_bytes`` or in an encoding not asked for.

        Requests ask for ``identity``, so the bytes on the wire are the bytes we keep: a
        runtime cannot send a small compressed body that inflates in this process.
        """
        try:
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise RuntimeMisbehaved(
                    f"the runtime at {self.url} answered with Content-Encoding {encoding[:40]!r} "
                    "although identity was asked for; nothing was decoded")
            stated = response.headers.get("content-length", "")
            if stated.isdigit() and int(stated) > self.max_response_bytes:
                raise self._too_big(int(stated))
            chunks, size = [], 0
            if response.is_stream_consumed:  # a transport that hands over bytes in memory
                chunks, size = [response.content], len(response.content)
            else:
                async for chunk in response.aiter_raw():
                    size += len(chunk)
                    if size > self.max_response_bytes:
                        raise self._too_big(size)
                    chunks.append(chunk)
            if size > self.max_response_bytes:
                raise self._too_big(size)
        finally:
            await response.aclose()
        return httpx2.Response(response.status_code, headers=response.headers,
                               content=b"".join(chunks), request=response.request,
                               extensions=response.extensions)

    def _too_big(self, size: int) -> RuntimeMisbehaved:
        return RuntimeMisbehaved(
            f"the runtime at {self.url} sent an answer of {size:,} bytes or more, over the "
            f"{self.max_response_bytes:,}-byte cap for one answer; it was not kept")

    @asynccontextmanager
    async def stream(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                     headers: Mapping[str, str] | None = None,
                     content: Any = None, timeout: float | None = None,
                     ) -> AsyncIterator[httpx2.Response]:
        """A streamed request (downloads, uploads); no automatic retry: the caller resumes."""
        request = self.build_request(method, path, params=params, headers=headers,
                                     content=content, timeout=timeout)
        try:
            response = await self._http.send(request, stream=True)
            try:
                if response.status_code >= 400:
                    await response.aread()
                self._check_status(response)
                yield response
            finally:
                await response.aclose()
        except httpx2.TransportError as exc:
            raise self._unreachable(exc) from exc

    @contextmanager
    def stream_blocking(self, method: str, path: str, *,
                        params: Mapping[str, Any] | None = None,
                        headers: Mapping[str, str] | None = None,
                        timeout: float | None = None) -> Iterator[httpx2.Response]:
        """``stream`` for a worker thread: same signing, headers and error mapping.

        A download's receive loop runs in one thread with blocking reads: no event
        loop round per chunk, which measured about a quarter less CPU per GiB than
        the async loop (bench/bench_files.py).  Its own small pool, made on first use.
        """
        with self._blocking_lock:
            if self._blocking is None:
                self._blocking = httpx2.Client(
                    limits=httpx2.Limits(max_connections=8, max_keepalive_connections=4,
                                         keepalive_expiry=KEEPALIVE_CLIENT_S),
                    **self._common)
            http = self._blocking
        request = self.build_request(method, path, params=params, headers=headers,
                                     timeout=timeout, http=http)
        try:
            response = http.send(request, stream=True)
            try:
                if response.status_code >= 400:
                    response.read()
                self._check_status(response)
                yield response
            finally:
                response.close()
        except httpx2.TransportError as exc:
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: Exception) -> RuntimeUnreachable:
        return RuntimeUnreachable(
            f"cannot reach the runtime at {self.url} ({type(exc).__name__}: {exc or 'no detail'}). "
            "If it runs in a notebook, re-run its serving cell; if its URL changed, "
            "call connect_runtime with the new URL.",
            details={"url": self.url},
        )

    def _check_status(self, response: httpx2.Response) -> None:
        """Remember the epoch; raise the matching ``SmartColabError`` for an error reply."""
        epoch = response.headers.get(H_EPOCH)
        if epoch:
            self.last_epoch = epoch
        version = response.headers.get(H_API_VERSION)
        # Absent: not our runtime (a tunnel's page, a proxy), which the status check reports.
        if version is not None and version != API_VERSION:
            raise IncompatibleRuntime(
                f"the runtime at {self.url} speaks API version {version}, this smartcolab "
                f"{__version__} speaks version {API_VERSION}: install the same "
                "smart-colab-mcp version on both sides (pip install -U smart-colab-mcp in the "
                "notebook and here), then restart the runtime.",
                details={"url": self.url, "runtime_api": version, "client_api": API_VERSION})
        if response.status_code < 400:
            return
        exc: SmartColabError | None = tunnel_error(self.url, response)
        if exc is None:
            try:
                body = response.json()
            except ValueError:
                body = None
            exc = error_from_body(response.status_code, body)
        retry_after = response.headers.get("Retry-After")
        if retry_after and exc.retry_after is None:
            with suppress(ValueError):
                exc.retry_after = float(retry_after)
        raise exc

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
