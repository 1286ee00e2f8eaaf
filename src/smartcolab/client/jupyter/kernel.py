"""A plain Jupyter Server, spoken to through its standard APIs: REST and kernel WebSockets.

``JupyterRest`` sends token-authenticated requests to ``/api/...`` (a JupyterHub
single-user server is the same API under ``/user/NAME/``) and maps failures onto
our exception tree in one place.  ``KernelChannel`` holds one WebSocket to
``/api/kernels/{id}/channels`` (the JSON protocol every Jupyter Server speaks) and
routes each incoming message to the request it answers.  It keeps one
``session_id`` for its whole life: when the socket drops, Jupyter Server buffers
the kernel's messages for that session id and replays them on reconnection, so a
cell that was running keeps its output.

Who may call is decided by a ``RequestAuth`` (an ``httpx2.Auth``): by default the
server's token in an ``Authorization`` header; a proxy in front of the server (Colab's
runtime proxy) plugs in its own headers and query parameters, applied alike to REST
calls, file streams and the kernel WebSocket, and refreshed before they expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import socket
import uuid
from collections.abc import Callable, Generator
from typing import Any
from urllib.parse import urlencode

import httpx2
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from smartcolab.client.retry import JUPYTER_RETRY
from smartcolab.shared.errors import (
    InvalidInput,
    KernelUnavailable,
    NotFound,
    RuntimeUnreachable,
    SmartColabError,
    Unauthorized,
    Unavailable,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # one plot or a big print can be large


class RequestAuth(httpx2.Auth):
    """Headers and query parameters that authorise each request to a Jupyter Server.

    The default sends the server's token.  A subclass for a proxy overrides
    ``headers``/``params`` (read on every request and WebSocket connection, so a
    refreshed token applies at once) and ``fresh``, awaited before each REST call and
    each WebSocket connection: the place to renew a token that is about to expire.
    """

    def __init__(self, token: str | None = None) -> None:
        self.token = token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}

    def params(self) -> dict[str, str]:
        return {}

    async def fresh(self) -> None:
        """Renew what is about to expire (the default has nothing that expires)."""

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        request.headers.update(self.headers())
        params = self.params()
        if params:
            request.url = request.url.copy_merge_params(params)
        yield request


class JupyterRest:
    """Authorised REST calls to one Jupyter Server (or JupyterHub user server)."""

    def __init__(self, url: str, token: str | None, *, auth: RequestAuth | None = None) -> None:
        self.url = url.rstrip("/")
        self.auth = auth or RequestAuth(token)
        self.http = httpx2.AsyncClient(
            base_url=self.url, auth=self.auth, follow_redirects=False,
            timeout=httpx2.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))

    @property
    def headers(self) -> dict[str, str]:
        return self.auth.headers()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, *, json_body: Any = None,
                   params: dict[str, str] | None = None, timeout: float | None = None,
                   what: str = "") -> Any:
        """One request; the JSON answer (or None); a ``SmartColabError`` on failure."""
        await self.auth.fresh()
        try:
            response = await self.http.request(
                method, path, json=json_body, params=params,
                timeout=httpx2.Timeout(timeout, connect=CONNECT_TIMEOUT_S) if timeout
                else httpx2.USE_CLIENT_DEFAULT)
        except httpx2.TransportError as exc:
            raise self.unreachable(exc) from exc
        self.raise_for_status(response, what or path)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def unreachable(self, exc: BaseException) -> RuntimeUnreachable:
        return RuntimeUnreachable(
            f"cannot reach the Jupyter Server at {self.url} ({type(exc).__name__}: "
            f"{exc or 'no detail'}). Check that it runs (a JupyterHub server may have been "
            "culled: start it again from the hub), or call connect_runtime with its new URL.",
            details={"url": self.url})

    def raise_for_status(self, response: httpx2.Response, what: str) -> None:
        status = response.status_code
        if status < 400:
            return
        try:
            message = str(response.json().get("message") or response.reason_phrase)
        except (ValueError, AttributeError):
            message = response.reason_phrase
        if status in (401, 403):
            raise Unauthorized(f"the Jupyter Server at {self.url} refused the token ({status}: "
                               f"{message}). Give the server's token (or a JupyterHub API token "
                               "with access to this server).", details={"url": self.url})
        if status == 404:
            raise NotFound(f"{what}: not found on the Jupyter Server ({message})",
                           details={"url": self.url})
        if status in (400, 409, 422):
            raise InvalidInput(f"the Jupyter Server refused {what} ({status}: {message})",
                               details={"url": self.url, "status": status})
        if status >= 500:
            raise Unavailable(f"the Jupyter Server failed on {what} ({status}: {message})",
                              details={"url": self.url, "status": status})
        raise SmartColabError(f"the Jupyter Server refused {what} ({status}: {message})",
                              details={"url": self.url, "status": status})


def message(msg_type: str, content: dict[str, Any], *, session: str,
            channel: str = "shell") -> dict[str, Any]:
    """A Jupyter message in the WebSocket JSON form (``channel`` names the ZMQ socket)."""
    return {
        "header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "username": "smartcolab",
                   "session": session, "version": "5.3",
                   "date": dt.datetime.now(dt.timezone.utc).isoformat()},
        "parent_header": {}, "metadata": {}, "content": content, "channel": channel,
        "buffers": [],
    }


class KernelChannel:
    """One WebSocket to a kernel; messages are routed to queues by their parent msg_id.

    A ``None`` in a queue means the socket dropped: the reader reconnects and then
    continues (Jupyter Server replays what the kernel sent meanwhile).
    ``on_lifecycle`` hears the kernel-level ``restarting``/``dead`` status messages.
    """

    def __init__(self, rest: JupyterRest, kernel_id: str, *,
                 on_lifecycle: Callable[[str], None] | None = None) -> None:
        self.kernel_id = kernel_id
        self.session_id = uuid.uuid4().hex
        base = rest.url.replace("http", "ws", 1)
        self._uri = f"{base}/api/kernels/{kernel_id}/channels?session_id={self.session_id}"
        self._auth = rest.auth
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._queues: dict[str, asyncio.Queue[dict[str, Any] | None]] = {}
        self._on_lifecycle = on_lifecycle
        self.closed = False
        self.connects = 0  # a reconnection may have missed a restart: callers re-check then

    async def _ensure(self) -> ClientConnection:
        async with self._lock:
            if self._ws is not None and self._reader is not None and not self._reader.done():
                return self._ws
            last: BaseException | None = None
            for attempt in range(JUPYTER_RETRY.attempts):
                try:
                    await self._auth.fresh()
                    params = self._auth.params()
                    uri = f"{self._uri}&{urlencode(params)}" if params else self._uri
                    self._ws = await connect(uri, additional_headers=self._auth.headers(),
                                             max_size=MAX_MESSAGE_BYTES, open_timeout=CONNECT_TIMEOUT_S,
                                             compression=None)
                    _no_delay(self._ws)
                    self.connects += 1
                    self._reader = asyncio.create_task(self._read(self._ws))
                    return self._ws
                except (OSError, WebSocketException, asyncio.TimeoutError) as exc:
                    last = exc
                    await asyncio.sleep(JUPYTER_RETRY.delay(attempt + 1))
            raise KernelUnavailable(
                f"cannot open the WebSocket of kernel {self.kernel_id} ({type(last).__name__}: "
                f"{last}); the kernel may have been shut down or culled.",
                details={"kernel_id": self.kernel_id})

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                msg = json.loads(raw) if isinstance(raw, str) else None
                if not isinstance(msg, dict):
                    continue  # binary frames are the v1 protocol, which we never ask for
                parent = (msg.get("parent_header") or {}).get("msg_id")
                queue = self._queues.get(parent) if parent else None
                if queue is not None:
                    queue.put_nowait(msg)
                elif msg.get("msg_type") == "status" and self._on_lifecycle is not None:
                    state = (msg.get("content") or {}).get("execution_state")
                    # "starting" without a parent: a fresh kernel process (someone else's
                    # restart); the others come from Jupyter Server's restarter.
                    if state in ("starting", "restarting", "dead", "autorestarting"):
                        self._on_lifecycle(str(state))
        except (WebSocketException, OSError) as exc:
            log.info("kernel %s WebSocket dropped: %s", self.kernel_id, exc)
        finally:
            for queue in self._queues.values():
                queue.put_nowait(None)

    async def send(self, msg: dict[str, Any]) -> asyncio.Queue[dict[str, Any] | None]:
        """Send ``msg`` and return the queue its replies will arrive in."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._queues[msg["header"]["msg_id"]] = queue
        ws = await self._ensure()
        try:
            await ws.send(json.dumps(msg))
        except (WebSocketException, OSError):
            ws = await self._ensure()
            await ws.send(json.dumps(msg))
        return queue

    async def reconnect(self) -> None:
        await self._ensure()

    def forget(self, msg_id: str) -> None:
        self._queues.pop(msg_id, None)

    async def aclose(self) -> None:
        self.closed = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader


def _no_delay(ws: ClientConnection) -> None:
    """Small messages both ways: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms each."""
    sock = ws.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
