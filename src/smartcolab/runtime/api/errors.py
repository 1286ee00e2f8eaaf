"""The one place where errors become HTTP responses on the runtime side."""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from smartcolab.shared.errors import SmartColabError, error_body

log = logging.getLogger("smartcolab.runtime")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

_STARLETTE_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 413: "payload_too_large", 416: "range_not_satisfiable",
    429: "rate_limited", 431: "headers_too_large",
}


def _response(status: int, body: dict[str, object], retry_after: float | None = None,
              headers: Mapping[str, str] | None = None) -> JSONResponse:
    out = dict(headers or {})
    if retry_after:
        out["Retry-After"] = str(max(1, round(retry_after)))
    return JSONResponse(body, status_code=status, headers=out or None)


def disk_full(exc: BaseException) -> bool:
    """ENOSPC, however it surfaced (an OSError, or SQLite's "database or disk is full")."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc)


def install_error_handlers(app: FastAPI) -> None:
    """Render every error as ``{"error": {"code", "message", "details"}}``."""

    @app.exception_handler(SmartColabError)
    async def _ours(request: Request, exc: SmartColabError) -> JSONResponse:
        details = dict(exc.details)
        if exc.retry_after is not None:
            details["retry_after"] = exc.retry_after
        return _response(exc.status, error_body(exc.code, exc.message, details), exc.retry_after)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            problems.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
        message = "invalid request: " + "; ".join(problems[:10])
        return _response(422, error_body("invalid_input", message, {"problems": problems[:50]}))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STARLETTE_CODES.get(exc.status_code, "http_error")
        message = str(exc.detail) if exc.detail else code.replace("_", " ")
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        details: dict[str, object] = {}
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allow = ", ".join(_allowed_methods(request)) or headers.get("Allow", "")
            if allow:
                headers["Allow"] = allow
                details["allow"] = allow
                message = f"{request.method} is not allowed on {request.url.path}; use {allow}"
        return _response(exc.status_code, error_body(code, message, details), headers=headers)

    async def _io(request: Request, exc: Exception) -> JSONResponse:
        # Registered for OSError and sqlite3.Error (not as the catch-all): Starlette
        # re-raises after a catch-all handler answers, which drops the connection.
        if disk_full(exc):
            log.error("disk full on %s %s: %s", request.method, request.url.path, exc)
            return _response(507, error_body(
                "insufficient_storage", f"the runtime's disk is full ({exc}); nothing was "
                "changed by this request. Free space on the runtime (delete large files or "
                "old outputs) and retry.", {"retry_after": 10}), retry_after=10)
        return await _unexpected(request, exc)

    app.add_exception_handler(OSError, _io)
    app.add_exception_handler(sqlite3.Error, _io)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _response(500, error_body(
            "internal", f"internal error ({type(exc).__name__}); the runtime log has details"))


def _allowed_methods(request: Request) -> list[str]:
    """Methods some route accepts at this path (for a 405's ``Allow``): each is tried."""
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(getattr(route, "matches", None) and route.matches(scope)[0] == Match.FULL
               for route in request.app.router.routes):
            allowed.append(method)
    return allowed
