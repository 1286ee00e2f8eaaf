"""The connection under ``RuntimeClient``: pooled, signed, retrying, capped, errors mapped.

Every request is built in one place (``build_request``), HMAC-signed when sent
(``signing.HmacAuth``) and carries ``ngrok-skip-browser-warning``.  Calls that are safe
to repeat (GETs, and job submission thanks to the client-chosen job id) are retried with
exponential backoff and jitter on connection errors, 429 and 5xx; an answer is read
whole only up to ``MAX_RESPONSE_BYTES``; a runtime's error body becomes the matching
``SmartColabError`` in exactly one method, ``_check_status``.  Streamed requests
(downloads, uploads) have an async and a blocking form with the same signing and
error mapping.
"""

from __future__ import annotations

import asyncio
import functools
import json as jsonlib
import os
import ssl
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any

import httpx2

from smartcolab import __version__
from smartcolab.client.http.lane import Encoded, LaneError, LoopbackLane, TooBig, loopback_address
from smartcolab.client.http.signing import HmacAuth, body_digest, signature_headers
from smartcolab.client.http.tunnel_pages import tunnel_error
from smartcolab.client.retry import NO_RETRY, RetryPolicy
from smartcolab.shared import env as env_names
from smartcolab.shared.errors import (
    IncompatibleRuntime,
    RuntimeMisbehaved,
    RuntimeUnreachable,
    SmartColabError,
    error_from_body,
)
from smartcolab.shared.protocol import (
    API_VERSION,
    H_API_VERSION,
    H_CONTENT_SHA256,
    H_EPOCH,
    H_NGROK_SKIP,
    KEEPALIVE_CLIENT_S,
)

DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_READ_TIMEOUT_S = 60.0
# The largest JSON answer a runtime may send: a job view holds at most 8 images of 5 MiB
# (base64) and 64 KiB of text; anything bigger is a runtime we must not trust.
MAX_RESPONSE_BYTES = 128 * 1024 * 1024
USER_AGENT = "smartcolab-client"
# Absolute URLs remembered per client (``RuntimeConnection._url``); cleared when full.
URL_CACHE_SIZE = 256


def _default_ssl_context() -> ssl.SSLContext:
    """Loading the CA bundle costs ~45 ms: once per process (per trust setting), shared."""
    return _ssl_context_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=4)
def _ssl_context_for(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    return httpx2.create_ssl_context()  # reads SSL_CERT_FILE / SSL_CERT_DIR itself


def _lane_for(url: str, uds: str | None) -> LoopbackLane | None:
    """The lean lane for a plain-http loopback runtime or a Unix socket (``lane.py``),
    unless switched off."""
    address = loopback_address(url)
    if address is None or os.environ.get(env_names.LOOPBACK_LANE, "1") == "0":
        return None
    return LoopbackLane(*address, max_connections=32, keepalive_s=KEEPALIVE_CLIENT_S,
                        unix_path=uds)


def _present(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The query parameters that are set: a ``None`` is left out, never sent as "None"."""
    return {k: v for k, v in (params or {}).items() if v is not None}


def _on_asyncio() -> bool:
    """The lane is asyncio's; under another anyio backend requests go through httpx2."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class RuntimeConnection:
    """Requests to one runtime server: pooled, signed, retried when safe, checked."""

    def __init__(self, url: str, secret: str | None, *, retry: RetryPolicy = RetryPolicy(),
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
                 read_timeout: float = DEFAULT_READ_TIMEOUT_S,
                 transport: httpx2.AsyncBaseTransport | None = None,
                 verify: bool | str | ssl.SSLContext = True, uds: str | None = None) -> None:
        """``uds``: a Unix socket the same server listens on (the local daemon's), used
        for every request instead of the URL's host and port (still sent as ``Host``)."""
        self.url = url.rstrip("/")
        self.retry = retry
        self.max_response_bytes = MAX_RESPONSE_BYTES
        self.last_epoch: str | None = None
        self._secret = secret
        self._timeouts = (connect_timeout, read_timeout)
        self._lane = _lane_for(self.url, uds) if transport is None else None
        self._uds = uds
        self._common: dict[str, Any] = dict(
            base_url=self.url,
            auth=HmacAuth(secret) if secret else None,
            headers={H_NGROK_SKIP: "1", "User-Agent": USER_AGENT},
            timeout=httpx2.Timeout(read_timeout, connect=connect_timeout),
            verify=_default_ssl_context() if verify is True else verify,
            follow_redirects=False,
        )
        limits = httpx2.Limits(max_connections=32, max_keepalive_connections=16,
                               keepalive_expiry=KEEPALIVE_CLIENT_S)
        if transport is None and uds is not None:
            transport = httpx2.AsyncHTTPTransport(uds=uds, limits=limits,
                                                  verify=self._common["verify"])
        self._http = httpx2.AsyncClient(limits=limits, transport=transport, **self._common)
        self._blocking: httpx2.Client | None = None
        self._blocking_lock = threading.Lock()
        self._urls: dict[tuple[str, tuple[tuple[str, Any], ...]], httpx2.URL] = {}

    async def aclose(self) -> None:
        if self._lane is not None:
            self._lane.close()
        await self._http.aclose()
        with self._blocking_lock:
            blocking, self._blocking = self._blocking, None
        if blocking is not None:
            blocking.close()

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
            method, self._url(http, path, _present(params)),
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
        lane = self._lane if self._lane is not None and _on_asyncio() else None

        async def attempt() -> httpx2.Response:
            if lane is not None:
                response = await self._via_lane(lane, method, path, params, json, content,
                                                headers, timeout)
            else:
                request = self.build_request(method, path, params=params, json=json,
                                             content=content, headers=headers, timeout=timeout)
                try:
                    response = await self._read_capped(await self._http.send(request, stream=True))
                except httpx2.TransportError as exc:
                    raise self._unreachable(exc) from exc
            self._check_status(response)
            return response

        return await policy.call(attempt)

    async def _via_lane(self, lane: LoopbackLane, method: str, path: str,
                        params: Mapping[str, Any] | None, json: Any, content: bytes | None,
                        headers: Mapping[str, str] | None, timeout: float | None,
                        ) -> httpx2.Response:
        """``request``'s one attempt on the loopback lane: the same URL, headers, signature,
        caps and error mapping as through httpx2 (``build_request``, ``_read_capped``)."""
        url = self._url(self._http, path, _present(params))
        target = url.raw_path.decode("ascii")
        sent = {"User-Agent": USER_AGENT, H_NGROK_SKIP: "1", "Accept-Encoding": "identity"}
        body = content or b""
        if json is not None:
            body = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":"),
                                 allow_nan=False).encode()
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        if self._secret:
            digest = sent.get(H_CONTENT_SHA256) or body_digest(body)
            sent[H_CONTENT_SHA256] = digest
            sent.update(signature_headers(self._secret, method, target, digest))
        try:
            answer = await lane.request(
                method, target, list(sent.items()), body, max_bytes=self.max_response_bytes,
                connect_timeout=self._timeouts[0], read_timeout=timeout or self._timeouts[1])
        except TooBig as exc:
            raise self._too_big(exc.size) from exc
        except Encoded as exc:
            raise self._encoded(exc.encoding) from exc
        except LaneError as exc:
            raise self._unreachable(exc) from exc
        return httpx2.Response(answer.status, headers=answer.headers, content=answer.body)

    async def _read_capped(self, response: httpx2.Response) -> httpx2.Response:
        """The whole answer, refused past ``max_response_bytes`` or in an encoding not asked for.

        Requests ask for ``identity``, so the bytes on the wire are the bytes we keep: a
        runtime cannot send a small compressed body that inflates in this process.
        """
        try:
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise self._encoded(encoding[:40])
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

    def _encoded(self, encoding: str) -> RuntimeMisbehaved:
        return RuntimeMisbehaved(
            f"the runtime at {self.url} answered with Content-Encoding {encoding!r} "
            "although identity was asked for; nothing was decoded")

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
                limits = httpx2.Limits(max_connections=8, max_keepalive_connections=4,
                                       keepalive_expiry=KEEPALIVE_CLIENT_S)
                self._blocking = httpx2.Client(
                    limits=limits, **self._common,
                    transport=None if self._uds is None else httpx2.HTTPTransport(
                        uds=self._uds, limits=limits, verify=self._common["verify"]))
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
