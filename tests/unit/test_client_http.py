"""The runtime HTTP client against ``httpx2.MockTransport``: signing, errors, retries.

The mock is the server: each test says what the runtime (or the tunnel in front of
it) answers, and checks what the client makes of it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx2
import pytest

from smartcolab.client.http.client import NO_RETRY, RetryPolicy, RuntimeClient
from smartcolab.shared.errors import (
    Conflict,
    JobNotFound,
    NotARuntime,
    NotFound,
    RateLimited,
    RuntimeMisbehaved,
    RuntimeNotAnswering,
    RuntimeUnreachable,
    SmartColabError,
    TunnelDown,
    Unavailable,
)
from smartcolab.shared.protocol import (
    H_CONTENT_SHA256,
    H_EPOCH,
    H_NGROK_SKIP,
    H_NONCE,
    H_SIGNATURE,
    H_TIMESTAMP,
    JobSubmit,
    canonical_request,
    sign,
)
from support.loopback_http import replaying, scripted_server

pytestmark = pytest.mark.anyio

URL = "https://abc.ngrok-free.app"
SECRET = "s3cret-for-the-mock"
FAST = RetryPolicy(attempts=3, initial_s=0.001, max_s=0.005, total_s=10)
Handler = Callable[[httpx2.Request], httpx2.Response]


ClientFactory = Callable[..., AbstractAsyncContextManager[RuntimeClient]]


@pytest.fixture(params=["mock", "loopback"])
def client(request: pytest.FixtureRequest) -> ClientFactory:
    """``client(handler)``: a client whose runtime answers as ``handler`` says, through
    ``httpx2.MockTransport`` (httpx2's path) or a real loopback server (the lean lane)."""

    @asynccontextmanager
    async def make(handler: Handler, retry: RetryPolicy = NO_RETRY) -> AsyncIterator[RuntimeClient]:
        if request.param == "mock":
            async with RuntimeClient(URL, SECRET, retry=retry,
                                     transport=httpx2.MockTransport(handler)) as rc:
                yield rc
        else:
            async with scripted_server(replaying(handler)) as server, \
                    RuntimeClient(server.url, SECRET, retry=retry) as rc:
                assert rc._lane is not None
                yield rc

    return make


def error_reply(status: int, code: str, message: str = "it went wrong",
                **details: object) -> httpx2.Response:
    return httpx2.Response(status, json={"error": {"code": code, "message": message,
                                                   "details": details}})


async def test_every_request_is_signed_over_its_raw_path_query_and_body(
        client: ClientFactory) -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json={"ok": True}, headers={H_EPOCH: "boot.3"})

    async with client(handler) as c:
        await c.request("GET", "/files", params={"path": "a&b #?é/%2e%2e", "skip": None})
        await c.request("POST", "/sessions", json={"name": "n"})
        assert c.last_epoch == "boot.3"
    for request in seen:
        h = request.headers
        path, _, query = request.url.raw_path.decode("latin-1").partition("?")
        body = request.content
        assert h[H_CONTENT_SHA256] == hashlib.sha256(body).hexdigest()
        expected = sign(SECRET, canonical_request(request.method, path, query,
                                                  h[H_CONTENT_SHA256], h[H_TIMESTAMP], h[H_NONCE]))
        assert h[H_SIGNATURE] == expected
        assert h[H_NGROK_SKIP] == "1"
        assert "authorization" not in h
    assert "skip" not in seen[0].url.params  # None values are left out, not sent as "None"
    assert seen[0].url.params["path"] == "a&b #?é/%2e%2e"
    assert seen[0].headers[H_NONCE] != seen[1].headers[H_NONCE]


async def test_a_known_error_code_becomes_its_class_with_details(
        client: ClientFactory) -> None:
    async with client(lambda r: error_reply(404, "job_not_found", "no job 'j'", job_id="j")) as c:
        with pytest.raises(JobNotFound, match="no job 'j'") as caught:
            await c.get_job("j")
    assert caught.value.details == {"job_id": "j"}


@pytest.mark.parametrize(("status", "expected"), [
    (409, Conflict), (404, NotFound), (429, RateLimited), (503, Unavailable),
    (418, SmartColabError)])
async def test_an_unknown_code_falls_back_to_the_class_of_its_status(
        client: ClientFactory, status: int, expected: type[SmartColabError]) -> None:
    reply = error_reply(status, "brand_new_code_from_a_newer_runtime", "newer runtime says no")
    async with client(lambda r: reply) as c:
        with pytest.raises(expected, match="newer runtime says no") as caught:
            await c.probe()
    assert type(caught.value) is expected


async def test_a_runtime_cannot_claim_a_client_side_error(client: ClientFactory) -> None:
    """``runtime_unreachable`` is ours to raise; from a server it is only its status."""
    async with client(lambda r: error_reply(409, "runtime_unreachable", "fake")) as c:
        with pytest.raises(Conflict) as caught:
            await c.probe()
    assert not isinstance(caught.value, RuntimeUnreachable)


async def test_retry_after_comes_from_the_header_or_the_details(
        client: ClientFactory) -> None:
    header = httpx2.Response(429, headers={"Retry-After": "7"},
                             json={"error": {"code": "rate_limited", "message": "slow"}})
    async with client(lambda r: header) as c:
        with pytest.raises(RateLimited) as caught:
            await c.probe()
    assert caught.value.retry_after == 7.0
    async with client(lambda r: error_reply(503, "queue_full", "full", retry_after=5)) as c:
        with pytest.raises(RateLimited) as queued:  # queue_full is a RateLimited
            await c.list_jobs()
    assert queued.value.retry_after == 5.0


async def test_safe_calls_are_retried_and_unsafe_ones_are_not(client: ClientFactory) -> None:
    calls: list[str] = []

    def flaky(request: httpx2.Request) -> httpx2.Response:
        calls.append(request.method)
        if len(calls) < 3:
            return error_reply(503, "kernel_unavailable", "starting")
        return httpx2.Response(200, json={"sessions": []})

    async with client(flaky, retry=FAST) as c:
        assert (await c.sessions()).sessions == []
    assert calls == ["GET"] * 3
    calls.clear()
    async with client(flaky, retry=FAST) as c:
        with pytest.raises(Unavailable):
            await c.create_session("x")  # not idempotent: one try only
    assert calls == ["POST"]


async def test_job_submission_is_retried_with_the_same_job_id(client: ClientFactory) -> None:
    bodies: list[dict[str, object]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        bodies.append(json.loads(request.content))
        if len(bodies) == 1:
            raise httpx2.ConnectError("connection reset", request=request)
        return httpx2.Response(201, json={**bodies[-1], "status": "queued", "epoch": "e.0",
                                          "created_at": 1.0})

    async with client(handler, retry=FAST) as c:
        view = await c.submit(JobSubmit(job_id="once-only", code="1"))
    assert view.job_id == "once-only" and view.status == "queued"
    assert [b["job_id"] for b in bodies] == ["once-only", "once-only"]


async def test_a_connection_error_is_runtime_unreachable_with_the_fix(
        client: ClientFactory) -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("[Errno 111] Connection refused", request=request)

    async with client(refuse, retry=FAST) as c:
        with pytest.raises(RuntimeUnreachable, match="cannot reach the runtime") as caught:
            await c.health()
    assert caught.value.details == {"url": c.url}
    assert "connect_runtime" in str(caught.value)


NGROK_8012 = ("<!DOCTYPE html><html><body><p>Traffic was successfully tunneled to the ngrok "
              "agent, but the agent failed to establish a connection to the upstream web "
              "service at localhost:8765.</p><p>ERR_NGROK_8012</p></body></html>")
CLOUDFLARE_502 = ("<!DOCTYPE html><html><head><title>trycloudflare.com | 502: Bad gateway"
                  "</title></head><body>Error code 502 ... Cloudflare</body></html>")


@pytest.mark.parametrize(("status", "page"), [(502, NGROK_8012), (502, CLOUDFLARE_502),
                                              (503, "<html>Service Unavailable</html>"),
                                              (504, "<html>Gateway Timeout</html>")])
async def test_a_tunnel_error_page_means_the_runtime_is_not_answering(client: ClientFactory,
                                                                      status: int,
                                                                      page: str) -> None:
    reply = httpx2.Response(status, headers={"content-type": "text/html"}, text=page)
    async with client(lambda r: reply) as c:
        with pytest.raises(RuntimeUnreachable, match=f"tunnel .* answered HTTP {status}") as exc:
            await c.probe()
    assert "serving cell" in str(exc.value)
    assert "<html" not in str(exc.value).lower()


# Pages of a tunnel whose endpoint is gone, or whose runtime does not answer in time.
NGROK_3200 = ("<!DOCTYPE html><html><body>The endpoint abc.ngrok-free.app is offline."
              "<p>ERR_NGROK_3200</p></body></html>")
CLOUDFLARE_524 = "<html><title>524: A timeout occurred</title>Error code 524</html>"
CLOUDFLARE_1033 = "<html><title>Cloudflare Tunnel error</title>Error 1033</html>"


@pytest.mark.parametrize(("status", "page", "error", "code", "says"), [
    (404, NGROK_3200, TunnelDown, "tunnel_down", "ERR_NGROK_3200"),
    (530, CLOUDFLARE_1033, TunnelDown, "tunnel_down", "Cloudflare error 1033"),
    (524, CLOUDFLARE_524, RuntimeNotAnswering, "runtime_not_answering", "timed out"),
])
async def test_other_tunnel_error_pages_are_clear_too(
        client: ClientFactory, status: int, page: str, error: type[RuntimeUnreachable],
        code: str, says: str) -> None:
    reply = httpx2.Response(status, headers={"content-type": "text/html"}, text=page)
    async with client(lambda r: reply) as c:
        with pytest.raises(error, match=f"tunnel .*HTTP {status}") as exc:
            await c.probe()
    assert exc.value.code == code and isinstance(exc.value, RuntimeUnreachable)
    message = str(exc.value)
    assert says in message and "<html" not in message.lower()
    assert "serving cell" in message and "connect_runtime" in message  # what to do
    assert exc.value.details["status"] == status


async def test_an_offline_tunnel_is_not_retried_a_busy_one_is(client: ClientFactory) -> None:
    """An offline endpoint's URL never comes back; a 524 may pass once the runtime answers."""
    asked: list[str] = []

    def offline(request: httpx2.Request) -> httpx2.Response:
        asked.append("offline")
        return httpx2.Response(404, headers={"content-type": "text/html"}, text=NGROK_3200)

    async with client(offline, retry=FAST) as c:
        with pytest.raises(TunnelDown):
            await c.health()
    assert asked == ["offline"]

    replies = iter([httpx2.Response(524, text=CLOUDFLARE_524),
                    httpx2.Response(200, json={"status": "ok", "version": "x", "epoch": "e"})])
    async with client(lambda r: next(replies), retry=FAST) as c:
        assert (await c.health()).status == "ok"


async def test_a_404_page_of_no_tunnel_stays_a_plain_not_found(
        client: ClientFactory) -> None:
    reply = httpx2.Response(404, headers={"content-type": "text/html"}, text="<html>nope</html>")
    async with client(lambda r: reply) as c:
        with pytest.raises(NotFound, match="HTTP 404 without an error body"):
            await c.probe()


async def test_an_html_page_with_status_200_is_a_clear_error(client: ClientFactory) -> None:
    page = httpx2.Response(200, headers={"content-type": "text/html"},
                           text="<html>You are about to visit abc.ngrok-free.app</html>")
    async with client(lambda r: page, retry=FAST) as c:
        with pytest.raises(NotARuntime, match="text/html instead of the runtime's JSON") as exc:
            await c.health()
    assert exc.value.code == "not_a_runtime" and isinstance(exc.value, SmartColabError)
    assert "connect_runtime" in str(exc.value) and "<html" not in str(exc.value).lower()


async def test_a_compressed_answer_is_refused_unread(client: ClientFactory) -> None:
    """A small gzip body that would inflate to gigabytes never reaches json()."""
    import gzip

    bomb = gzip.compress(b'{"sessions": [' + b" " * (8 * 2**20) + b"]}")
    asked: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        asked.append(request.headers.get("accept-encoding", ""))
        return httpx2.Response(200, content=bomb, headers={"Content-Encoding": "gzip"})

    async with client(handler) as c:
        with pytest.raises(RuntimeMisbehaved, match="Content-Encoding 'gzip'"):
            await c.sessions()
    assert asked == ["identity"]


async def test_an_answer_over_the_cap_is_refused(client: ClientFactory) -> None:
    body = b'{"sessions": []}' + b" " * 4096

    async with client(lambda request: httpx2.Response(200, content=body)) as c:
        c.max_response_bytes = 1024
        with pytest.raises(RuntimeMisbehaved, match="over the 1,024-byte cap"):
            await c.sessions()
        c.max_response_bytes = 64 * 1024
        assert (await c.sessions()).sessions == []


@pytest.mark.parametrize("base", [URL, URL + "/sub/path/", "http://127.0.0.1:8765"])
async def test_remembered_urls_are_the_ones_httpx2_builds(base: str) -> None:
    """A remembered URL is the one httpx2 itself builds from the base, the path and the
    query (ours drops None values); a second request to the same path reuses it."""
    rc = RuntimeClient(base, SECRET, transport=httpx2.MockTransport(lambda r: httpx2.Response(200)))
    plain = httpx2.AsyncClient(base_url=base)
    cases: list[tuple[str, dict[str, object]]] = [
        ("/jobs", {"wait": 5.0}), ("/jobs", {}), ("/jobs/j-1", {"wait": 0.5, "since": 12}),
        ("/files", {"path": "a b/ü?&#.txt", "hash": True}), ("/files", {"path": ["x", "y"]}),
        ("/jobs", {"wait": 5.0, "since": None}), ("/x%20y", {"q": "1"})]
    for path, params in cases:
        kept = {k: v for k, v in params.items() if v is not None}
        want = plain.build_request("POST", path, params=kept).url  # type: ignore[arg-type]
        for _ in range(2):
            got = rc.build_request("POST", path, params=params, content=b"{}")
            assert got.url == want and got.url.raw_path == want.raw_path, (path, params)
    # Remembered: five distinct keys (a list value is not a key: built afresh each time).
    assert len(rc._urls) == 5 and ("/jobs", (("wait", 5.0),)) in rc._urls
    await plain.aclose()
    await rc.aclose()
