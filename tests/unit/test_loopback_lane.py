"""The loopback lane (``client/http/lane.py``) against a scripted server on 127.0.0.1:
which runtimes get it, kept-alive connections, and answers no runtime should send.

The answers every client path must treat alike (errors, caps, encodings, retries,
signatures) are checked through both paths in ``test_client_http.py``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import httpx2
import pytest

from smartcolab.client.http.client import NO_RETRY, RetryPolicy, RuntimeClient
from smartcolab.client.http.lane import loopback_address
from smartcolab.shared import env as env_names
from smartcolab.shared.errors import RuntimeMisbehaved, RuntimeUnreachable
from support.loopback_http import Cut, Seen, raw_response, scripted_server

pytestmark = pytest.mark.anyio
FAST = RetryPolicy(attempts=3, initial_s=0.001, max_s=0.005, total_s=10)


def ok(body: object) -> bytes:
    return raw_response(200, json.dumps(body).encode(), [("Content-Type", "application/json")])


async def echo(seen: Seen) -> bytes | None:
    return ok({"path": seen.target, "conn": seen.conn})


@pytest.mark.parametrize(("url", "lane"), [
    ("http://127.0.0.1:8765", ("127.0.0.1", 8765)), ("http://localhost:9", ("localhost", 9)),
    ("http://[::1]:80/", ("::1", 80)), ("http://127.5.6.7", ("127.5.6.7", 80)),
    ("http://127.0.0.1:8765/sub/path", ("127.0.0.1", 8765)),
    ("https://127.0.0.1:8765", None), ("http://10.0.0.2:8765", None),
    ("http://abc.ngrok-free.app", None), ("http://user:pw@127.0.0.1:1", None),
    ("http://127.0.0.1:99999", None), ("not a url", None)])
def test_only_plain_http_to_a_loopback_address_takes_the_lane(
        url: str, lane: tuple[str, int] | None) -> None:
    assert loopback_address(url) == lane


async def test_the_lane_is_left_for_an_injected_transport_or_when_switched_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    mock = httpx2.MockTransport(lambda r: httpx2.Response(200))
    async with RuntimeClient("http://127.0.0.1:1", None, transport=mock) as injected:
        assert injected._lane is None
    monkeypatch.setenv(env_names.LOOPBACK_LANE, "0")
    async with scripted_server(echo) as server, RuntimeClient(server.url, None) as off:
        assert off._lane is None
        assert (await off.request("GET", "/a")).json()["path"] == "/a"  # through httpx2


async def test_requests_share_one_kept_alive_connection() -> None:
    async with scripted_server(echo) as server, RuntimeClient(server.url, "s") as rc:
        for n in range(4):
            answer = (await rc.request("GET", "/jobs", params={"n": n})).json()
            assert answer == {"path": f"/jobs?n={n}", "conn": 1}
    assert server.connections == 1 and len(server.seen) == 4


async def test_a_base_path_in_the_url_prefixes_every_request() -> None:
    async with scripted_server(echo) as server, \
            RuntimeClient(server.url + "/proxy/8000/", "s") as rc:
        assert (await rc.request("GET", "/health")).json()["path"] == "/proxy/8000/health"


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def answer_then_close(seen: Seen) -> bytes | None:
        return raw_response(200, b"{}", [("Connection", "close")])

    async with scripted_server(answer_then_close) as server, RuntimeClient(server.url, "s") as rc:
        for _ in range(3):
            assert (await rc.request("GET", "/x")).json() == {}
    assert server.connections == 3


async def test_an_idle_connection_dropped_by_the_server_is_replaced() -> None:
    """A keep-alive timeout on the server: the socket closes between two requests."""
    async with scripted_server(echo) as server, RuntimeClient(server.url, "s") as rc:
        assert (await rc.request("GET", "/a")).json()["conn"] == 1
        server.drop()
        await anyio.sleep(0.1)  # the close reaches the idle connection
        assert (await rc.request("GET", "/b")).json()["conn"] == 2


async def test_a_cancelled_request_never_hands_its_late_answer_to_the_next_one() -> None:
    release = asyncio.Event()

    async def slow_first(seen: Seen) -> bytes | None:
        if seen.target == "/slow":
            await release.wait()
        return ok({"for": seen.target})

    async with scripted_server(slow_first) as server, RuntimeClient(server.url, "s") as rc:
        with anyio.move_on_after(0.2) as scope:
            await rc.request("GET", "/slow")
        assert scope.cancelled_caught
        release.set()  # the server now answers /slow on the first connection
        assert (await rc.request("GET", "/next")).json() == {"for": "/next"}
    assert server.connections == 2


@pytest.mark.parametrize("reply", [
    b"this is not http\r\n\r\n",
    Cut(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"cut\":"),
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Long: " + b"a" * 200_000 + b"\r\n\r\n"],
    ids=["garbage", "cut-body", "head-over-64KiB"])
async def test_a_broken_answer_is_runtime_unreachable_and_the_next_request_works(
        reply: bytes) -> None:
    async def respond(seen: Seen) -> bytes | None:
        return reply if seen.target == "/broken" else ok({"fine": True})

    async with scripted_server(respond) as server, RuntimeClient(server.url, "s") as rc:
        with anyio.fail_after(5), \
                pytest.raises(RuntimeUnreachable, match="cannot reach the runtime") as caught:
            await rc.request("POST", "/broken")  # not retried: one answer, the broken one
        assert "serving cell" in str(caught.value)
        assert (await rc.request("GET", "/again")).json() == {"fine": True}
    assert server.connections == 2  # the broken answer's connection was dropped


async def test_no_answer_in_time_is_runtime_unreachable() -> None:
    async def never(seen: Seen) -> bytes | None:
        await asyncio.sleep(30)
        return None

    async with scripted_server(never) as server, \
            RuntimeClient(server.url, "s", read_timeout=0.3, retry=NO_RETRY) as rc:
        with anyio.fail_after(5), pytest.raises(RuntimeUnreachable, match="timed out"):
            await rc.request("GET", "/x")


async def test_nothing_listening_is_runtime_unreachable_and_retried_when_safe() -> None:
    async with scripted_server(echo) as server:
        url = server.url
    async with RuntimeClient(url, "s", retry=FAST) as rc:
        with pytest.raises(RuntimeUnreachable, match="cannot connect") as caught:
            await rc.request("GET", "/x")
    assert caught.value.details == {"url": url}


async def test_an_answer_over_the_cap_without_a_length_is_cut_and_the_connection_dropped(
        ) -> None:
    chunk = b"a" * 1000
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               + (b"3e8\r\n" + chunk + b"\r\n") * 8 + b"0\r\n\r\n")

    async def respond(seen: Seen) -> bytes | None:
        return chunked if seen.target == "/big" else ok({"small": True})

    async with scripted_server(respond) as server, RuntimeClient(server.url, "s") as rc:
        rc.max_response_bytes = 4096
        with pytest.raises(RuntimeMisbehaved, match="over the 4,096-byte cap"):
            await rc.request("GET", "/big")
        assert (await rc.request("GET", "/small")).json() == {"small": True}
        rc.max_response_bytes = 64 * 1024
        assert (await rc.request("GET", "/big")).content == chunk * 8  # chunked, whole
    assert server.connections == 2  # the over-cap answer's connection was not reused


async def test_concurrent_requests_each_get_their_own_answer() -> None:
    async def respond(seen: Seen) -> bytes | None:
        await asyncio.sleep(0.001 * (hash(seen.target) % 20))
        return ok({"for": seen.target})

    async with scripted_server(respond) as server, RuntimeClient(server.url, "s") as rc:
        got: dict[int, object] = {}

        async def one(n: int) -> None:
            got[n] = (await rc.request("GET", f"/n/{n}")).json()["for"]

        async with anyio.create_task_group() as tg:
            for n in range(24):
                tg.start_soon(one, n)
    assert got == {n: f"/n/{n}" for n in range(24)}
    assert 1 < server.connections <= 24


def test_a_client_used_from_two_event_loops_in_turn_works() -> None:
    """A connection belongs to the loop that made it; a new ``anyio.run`` starts afresh."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def do_GET(self) -> None:
            body = json.dumps({"path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        rc = RuntimeClient(f"http://127.0.0.1:{server.server_address[1]}", "s")

        async def ask(n: int) -> object:
            return (await rc.request("GET", f"/q{n}")).json()

        assert anyio.run(ask, 1) == {"path": "/q1"}
        assert anyio.run(ask, 2) == {"path": "/q2"}
        anyio.run(rc.aclose)
    finally:
        server.shutdown()
        server.server_close()
