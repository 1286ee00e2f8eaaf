"""The runtime's OpenAPI document, with every error response described.

FastAPI documents only successes and its own 422 shape; our errors all share one
body (``protocol.ErrorResponse``), produced by ``api/errors.py`` and by the limits
middleware.  Declaring them on every operation keeps the document truthful, which
is what the schemathesis fuzz test holds the server to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, params
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from smartcolab.shared.protocol import ErrorResponse

# Every operation can meet these: auth, allowlist, limits, lockout, routing, overload.
COMMON_ERRORS: dict[int, str] = {
    400: "Bad request",
    401: "Missing or wrong secret",
    403: "Refused: Host, Origin or address not allowed, path outside the roots, or guarded mode",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict with the current state",
    413: "Body or query too large",
    416: "Range not satisfiable",
    422: "Invalid input",
    429: "Rate limited, locked out after failed authentications, or queue full",
    431: "Request headers too large",
    503: "Unavailable: shutting down, low memory, or kernel unavailable",
    507: "The runtime's disk is full: nothing was changed; free space and retry",
}
_REF = "#/components/schemas/ErrorResponse"


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF}}},
        "headers": {"Retry-After": {"description": "seconds to wait before retrying",
                                    "schema": {"type": "string"}, "required": False}},
    }


def install_openapi(app: FastAPI, dependencies: Sequence[params.Depends]) -> None:
    """Serve ``/openapi.json`` behind auth, documenting every operation's errors."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version,
                             description=app.description, routes=app.routes)
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        error_schema = ErrorResponse.model_json_schema(
            ref_template="#/components/schemas/{model}")
        schemas.update(error_schema.pop("$defs", {}))
        schemas["ErrorResponse"] = error_schema
        for key in ("HTTPValidationError", "ValidationError"):
            schemas.pop(key, None)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status, description in COMMON_ERRORS.items():
                    # FastAPI's own 422 shape is never sent: ours replaces it.
                    if str(status) == "422" or str(status) not in responses:
                        responses[str(status)] = _error_response(description)
                responses["default"] = _error_response("Any other error, same shape")
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/openapi.json", include_in_schema=False, dependencies=list(dependencies))
    async def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())
