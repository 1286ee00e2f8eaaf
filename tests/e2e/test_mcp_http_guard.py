"""MCP over HTTP (issue 16 item 16): Host/Origin on every bind, tokens, .well-known, resumes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from smartcolab.mcp.server import serve_http
from smartcolab.mcp.transports.http import (
    MIN_TOKEN_CHARS,
    HostPolicy,
    HttpGuard,
    MemoryEventStore,
    resolve_token,
)
from smartcolab.shared.errors import InvalidInput
from support.bridge_helpers import make_config
from support.runtime_proc import PROCESS_TIMEOUT_S, subprocess_env

pytestmark = pytest.mark.anyio
TOKEN = "a-test-token-of-enough-length"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def ok_app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"inner"})


def guarded(bind: str, **extra: Any) -> httpx2.AsyncClient:
    app = HttpGuard(ok_app, TOKEN, HostPolicy.for_bind(bind, **extra))
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app),
                              base_url="http://127.0.0.1:8766")


def test_token_rules() -> None:
    for unset in (None, "", "   "):
        token, generated = resolve_token(unset)
        assert generated and len(token) >= MIN_TOKEN_CHARS
    assert resolve_token(TOKEN) == (TOKEN, False)
    with pytest.raises(InvalidInput, match=f"at least {MIN_TOKEN_CHARS}"):
        resolve_token("x")


@pytest.mark.parametrize("bind", ["127.0.0.1", "0.0.0.0", "::"])
async def test_host_and_origin_are_checked_on_every_bind(bind: str) -> None:
    async with guarded(bind) as http:
        assert (await http.get("/mcp", headers=AUTH)).status_code == 200
        for host in ("evil.example", "evil.example:8766", "attacker.test:80", "127.0.0.1:x"):
            r = await http.get("/mcp", headers={**AUTH, "Host": host})
            assert r.status_code == 421, host
        for origin in ("http://evil.example", "https://127.0.0.1.evil.example",
                       "null", "http://localhost.evil:80"):
            r = await http.get("/mcp", headers={**AUTH, "Origin": origin})
            assert r.status_code == 403, origin
        for origin in ("http://localhost:6274", "http://127.0.0.1", "http://[::1]:9"):
            r = await http.get("/mcp", headers={**AUTH, "Origin": origin})
            assert r.status_code == 200, origin


async def test_allowed_hosts_and_origins_are_configurable() -> None:
    async with guarded("0.0.0.0", extra_hosts=["mcp.example.org"],
                       extra_origins=["https://app.example.org"]) as http:
        r = await http.get("/mcp", headers={**AUTH, "Host": "mcp.example.org:8766",
                                            "Origin": "https://app.example.org"})
        assert r.status_code == 200


async def test_well_known_is_a_plain_404_and_401_has_no_oauth_pointer() -> None:
    async with guarded("127.0.0.1") as http:
        for path in ("/.well-known/oauth-protected-resource",
                     "/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
            assert (await http.get(path)).status_code == 404
        r = await http.post("/mcp", json={})
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == 'Bearer realm="smartcolab-mcp"'
        assert (await http.post("/mcp", json={}, headers={"Authorization": "Bearer x"})
                ).status_code == 401


async def test_event_store_replays_one_stream_after_an_id() -> None:
    store = MemoryEventStore(max_events=5)
    from mcp.types import JSONRPCNotification

    msgs = [JSONRPCNotification(jsonrpc="2.0", method=f"n{i}") for i in range(4)]
    first = await store.store_event("s1", None)
    ids = [await store.store_event("s1" if i % 2 == 0 else "s2", m) for i, m in enumerate(msgs)]
    sent: list[str] = []

    async def collect(event: Any) -> None:
        sent.append(event.message.method)

    assert await store.replay_events_after(first, collect) == "s1"
    assert sent == ["n0", "n2"]
    assert await store.replay_events_after("unknown", collect) is None
    for m in msgs:  # older events are forgotten past the bound
        await store.store_event("s3", m)
    assert await store.replay_events_after(ids[0], collect) is None
    small = MemoryEventStore(max_bytes=100)  # bounded by size too: only the newest fit
    kept = [await small.store_event("s", m) for m in msgs]
    assert await small.replay_events_after(kept[0], collect) is None
    assert await small.replay_events_after(kept[-2], collect) == "s"


@asynccontextmanager
async def http_bridge(tmp_path: Path) -> AsyncIterator[str]:
    ports: list[int] = []
    bound = anyio.Event()

    def ready(port: int) -> None:
        ports.append(port)
        bound.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve_http(make_config(tmp_path, embedded=True), host="127.0.0.1", port=0,
                                         token=TOKEN, ready=ready))
        await bound.wait()
        yield f"http://127.0.0.1:{ports[0]}/mcp"
        tg.cancel_scope.cancel()


def sse_ids(text: str) -> list[str]:
    return [line[3:].strip() for line in text.splitlines() if line.startswith("id:")]


async def test_get_with_last_event_id_resumes_instead_of_500(tmp_path: Path) -> None:
    headers = {**AUTH, "Accept": "application/json, text/event-stream"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"}}}
    with anyio.fail_after(60):
        async with http_bridge(tmp_path) as url, httpx2.AsyncClient(timeout=30) as http:
            evil = await http.post(url, json=init, headers={**headers, "Host": "attacker.test"})
            assert evil.status_code == 421
            # A loopback page (the Inspector's UI) passes our guard and the SDK's own check.
            r = await http.post(url, json=init,
                                headers={**headers, "Origin": "http://localhost:6274"})
            assert r.status_code == 200, r.text
            session = r.headers["mcp-session-id"]
            ids = sse_ids(r.text)
            assert ids, r.text  # the priming event carries an id to resume from
            more = {**headers, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
            await http.post(url, headers=more,
                            json={"jsonrpc": "2.0", "method": "notifications/initialized"})
            async with http.stream("GET", url, headers={**more, "Last-Event-ID": ids[0]}) as got:
                assert got.status_code == 200
                assert got.headers["content-type"].startswith("text/event-stream")


def test_cli_short_token_refused_and_empty_token_generated(tmp_path: Path) -> None:
    env = subprocess_env({"CHECKPOINT_DIR": str(tmp_path / "state"), "HOME": str(tmp_path),
                          "SMARTCOLAB_MCP_TOKEN": "short"})
    cmd = [sys.executable, "-m", "smartcolab", "mcp", "--transport", "http", "--port", "0",
           "--log-level", "WARNING"]
    short = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S)
    assert short.returncode == 2 and f"at least {MIN_TOKEN_CHARS}" in short.stderr
    env["SMARTCOLAB_MCP_TOKEN"] = ""
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        token_file = tmp_path / "state" / "mcp-token"
        assert str(token_file) in line and "generated" in line, line
        token = token_file.read_text().strip()
        assert len(token) >= MIN_TOKEN_CHARS and token not in line
        assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    finally:
        proc.terminate()
        proc.wait(20)
    assert json.dumps(token) not in " ".join(proc.args if isinstance(proc.args, list) else [])
