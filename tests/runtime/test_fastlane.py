"""``POST /jobs`` on the short way (``api/fastlane.py``): the same answers as the FastAPI
route, which still takes every request the lane declines; authentication still asked."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from smartcolab.runtime.api.fastlane import SubmitLane
from smartcolab.shared.errors import Unauthorized
from support.inproc import BASE_HOST, InProcRuntime, inproc_runtime

pytestmark = pytest.mark.anyio
DECLINED = "sc_fastlane_declined"


@pytest.fixture
async def kernel_rt(tmp_path: Path) -> AsyncIterator[InProcRuntime]:
    async with inproc_runtime(tmp_path, start_main_session=True) as rt:
        yield rt


async def _call(rt: InProcRuntime, body: bytes, *, query: bytes = b"wait=30",
                content_type: bytes = b"application/json",
                declined: bool = False) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """One bearer request straight into the app; (status, answer, scope afterwards)."""
    headers = [(b"host", BASE_HOST.encode()), (b"content-type", content_type),
               (b"authorization", f"Bearer {rt.secret}".encode())]
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/jobs", "raw_path": b"/jobs", "query_string": query,
        "root_path": "", "headers": headers, "client": ("198.18.200.1", 40000),
        "server": ("127.0.0.1", 8000), "state": {}}
    if declined:
        scope[DECLINED] = True  # as the lane marks a request it hands back
    sent = False
    out: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        else:
            out["body"] += message.get("body", b"")

    rt.clock.advance(1.0)
    await rt.app(scope, receive, send)
    return out["status"], json.loads(out["body"]), scope


def _job(job_id: str, code: str = "6*7", **fields: Any) -> bytes:
    return json.dumps({"job_id": job_id, "code": code, **fields}).encode()


async def test_lane_and_route_give_the_same_answers(kernel_rt: InProcRuntime) -> None:
    status, view, scope = await _call(kernel_rt, _job("lane-1"))
    assert DECLINED not in scope  # an ordinary submission took the short way
    assert status == 201 and view["status"] == "succeeded" and view["output"] == "42\n"
    status, routed, _ = await _call(kernel_rt, _job("route-1"), declined=True)
    assert status == 201 and routed["output"] == "42\n"
    assert set(view) == set(routed) and set(view["result"]) == set(routed["result"])
    # The same id again: returned, not rerun; another code under it: the same conflict.
    assert (await _call(kernel_rt, _job("lane-1")))[:2] == (200, view)
    for declined in (False, True):
        status, error, _ = await _call(kernel_rt, _job("lane-1", "1"), declined=declined)
        assert status == 409 and error["error"]["code"] == "job_id_conflict"
        status, error, _ = await _call(kernel_rt, _job("lane-2", session="nosuch"),
                                       declined=declined)
        assert status == 404 and error["error"]["code"] == "session_not_found"
    status, queued, scope = await _call(kernel_rt, _job("lane-3", "1"), query=b"")
    assert DECLINED not in scope and status == 201 and queued["job_id"] == "lane-3"


@pytest.mark.parametrize(("body", "query", "content_type", "where"), [
    (b"{nope", b"wait=1", b"application/json", "JSON decode error"),
    (b"", b"wait=1", b"application/json", "body"),
    (_job("x", timeout=-1), b"wait=1", b"application/json", "timeout"),
    (_job("x", extra=1), b"wait=1", b"application/json", "extra"),
    (_job("ok-a"), b"wait=-1", b"application/json", "wait"),
    (_job("ok-b"), b"wait=soon", b"application/json", "wait"),
])
async def test_what_the_lane_declines_the_route_refuses(
        kernel_rt: InProcRuntime, body: bytes, query: bytes, content_type: bytes,
        where: str) -> None:
    status, error, scope = await _call(kernel_rt, body, query=query, content_type=content_type)
    assert scope.get(DECLINED) is True
    assert status == 422 and error["error"]["code"] == "invalid_input"
    assert where in error["error"]["message"]


async def test_odd_but_valid_requests_are_served_by_the_route(kernel_rt: InProcRuntime) -> None:
    status, view, scope = await _call(kernel_rt, _job("odd-1"), query=b"wait=30&x=1")
    assert scope.get(DECLINED) is True and status == 201 and view["output"] == "42\n"
    status, view, scope = await _call(kernel_rt, _job("odd-2"), query=b"wait=30",
                                      content_type=b"application/json; charset=utf-8")
    assert DECLINED not in scope and status == 201 and view["output"] == "42\n"


async def test_the_lane_still_asks_for_the_gate(kernel_rt: InProcRuntime) -> None:
    """Defence in depth: a request that did not pass AuthGate is refused by the lane too."""
    scope = {"type": "http", "method": "POST", "path": "/jobs", "query_string": b"",
             "headers": [(b"content-type", b"application/json")], "state": {},
             "app": kernel_rt.app}
    messages = [{"type": "http.request", "body": _job("gate-1"), "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError(f"answered without authentication: {message}")

    with pytest.raises(Unauthorized):
        await SubmitLane().handle(scope, receive, send)
    assert kernel_rt.state.manager.find("gate-1", missing_ok=True) == (None, None)
