"""The one place where errors become HTTP responses on the runtime side."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from smartcolab.shared.errors import SmartColabError, error_body

log = logging.getLogger("smartcolab.runtime")

_STARLETTE_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 413: "payload_too_large", 416: "range_not_satisfiable",
    429: "rate_limited", 431: "headers_too_large",
}


def _response(status: int, body: dict[str, object], retry_after: float | None = None) -> JSONResponse:
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else None
    return JSONResponse(body, status_code=status, headers=headers)


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
        return _response(exc.status_code, error_body(code, message))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _response(500, error_body(
            "internal", f"internal error ({type(exc).__name__}); the runtime log has details"))
