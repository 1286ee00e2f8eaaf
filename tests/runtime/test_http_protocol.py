"""The runtime's HTTP/1.1 protocol (security/connections.py): which parser, and what the
guarded protocols do on a transport that records what they send.

Both parsers are checked, httptools' (the default where installed) and h11's (the
fallback); against a real server, tests/runtime/test_security_conn.py runs on each.
"""

from __future__ import annotations

import asyncio
import builtins
import importlib.util
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from smartcolab.runtime.security import connections
from smartcolab.runtime.security.connections import GuardedProtocol, protocol_class

PARSERS = ["httptools", "h11"]
HAVE_HTTPTOOLS = importlib.util.find_spec("httptools") is not None


def test_httptools_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("httptools")
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    monkeypatch.delenv(connections.HTTP_ENV, raising=False)
    assert connections.http_parser() == "httptools"
    chosen = protocol_class(header_timeout_s=1, max_per_client=2)
    assert issubclass(chosen, HttpToolsProtocol) and issubclass(chosen, GuardedProtocol)
    assert chosen.header_timeout_s == 1 and chosen.counter.cap == 2


def test_h11_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    monkeypatch.setenv(connections.HTTP_ENV, " H11 ")
    assert connections.http_parser() == "h11"
    assert issubclass(protocol_class(header_timeout_s=1, max_per_client=0), H11Protocol)


def test_h11_without_httptools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(connections.HTTP_ENV, raising=False)
    real_import = builtins.__import__

    def no_httptools(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "httptools":
            raise ImportError("not installed")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_httptools)
    assert connections.http_parser() == "h11"


@pytest.mark.parametrize("asked", ["", "h11"])
def test_the_server_is_given_the_chosen_guarded_protocol(monkeypatch: pytest.MonkeyPatch,
                                                         asked: str) -> None:
    from smartcolab.runtime.config import RuntimeConfig
    from smartcolab.runtime.server import http_options

    monkeypatch.setenv(connections.HTTP_ENV, asked)
    config = RuntimeConfig(header_timeout_s=3, max_connections_per_client=7)
    options = http_options(config)
    chosen = options["http"]
    assert issubclass(chosen, GuardedProtocol)
    assert chosen.__name__ == ("RuntimeH11Protocol" if asked or not HAVE_HTTPTOOLS
                               else "RuntimeHttpToolsProtocol")
    assert chosen.header_timeout_s == 3 and chosen.counter.cap == 7
    # The head bound, h11's and the httptools protocol's, leaves room above our own limits.
    assert options["h11_max_incomplete_event_size"] > config.max_header_bytes
    assert options["proxy_headers"] is False


class Recorder(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.sends: list[bytes] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sends.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 80)}.get(
            name, default)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def guarded(parser: str, app: Any, **config: Any) -> GuardedProtocol:
    if parser == "httptools" and not HAVE_HTTPTOOLS:
        pytest.skip("httptools is not installed")
    loaded = Config(app, log_level="warning", lifespan="off", **config)
    loaded.load()
    cls = protocol_class(header_timeout_s=10, max_per_client=0, parser=parser)
    return cls(config=loaded, server_state=ServerState(), app_state={})  # type: ignore[call-arg]


@pytest.mark.parametrize("parser", PARSERS)
def test_a_complete_response_is_sent_before_the_request_cycle_ends(parser: str) -> None:
    """The guarded protocol sends a finished response at once, in one segment, not at the
    end of the loop turn after the middleware's audit line."""

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        transport = Recorder()
        seen_after_send: list[bytes] = []

        async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
            await send({"type": "http.response.start", "status": 200,  # type: ignore[operator]
                        "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]
            # What the middleware does after the body (the audit line) comes after the send.
            seen_after_send.extend(transport.sends)

        protocol = guarded(parser, app)
        protocol.connection_made(transport)
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(20):
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        return seen_after_send, transport.sends

    after_send, sends = asyncio.run(scenario())
    assert len(after_send) == 1  # sent as the body completed, before the app returned
    assert after_send[0].startswith(b"HTTP/1.1 200 OK\r\n") and after_send[0].endswith(b"ok")
    assert len(sends) == 1  # head and body: one segment


@pytest.mark.parametrize("parser", PARSERS)
def test_a_head_past_the_bound_is_answered_400_and_closed(parser: str) -> None:
    """A header that never ends is refused once the head passes the bound (h11 keeps one;
    llhttp keeps none, so the httptools protocol counts); one under it is served."""
    served: list[str] = []

    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        served.append(scope["path"])
        await send({"type": "http.response.start", "status": 200,  # type: ignore[operator]
                    "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    async def scenario(chunks: int, end: bool) -> tuple[bool, bytes]:
        transport = Recorder()
        protocol = guarded(parser, app, h11_max_incomplete_event_size=4096)
        protocol.connection_made(transport)
        protocol.data_received(b"GET /big HTTP/1.1\r\nHost: x\r\nX-Big: ")
        for _ in range(chunks):
            if not transport.closing:
                protocol.data_received(b"a" * 1000)
        if end and not transport.closing:
            protocol.data_received(b"\r\n\r\n")
        for _ in range(20):
            await asyncio.sleep(0)
        closed = transport.closing
        protocol.connection_lost(None)
        return closed, b"".join(transport.sends)

    closed, sent = asyncio.run(scenario(3, end=True))
    assert served == ["/big"] and not closed
    assert sent.startswith(b"HTTP/1.1 200 ")
    closed, sent = asyncio.run(scenario(6, end=False))
    assert closed and sent.startswith(b"HTTP/1.1 400 ")
    assert served == ["/big"]
