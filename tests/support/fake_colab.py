"""A fake of Colab's sign-in and assignment service, and of its runtime proxy, on loopback.

What it imitates (read from ``google-colab-cli`` 0.7.5 and Colab's VS Code extension;
the real service was not reachable from here):

* ``POST /token``: the OAuth token endpoint (authorization code, refresh token).
  Access tokens live ``access_ttl_s``; every Colab call needs a live one as Bearer.
* ``/tun/m/assign`` (GET: an XSRF token, or the assignment already made for this
  notebook hash; POST with ``X-Goog-Colab-Token``: a new assignment, 412 past
  ``max_assignments``, 400 for an accelerator in ``denied``), ``/tun/m/assignments``
  (each listing issues fresh proxy tokens), ``/tun/m/unassign/ENDPOINT`` (GET token,
  POST), ``/tun/m/ENDPOINT/keep-alive/``.  JSON answers carry the XSSI prefix.
* The runtime proxy: a second port in front of a real Jupyter Server; it demands a
  proxy token (query ``colab-runtime-proxy-token`` or header
  ``X-Colab-Runtime-Proxy-Token``): 401 when it expired, 403 when unknown, 404 when
  its runtime was released.  It adds the Jupyter token itself, so a client gets in with
  the proxy token alone.  ``recycle()`` wipes the kernels (a new VM behind the endpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect

XSSI = ")]}'\n"
GPU, TPU = ("T4", "L4", "G4", "A100", "H100"), ("V5E1", "V6E1")


@dataclass
class Assignment:
    endpoint: str
    accelerator: str
    nbh: str
    tokens: dict[str, float] = field(default_factory=dict)  # proxy token -> expiry


@dataclass
class FakeColab:
    jupyter_url: str
    jupyter_token: str
    access_ttl_s: float = 3600.0
    proxy_ttl_s: int = 3600
    max_assignments: int = 4
    denied: set[str] = field(default_factory=set)
    url: str = ""
    proxy_url: str = ""
    assignments: dict[str, Assignment] = field(default_factory=dict)
    access_tokens: dict[str, float] = field(default_factory=dict)
    refresh_tokens: set[str] = field(default_factory=set)
    codes: set[str] = field(default_factory=lambda: {"good-code"})
    xsrf: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    keepalives: dict[str, int] = field(default_factory=dict)
    proxied: list[dict[str, Any]] = field(default_factory=list)
    gone_tokens: set[str] = field(default_factory=set)  # of released runtimes
    # Open kernel WebSockets per endpoint: a released machine drops them.
    sockets: dict[str, list[tuple[asyncio.AbstractEventLoop, WebSocket]]] = field(
        default_factory=dict)
    _count: int = 0

    def _drop(self, endpoint: str) -> None:
        a = self.assignments.pop(endpoint, None)
        if a is not None:
            self.gone_tokens.update(a.tokens)
        for loop, ws in self.sockets.pop(endpoint, []):
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(_close(ws), loop)

    # ------------------------------------------------------------ test controls
    def expire_access_tokens(self) -> None:
        self.access_tokens = {k: 0.0 for k in self.access_tokens}

    def vanish(self, endpoint: str) -> None:
        """Colab takes the runtime back (idle, 12 h limit): no longer listed or proxied."""
        self._drop(endpoint)

    def recycle(self) -> None:
        """A new VM behind the same endpoint: connections drop, every kernel is gone."""
        for endpoint in list(self.sockets):
            for loop, ws in self.sockets.pop(endpoint):
                with contextlib.suppress(RuntimeError):
                    asyncio.run_coroutine_threadsafe(_close(ws), loop).result(10)
        headers = {"Authorization": f"token {self.jupyter_token}"}
        with httpx2.Client(base_url=self.jupyter_url, headers=headers, timeout=30) as http:
            for s in http.get("/api/sessions").json():
                http.delete(f"/api/sessions/{s['id']}")
            for k in http.get("/api/kernels").json():
                http.delete(f"/api/kernels/{k['id']}")

    # ------------------------------------------------------------ service
    def _json(self, body: Any, status: int = 200) -> Response:
        return Response(XSSI + json.dumps(body), status, media_type="application/json")

    def _authorised(self, request: Request) -> bool:
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        return self.access_tokens.get(bearer, 0.0) > time.time()

    def _proxy_info(self, a: Assignment) -> dict[str, Any]:
        token = secrets.token_urlsafe(16)
        a.tokens[token] = time.time() + self.proxy_ttl_s
        return {"url": self.proxy_url, "token": token, "tokenExpiresInSeconds": self.proxy_ttl_s}

    @staticmethod
    def _variant(accelerator: str) -> int:
        return 1 if accelerator in GPU else 2 if accelerator in TPU else 0

    async def token(self, request: Request) -> Response:
        form = await request.form()
        self.calls.append(f"token:{form.get('grant_type')}")
        grant = form.get("grant_type")
        good = (grant == "authorization_code" and form.get("code") in self.codes) or (
            grant == "refresh_token" and form.get("refresh_token") in self.refresh_tokens)
        if not good:
            return JSONResponse({"error": "invalid_grant"}, 400)
        access, refresh = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        self.access_tokens[access] = time.time() + self.access_ttl_s
        self.refresh_tokens.add(refresh)
        return JSONResponse({"access_token": access, "expires_in": int(self.access_ttl_s),
                             "refresh_token": refresh, "token_type": "Bearer"})

    async def tun(self, request: Request) -> Response:
        path = request.path_params["path"]
        self.calls.append(f"{request.method} {path}")
        if not self._authorised(request):
            return JSONResponse({"error": "unauthenticated"}, 401)
        if request.query_params.get("authuser") != "0":
            return JSONResponse({"error": "authuser=0 missing"}, 400)
        if path == "assign":
            return self._assign(request)
        if path == "assignments":
            return self._json({"assignments": [
                {"accelerator": a.accelerator, "endpoint": a.endpoint,
                 "variant": self._variant(a.accelerator), "machineShape": 0,
                 "runtimeProxyInfo": self._proxy_info(a)} for a in self.assignments.values()]})
        if path.startswith("unassign/"):
            endpoint = path.removeprefix("unassign/")
            if request.method == "GET":
                self.xsrf.add(token := secrets.token_hex(8))
                return self._json({"token": token})
            if request.headers.get("x-goog-colab-token") not in self.xsrf:
                return JSONResponse({"error": "xsrf"}, 403)
            self._drop(endpoint)
            return self._json({})
        if path.endswith("/keep-alive/"):
            endpoint = path.removesuffix("/keep-alive/")
            if endpoint not in self.assignments or request.headers.get("x-colab-tunnel") != "Google":
                return JSONResponse({"error": "not found"}, 404)
            self.keepalives[endpoint] = self.keepalives.get(endpoint, 0) + 1
            return self._json({})
        return JSONResponse({"error": "no such call"}, 404)

    def _assign(self, request: Request) -> Response:
        q = request.query_params
        nbh, accelerator = q.get("nbh", ""), q.get("accelerator", "NONE")
        for a in self.assignments.values():
            if a.nbh == nbh:
                return self._json({"endpoint": a.endpoint, "runtimeProxyInfo": self._proxy_info(a)})
        if request.method == "GET":
            self.xsrf.add(token := secrets.token_hex(8))
            return self._json({"acc": accelerator, "nbh": nbh, "token": token,
                               "variant": q.get("variant", "DEFAULT")})
        if request.headers.get("x-goog-colab-token") not in self.xsrf:
            return JSONResponse({"error": "xsrf"}, 403)
        if len(self.assignments) >= self.max_assignments:
            return JSONResponse({"error": "too many assignments"}, 412)
        if accelerator in self.denied:
            return JSONResponse({"error": "no quota for this accelerator"}, 400)
        self._count += 1
        a = Assignment(f"gpu-{accelerator.lower()}-s-{self._count}", accelerator, nbh)
        self.assignments[a.endpoint] = a
        return self._json({"accelerator": accelerator, "endpoint": a.endpoint,
                           "variant": self._variant(accelerator),
                           "runtimeProxyInfo": self._proxy_info(a)})

    def service_app(self) -> Starlette:
        return Starlette(routes=[Route("/token", self.token, methods=["POST"]),
                                 Route("/tun/m/{path:path}", self.tun, methods=["GET", "POST"])])

    # ------------------------------------------------------------ runtime proxy
    def _endpoint_of(self, query: Any, headers: Any) -> str | None:
        token = query.get("colab-runtime-proxy-token") or headers.get("x-colab-runtime-proxy-token")
        return next((a.endpoint for a in self.assignments.values() if token in a.tokens), None)

    def _check(self, query: Any, headers: Any, kind: str, path: str) -> int:
        """0 when the proxy token is good, else the status the proxy answers."""
        q, h = query.get("colab-runtime-proxy-token"), headers.get("x-colab-runtime-proxy-token")
        self.proxied.append({"kind": kind, "path": path, "query": q is not None,
                             "header": h is not None, "authuser": query.get("authuser")})
        token = q or h
        for a in self.assignments.values():
            if token in a.tokens:
                return 0 if a.tokens[token] > time.time() else 401
        return 404 if token in self.gone_tokens else 403 if token else 401

    async def proxy_http(self, request: Request) -> Response:
        path = request.url.path
        denied = self._check(request.query_params, request.headers, "http", path)
        if denied:
            return JSONResponse({"message": f"proxy refused ({denied})"}, denied)
        params = [(k, v) for k, v in request.query_params.multi_items()
                  if k not in ("colab-runtime-proxy-token", "authuser")]
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("content-type", "range", "accept", "accept-encoding")}
        headers["Authorization"] = f"token {self.jupyter_token}"
        try:
            async with httpx2.AsyncClient(base_url=self.jupyter_url, timeout=300) as http:
                upstream = await http.request(request.method, path, params=params,
                                              headers=headers, content=await request.body())
        except httpx2.HTTPError as exc:
            return JSONResponse({"message": f"upstream: {exc!r}"}, 502)
        keep = {k: v for k, v in upstream.headers.items()
                if k.lower() in ("content-type", "content-range", "accept-ranges", "etag",
                                 "last-modified", "content-disposition")}
        return Response(upstream.content, upstream.status_code, headers=keep)

    async def proxy_ws(self, ws: WebSocket) -> None:
        path = ws.url.path
        if self._check(ws.query_params, ws.headers, "ws", path):
            await ws.close(code=4401)
            return
        query = "&".join(f"{k}={v}" for k, v in ws.query_params.multi_items()
                         if k not in ("colab-runtime-proxy-token", "authuser"))
        target = self.jupyter_url.replace("http", "ws", 1) + path + (f"?{query}" if query else "")
        try:  # upstream first: a kernel that is gone refuses the handshake, as Colab's would
            up = await connect(target, additional_headers={
                "Authorization": f"token {self.jupyter_token}"}, max_size=None)
        except Exception:
            await ws.close(code=1011)
            return
        await ws.accept()
        endpoint = self._endpoint_of(ws.query_params, ws.headers) or ""
        self.sockets.setdefault(endpoint, []).append((asyncio.get_running_loop(), ws))
        async with up:
            async def down() -> None:
                async for msg in up:
                    await ws.send_text(msg if isinstance(msg, str) else msg.decode())

            async def upward() -> None:
                while True:
                    await up.send(await ws.receive_text())

            # Either side ending ends both, as a proxy in front of a dying server does.
            pumps = [asyncio.create_task(down()), asyncio.create_task(upward())]
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for pump in pumps:
                pump.cancel()
                with contextlib.suppress(BaseException):
                    await pump
        await _close(ws)

    def proxy_app(self) -> Starlette:
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
        return Starlette(routes=[WebSocketRoute("/{path:path}", self.proxy_ws),
                                 Route("/{path:path}", self.proxy_http, methods=methods)])

    def client_config(self) -> dict[str, Any]:
        """An OAuth client file (the installed-app shape) whose token endpoint is this fake."""
        return {"installed": {"client_id": "fake-client.apps", "client_secret": "fake-secret",
                              "auth_uri": f"{self.url}/o/oauth2/auth",
                              "token_uri": f"{self.url}/token",
                              "redirect_uris": ["http://localhost"]}}


async def _close(ws: WebSocket) -> None:
    with contextlib.suppress(Exception):
        await ws.close(code=1001)


@contextmanager
def _serve(app: Starlette) -> Iterator[str]:
    sock = socket.create_server(("127.0.0.1", 0))
    # A long keep-alive: a pooled connection closed by the server as a request goes out
    # would be a failure of the fake, not of the client.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                           timeout_keep_alive=120,
                                           ws="websockets-sansio" if _has_sansio() else "auto"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake Colab did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _has_sansio() -> bool:
    try:
        import uvicorn.protocols.websockets.websockets_sansio_impl  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def serve_fake_colab(jupyter_url: str, jupyter_token: str, **options: Any) -> Iterator[FakeColab]:
    """Run the service and the proxy on two loopback ports; yields the fake to steer."""
    fake = FakeColab(jupyter_url, jupyter_token, **options)
    with _serve(fake.service_app()) as url, _serve(fake.proxy_app()) as proxy_url:
        fake.url, fake.proxy_url = url, proxy_url
        yield fake
