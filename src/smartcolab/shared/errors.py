"""The one exception tree of smartcolab, shared by the runtime and the bridge.

Every error knows its stable wire ``code`` and its HTTP ``status``.  The runtime
renders any of them as ``{"error": {"code", "message", "details"}}`` in one handler
(``runtime/api/app.py``); the bridge's HTTP client turns such a body back into the same
class in one function (``error_from_body`` here); the MCP server turns them into
``ToolError`` text in one function (``mcp/tool_errors.py``).

    SmartColabError                      500 internal
    ├── BadRequest                       400 bad_request
    │   └── InvalidInput                 422 invalid_input
    │       └── Unsupported              422 unsupported (this runtime kind cannot do it)
    ├── Unauthorized                     401 unauthorized
    ├── Forbidden                        403 forbidden
    │   ├── PathOutsideRoots             403 path_outside_roots
    │   ├── GuardRefused                 403 guard_refused
    │   ├── HostNotAllowed               403 host_not_allowed
    │   └── OriginNotAllowed             403 origin_not_allowed
    ├── NotFound                         404 not_found
    │   ├── JobNotFound                  404 job_not_found
    │   ├── SessionNotFound              404 session_not_found
    │   └── FileNotFoundOnRuntime        404 file_not_found
    ├── Conflict                         409 conflict
    │   ├── JobIdConflict                409 job_id_conflict
    │   ├── SessionExists                409 session_exists
    │   ├── SessionBusy                  409 session_busy
    │   └── FileExistsOnRuntime          409 file_exists
    ├── PayloadTooLarge                  413 payload_too_large
    ├── RangeNotSatisfiable              416 range_not_satisfiable
    ├── HeadersTooLarge                  431 headers_too_large
    ├── RateLimited                      429 rate_limited
    │   └── QueueFull                    429 queue_full
    ├── Unavailable                      503 unavailable
    │   ├── LowMemory                    503 low_memory
    │   ├── ShuttingDown                 503 shutting_down
    │   └── KernelUnavailable            503 kernel_unavailable
    ├── InsufficientStorage              507 insufficient_storage
    ├── TunnelFailed                     502 tunnel_failed (raised where the server starts)
    └── ClientSideError                  (never sent by a runtime; raised locally)
        ├── RuntimeUnreachable           502 runtime_unreachable
        │   ├── TunnelDown               502 tunnel_down (the tunnel's endpoint is gone)
        │   ├── RuntimeNotAnswering      502 runtime_not_answering (tunnel up, runtime not)
        │   ├── NotARuntime              502 not_a_runtime (a web page, not our JSON)
        │   └── TabDisconnected          502 tab_disconnected (a Colab tab closed or reloaded)
        ├── ChecksumMismatch             502 checksum_mismatch
        ├── StateLost                    409 state_lost
        ├── LocalPathRefused             400 local_path_refused
        ├── LocalWriteFailed             507 local_write_failed
        ├── RuntimeMisbehaved            502 runtime_misbehaved
        ├── UnknownRuntime               404 unknown_runtime
        ├── IncompatibleRuntime          502 incompatible_runtime
        └── PageError                    502 page_error (a Colab page refused a tool call)
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "BadRequest",
    "ChecksumMismatch",
    "ClientSideError",
    "Conflict",
    "FileExistsOnRuntime",
    "FileNotFoundOnRuntime",
    "Forbidden",
    "GuardRefused",
    "HeadersTooLarge",
    "HostNotAllowed",
    "IncompatibleRuntime",
    "InsufficientStorage",
    "InvalidInput",
    "JobIdConflict",
    "JobNotFound",
    "KernelUnavailable",
    "LocalPathRefused",
    "LocalWriteFailed",
    "LowMemory",
    "NotARuntime",
    "NotFound",
    "OriginNotAllowed",
    "PageError",
    "PathOutsideRoots",
    "PayloadTooLarge",
    "QueueFull",
    "RangeNotSatisfiable",
    "RateLimited",
    "RuntimeMisbehaved",
    "RuntimeNotAnswering",
    "RuntimeUnreachable",
    "SessionBusy",
    "SessionExists",
    "SessionNotFound",
    "ShuttingDown",
    "SmartColabError",
    "StateLost",
    "TabDisconnected",
    "TunnelDown",
    "TunnelFailed",
    "Unauthorized",
    "Unavailable",
    "UnknownRuntime",
    "Unsupported",
    "error_body",
    "error_from_body",
]


class SmartColabError(Exception):
    """Base of every error smartcolab raises on purpose."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}
        self.retry_after = retry_after


class BadRequest(SmartColabError):
    status, code = 400, "bad_request"


class InvalidInput(BadRequest):
    status, code = 422, "invalid_input"


class Unsupported(InvalidInput):
    """The runtime's kind lacks a capability (files, saved variables...); the message says
    what it cannot do and what to use instead."""

    code = "unsupported"


class Unauthorized(SmartColabError):
    status, code = 401, "unauthorized"


class Forbidden(SmartColabError):
    status, code = 403, "forbidden"


class PathOutsideRoots(Forbidden):
    code = "path_outside_roots"


class GuardRefused(Forbidden):
    """Guarded mode refused a job's code before it ran (a seatbelt, not a sandbox)."""

    code = "guard_refused"


class HostNotAllowed(Forbidden):
    code = "host_not_allowed"


class OriginNotAllowed(Forbidden):
    code = "origin_not_allowed"


class NotFound(SmartColabError):
    status, code = 404, "not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class SessionNotFound(NotFound):
    code = "session_not_found"


class FileNotFoundOnRuntime(NotFound):
    code = "file_not_found"


class Conflict(SmartColabError):
    status, code = 409, "conflict"


class JobIdConflict(Conflict):
    code = "job_id_conflict"


class SessionExists(Conflict):
    code = "session_exists"


class SessionBusy(Conflict):
    code = "session_busy"


class FileExistsOnRuntime(Conflict):
    code = "file_exists"


class PayloadTooLarge(SmartColabError):
    status, code = 413, "payload_too_large"


class RangeNotSatisfiable(SmartColabError):
    status, code = 416, "range_not_satisfiable"


class HeadersTooLarge(SmartColabError):
    status, code = 431, "headers_too_large"


class RateLimited(SmartColabError):
    status, code = 429, "rate_limited"


class QueueFull(RateLimited):
    code = "queue_full"


class Unavailable(SmartColabError):
    status, code = 503, "unavailable"


class LowMemory(Unavailable):
    code = "low_memory"


class ShuttingDown(Unavailable):
    code = "shutting_down"


class KernelUnavailable(Unavailable):
    code = "kernel_unavailable"


class InsufficientStorage(SmartColabError):
    """The runtime's own disk is full (ENOSPC): nothing was lost, free space and retry."""

    status, code = 507, "insufficient_storage"


class TunnelFailed(SmartColabError):
    """A public tunnel (ngrok, cloudflared) could not be opened; the message says the fix."""

    status, code = 502, "tunnel_failed"


class ClientSideError(SmartColabError):
    """Raised by the bridge or the CLI themselves, never rendered by a runtime."""


class RuntimeUnreachable(ClientSideError):
    status, code = 502, "runtime_unreachable"


class TunnelDown(RuntimeUnreachable):
    """The public tunnel's endpoint is offline (ngrok ERR_NGROK_3200, Cloudflare 530/1033):
    its URL will not come back; the notebook's tunnel cell opens a new one."""

    status, code = 502, "tunnel_down"


class RuntimeNotAnswering(RuntimeUnreachable):
    """The tunnel answered with its own error page: the runtime behind it is not answering."""

    status, code = 502, "runtime_not_answering"


class NotARuntime(RuntimeUnreachable):
    """The URL answered with a web page instead of the runtime's JSON (an interstitial,
    a login page, another service): the URL does not reach a runtime."""

    status, code = 502, "not_a_runtime"


class TabDisconnected(RuntimeUnreachable):
    """The Colab tab of a colab-tab runtime went away under a call (closed, reloaded,
    asleep): a reloaded tab reconnects by itself, a closed one must be opened again."""

    status, code = 502, "tab_disconnected"


class ChecksumMismatch(ClientSideError):
    status, code = 502, "checksum_mismatch"


class StateLost(ClientSideError):
    status, code = 409, "state_lost"


class LocalPathRefused(ClientSideError):
    status, code = 400, "local_path_refused"


class LocalWriteFailed(ClientSideError):
    """This machine could not store what arrived (disk full, quota, permissions)."""

    status, code = 507, "local_write_failed"


class RuntimeMisbehaved(ClientSideError):
    """A runtime's answer broke the protocol: a bad id or name, more bytes than it stated,
    an encoding nobody asked for, an archive past its caps.  Nothing of it was kept."""

    status, code = 502, "runtime_misbehaved"


class UnknownRuntime(ClientSideError):
    status, code = 404, "unknown_runtime"


class IncompatibleRuntime(ClientSideError):
    """The runtime speaks another version of the wire protocol (``protocol.API_VERSION``)."""

    status, code = 502, "incompatible_runtime"


class PageError(ClientSideError):
    """A Colab page (the colab-tab kind) answered a tool call with an error: its own
    words are in the message (a cell id it does not know, a refused edit...)."""

    status, code = 502, "page_error"


def _all_subclasses(cls: type[SmartColabError]) -> list[type[SmartColabError]]:
    out: list[type[SmartColabError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


_ALL: list[type[SmartColabError]] = [SmartColabError, *_all_subclasses(SmartColabError)]
_BY_CODE: dict[str, type[SmartColabError]] = {c.code: c for c in _ALL}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The one JSON error shape: ``{"error": {"code", "message", "details"}}``."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_from_body(status: int, body: Any) -> SmartColabError:
    """Turn a runtime's error response back into the matching exception class.

    An unknown code falls back to the class registered for the HTTP status, so a
    newer runtime's new codes still land in the right branch of the tree.
    """
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        message = f"runtime answered HTTP {status} without an error body"
        return _class_for_status(status)(message, details={"status": status})
    code = str(err.get("code", ""))
    message = str(err.get("message") or f"HTTP {status}")
    details = err.get("details") if isinstance(err.get("details"), dict) else {}
    cls = _BY_CODE.get(code)
    if cls is None or issubclass(cls, ClientSideError):
        cls = _class_for_status(status)
    exc = cls(message, details=details)
    retry = details.get("retry_after") if details else None
    if isinstance(retry, (int, float)):
        exc.retry_after = float(retry)
    return exc


_STATUS_FALLBACK: dict[int, type[SmartColabError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
    413: PayloadTooLarge, 416: RangeNotSatisfiable, 422: InvalidInput, 429: RateLimited,
    431: HeadersTooLarge, 503: Unavailable, 507: InsufficientStorage,
}


def _class_for_status(status: int) -> type[SmartColabError]:
    return _STATUS_FALLBACK.get(status, SmartColabError)
