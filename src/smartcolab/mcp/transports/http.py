"""MCP over Streamable HTTP: the guard in front of the SDK's app, the token, the event store.

``smartcolab mcp --transport http`` serves the MCP server to clients that cannot
spawn it.  Whatever address it binds, every request passes :class:`HttpGuard`:

* ``Host`` must name this server (loopback names, the bind address, this machine's
  name when bound to every interface, plus ``--allowed-host``), so a page whose
  name was rebound to 127.0.0.1 is refused (421) before anything else;
* ``Origin``, when a browser sends one, must be a loopback origin or one given with
  ``--allowed-origin`` (403);
* ``/.well-known/*`` answers a plain 404: there is no OAuth here, and a 401 there
  sends TypeScript clients into an interactive OAuth flow instead of using the
  static bearer header they were given;
* everything else needs ``Authorization: Bearer <token>`` (constant-time compare).

An empty ``SMARTCOLAB_MCP_TOKEN`` counts as unset (a token is generated and printed
to the terminal, never to a log file); a token shorter than ``MIN_TOKEN_CHARS`` is
refused.  :class:`MemoryEventStore` lets a client that lost its SSE stream resume
with ``Last-Event-ID`` (without one the SDK answered such a GET with a 500).
"""

from __future__ import annotations

import hmac
import itertools
import os
import secrets
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import JSONRPCMessage

from smartcolab.shared import env as env_names
from smartcolab.shared.errors import InvalidInput

ENV_MCP_TOKEN = env_names.MCP_TOKEN
MIN_TOKEN_CHARS = 16
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
WILDCARD_BINDS = ("0.0.0.0", "::", "")
# Enough for a client to catch up after a dropped stream; older events are forgotten
# (by count, and by size: a result can carry images).
MAX_STORED_EVENTS = 2_000
MAX_STORED_BYTES = 64 * 1024 * 1024

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


def resolve_token(value: str | None) -> tuple[str, bool]:
    """The bearer token from ``SMARTCOLAB_MCP_TOKEN``: ``(token, generated)``.

    Unset or blank: a random token is generated (the caller shows it once on the
    terminal).  Set but shorter than ``MIN_TOKEN_CHARS``: refused.
    """
    token = (value or "").strip()
    if not token:
        return secrets.token_urlsafe(32), True
    if len(token) < MIN_TOKEN_CHARS:
        raise InvalidInput(f"{ENV_MCP_TOKEN} is {len(token)} characters long; use at least "
                           f"{MIN_TOKEN_CHARS} (for example: python -c \"import secrets; "
                           "print(secrets.token_urlsafe(32))\"), or unset it to have one "
                           "generated")
    return token, False


def announce_token(token: str, state_dir: Path, tty: TextIO | None) -> str:
    """Show a generated token on the terminal only; without one, store it (0600) instead.

    Returns the line for stderr: the token itself when stderr is a terminal, else
    the path of the private file that holds it (stderr may well be a log file).
    """
    if tty is not None and tty.isatty():
        return f"MCP bearer token (shown once, not logged): {token}"
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "mcp-token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    return f"MCP bearer token generated; stderr is not a terminal, so it is in {path} (mode 0600)"


def _name_of(netloc: str) -> str:
    """``name[:port]`` -> name (lower case; IPv6 kept in brackets); "" if the port is not a number."""
    value = netloc.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        name, rest = value[:end + 1], value[end + 1:]
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return ""
    return name


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


@dataclass(frozen=True)
class HostPolicy:
    """Which ``Host`` and ``Origin`` values a request may carry."""

    hosts: frozenset[str]  # names without port, lower case ("[::1]" bracketed)
    origins: frozenset[str]  # scheme://name[:port], lower case, no trailing slash

    @classmethod
    def for_bind(cls, bind: str, *, extra_hosts: Iterable[str] = (),
                 extra_origins: Iterable[str] = ()) -> HostPolicy:
        hosts = {*LOOPBACK_HOSTS, *(h.strip().lower() for h in extra_hosts if h.strip())}
        if bind in WILDCARD_BINDS:
            # Bound to every interface: this machine's own names are its names too.
            hosts |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        else:
            hosts.add(_bracket(bind.lower()))
        origins = {o.strip().rstrip("/").lower() for o in extra_origins if o.strip()}
        return cls(frozenset(_bracket(h) for h in hosts), frozenset(origins))

    def host_ok(self, host: str) -> bool:
        return _name_of(host) in self.hosts

    def origin_ok(self, origin: str) -> bool:
        """A configured origin, or http(s) on a loopback name (any port)."""
        value = origin.strip().rstrip("/").lower()
        if value in self.origins:
            return True
        scheme, sep, rest = value.partition("://")
        return bool(sep) and scheme in ("http", "https") and "/" not in rest \
            and _name_of(rest) in LOOPBACK_HOSTS

    def sdk_settings(self) -> TransportSecuritySettings:
        """The same policy for the SDK's own check (it runs after this guard)."""
        return TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=[*self.hosts, *(f"{h}:*" for h in self.hosts)],
            allowed_origins=[*self.origins, *(f"{scheme}://{h}{port}" for scheme in ("http", "https")
                                              for h in LOOPBACK_HOSTS for port in ("", ":*"))])


async def _answer(send: Any, status: int, body: bytes,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class HttpGuard:
    """Host, Origin, ``/.well-known`` and the bearer token, checked before the MCP app."""

    def __init__(self, app: ASGIApp, token: str, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if not self.policy.host_ok(host):
            await _answer(send, 421, b'{"error": "this Host is not served here; start the '
                                     b'server with --allowed-host NAME to allow it"}')
            return
        origin = headers.get(b"origin")
        if origin is not None and not self.policy.origin_ok(origin.decode("latin-1")):
            await _answer(send, 403, b'{"error": "this Origin is not allowed; start the server '
                                     b'with --allowed-origin ORIGIN to allow it"}')
            return
        if str(scope.get("path", "")).startswith("/.well-known/"):
            await _answer(send, 404, b'{"error": "not found: this server uses a static bearer '
                                     b'token, not OAuth"}')
            return
        if not hmac.compare_digest(headers.get(b"authorization", b""), self._expected):
            await _answer(send, 401, b'{"error": "a bearer token is required"}',
                          [(b"www-authenticate", b'Bearer realm="smartcolab-mcp"')])
            return
        await self.app(scope, receive, send)


@dataclass
class MemoryEventStore(EventStore):
    """The latest events of every stream (bounded in count and bytes), for resumes."""

    max_events: int = MAX_STORED_EVENTS
    max_bytes: int = MAX_STORED_BYTES
    _events: OrderedDict[EventId, tuple[StreamId, JSONRPCMessage | None, int]] = field(
        default_factory=OrderedDict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _bytes: int = 0

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        event_id = f"{next(self._ids)}-{secrets.token_hex(4)}"
        size = 0 if message is None else len(message.model_dump_json(by_alias=True))
        self._events[event_id] = (stream_id, message, size)
        self._bytes += size
        while len(self._events) > self.max_events or (
                self._bytes > self.max_bytes and len(self._events) > 1):
            _, (_, _, dropped) = self._events.popitem(last=False)
            self._bytes -= dropped
        return event_id

    async def replay_events_after(self, last_event_id: EventId,
                                  send_callback: EventCallback) -> StreamId | None:
        if last_event_id not in self._events:
            return None
        stream_id = self._events[last_event_id][0]
        after = False
        for event_id, (stream, message, _) in list(self._events.items()):
            if after and stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
            after = after or event_id == last_event_id
        return stream_id
