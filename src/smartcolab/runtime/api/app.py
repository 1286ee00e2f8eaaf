"""The runtime's ASGI application: routers, auth, error rendering, epoch and API version headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smartcolab import __version__
from smartcolab.runtime.api import auth as routes_auth
from smartcolab.runtime.api import files as routes_files
from smartcolab.runtime.api import jobs as routes_jobs
from smartcolab.runtime.api import persist as routes_persist
from smartcolab.runtime.api import system as routes_system
from smartcolab.runtime.api import ui as routes_ui
from smartcolab.runtime.api import uploads as routes_uploads
from smartcolab.runtime.api.errors import install_error_handlers
from smartcolab.runtime.api.fastlane import SubmitLane
from smartcolab.runtime.api.openapi import install_openapi
from smartcolab.runtime.config import RuntimeConfig
from smartcolab.runtime.security.audit import AuditMiddleware
from smartcolab.runtime.security.auth import require_gate
from smartcolab.runtime.security.gate import AuthGate, AuthLockout
from smartcolab.runtime.security.limits import LimitsMiddleware
from smartcolab.runtime.state import RuntimeState
from smartcolab.shared import routes
from smartcolab.shared.protocol import API_VERSION, H_API_VERSION, H_EPOCH, Health

_EPOCH_HEADER = H_EPOCH.lower().encode("latin-1")
_API_VERSION_HEADER = (H_API_VERSION.lower().encode("latin-1"), API_VERSION.encode("latin-1"))


class EpochHeaderMiddleware:
    """Adds the runtime epoch and the API version headers to every response.

    Plain ASGI: starlette's ``BaseHTTPMiddleware`` (``@app.middleware``) runs each
    request in an extra task with memory streams, a measurable cost on every job.
    """

    def __init__(self, app: ASGIApp, state: RuntimeState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_epoch(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((_EPOCH_HEADER, self.state.epoch().encode("latin-1")))
                headers.append(_API_VERSION_HEADER)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_epoch)


def create_app(config: RuntimeConfig) -> FastAPI:
    """Build the runtime app; kernels start in its lifespan, not here."""
    state = RuntimeState(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(
        title="smartcolab runtime", version=__version__, lifespan=lifespan,
        docs_url=None, redoc_url=None, openapi_url=None,  # served behind auth below
        description="Stateful Python execution on Jupyter kernels. Every endpoint but "
                    "/health needs the runtime's secret (bearer token or HMAC signature).",
    )
    app.state.sc = state
    # No trailing-slash redirects: one was built from the Host header (an open redirect).
    app.router.redirect_slashes = False
    install_error_handlers(app)

    app.add_middleware(EpochHeaderMiddleware, state=state)

    public = APIRouter()

    @public.get(routes.HEALTH, response_model=Health, tags=["public"])
    async def health() -> Health:
        """Public and minimal: status, version and the runtime epoch."""
        return Health(status="shutting_down" if state.shutdown_requested.is_set() else "ok", version=__version__, epoch=state.epoch())

    # Matched before every router: POST /jobs, when well-formed, on the short way.
    app.router.routes.append(SubmitLane())
    app.include_router(public)
    app.include_router(routes_ui.public_router)
    # AuthGate (middleware) authenticates; the dependency makes sure no route is reached
    # without it.
    protected = [Depends(require_gate)]
    app.include_router(routes_system.router, dependencies=protected)
    app.include_router(routes_jobs.router, dependencies=protected)
    app.include_router(routes_persist.router, dependencies=protected)
    app.include_router(routes_ui.router, dependencies=protected)
    app.include_router(routes_files.router, dependencies=protected)
    app.include_router(routes_files.upload_router, dependencies=protected)
    app.include_router(routes_uploads.router, dependencies=protected)
    app.include_router(routes_uploads.part_router, dependencies=protected)
    app.include_router(routes_auth.router, dependencies=protected)
    # Added last, so outermost: Host/Origin and limits, then the audit log, then
    # authentication, all before anything reads a body.
    lockout = AuthLockout(config.lockout_failures, config.lockout_window_s, config.lockout_s,
                          config.max_tracked_clients)
    app.add_middleware(AuthGate, auth=state.auth, lockout=lockout, audit=state.audit)
    app.add_middleware(AuditMiddleware, audit=state.audit)
    app.add_middleware(LimitsMiddleware, config=config, hosts=state.hosts,
                       resolver=state.resolver)
    install_openapi(app, protected)
    return app
