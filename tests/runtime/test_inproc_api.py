"""Routes, auth and error shapes of the runtime app, in process (no socket, no kernel).

The session-wide ``inproc`` runtime is shared: tests here read it and write only
under names of their own; anything that changes the runtime itself (secret rotation,
shutdown) gets a runtime of its own.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from smartcolab.client.http.client import RuntimeClient
from smartcolab.shared.errors import (
    InvalidInput,
    JobNotFound,
    PathOutsideRoots,
    SessionNotFound,
    Unauthorized,
)
from smartcolab.shared.protocol import H_CONTENT_SHA256, H_EPOCH, JobSubmit
from support.inproc import BASE_URL, InProcRuntime, inproc_runtime
from support.signing import signed_headers

pytestmark = pytest.mark.anyio


async def test_health_is_public_minimal_and_carries_the_epoch(inproc: InProcRuntime) -> None:
    async with inproc.http() as http:
        r = await http.get("/health")
    assert r.status_code == 200
    assert set(r.json()) == {"status", "version", "epoch"}
    assert r.json()["status"] == "ok"
    assert r.headers[H_EPOCH] == r.json()["epoch"] == inproc.state.epoch()


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "Basic abc"},
                                     {"Authorization": "bearer"}])
async def test_every_other_route_needs_the_secret(inproc: InProcRuntime,
                                                  headers: dict[str, str]) -> None:
    async with inproc.http(headers=headers) as http:
        for method, path in [("GET", "/probe"), ("GET", "/sessions"), ("GET", "/jobs"),
                             ("GET", "/files"), ("GET", "/openapi.json"), ("POST", "/shutdown"),
                             ("POST", "/auth/rotate"), ("PUT", "/files/content?path=x")]:
            r = await http.request(method, path)
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["error"]["code"] == "unauthorized"
            assert inproc.secret not in r.text
    assert inproc.state.shutdown_requested.is_set() is False


async def test_bearer_secret_is_accepted(inproc: InProcRuntime) -> None:
    async with inproc.http(headers=inproc.bearer) as http:
        probe = await http.get("/probe")
        schema = await http.get("/openapi.json")
    assert probe.status_code == 200 and probe.json()["cpu_count"] >= 1
    assert schema.status_code == 200 and "/jobs" in schema.json()["paths"]


async def test_every_operation_has_its_own_id(inproc: InProcRuntime) -> None:
    # A route for two methods once gave GET and HEAD of /files/content one id (FastAPI warns,
    # and generated clients collide).
    async with inproc.http(headers=inproc.bearer) as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
    ids = [op["operationId"] for methods in paths.values() for op in methods.values()]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert {"get", "head"} <= set(paths["/files/content"])


async def test_our_client_signs_every_call(inproc: InProcRuntime) -> None:
    async with inproc.client() as client:
        assert (await client.sessions()).sessions == []
        r = await client.request("GET", "/files", params={"path": "", "pattern": "a&b #?é"})
        assert r.status_code == 200
        assert client.last_epoch == inproc.state.epoch()
    async with inproc.client("not-the-secret") as client:
        with pytest.raises(Unauthorized, match="signature does not match"):
            await client.probe()


async def test_a_signed_request_is_accepted_once_and_within_the_window(
        inproc: InProcRuntime) -> None:
    async with inproc.http() as http:
        ok = signed_headers(inproc.secret, "GET", "/probe", nonce="inproc-once")
        assert (await http.get("/probe", headers=ok)).status_code == 200
        replay = await http.get("/probe", headers=ok)
        assert replay.status_code == 401 and "replay" in replay.json()["error"]["message"]
        old = signed_headers(inproc.secret, "GET", "/probe", ts=time.time() - 600,
                             nonce="inproc-old")
        expired = await http.get("/probe", headers=old)
        assert expired.status_code == 401 and "clock" in expired.json()["error"]["message"]


async def test_the_signature_covers_path_query_and_body(inproc: InProcRuntime) -> None:
    body = b'{"name": "x"}'
    async with inproc.http() as http:
        h = signed_headers(inproc.secret, "GET", "/probe", query="a=1", nonce="inproc-q")
        assert (await http.get("/probe?a=2", headers=h)).status_code == 401
        h = signed_headers(inproc.secret, "GET", "/jobs", nonce="inproc-p")
        assert (await http.get("/sessions", headers=h)).status_code == 401
        h = signed_headers(inproc.secret, "POST", "/sessions", body=body, nonce="inproc-b")
        r = await http.post("/sessions", headers=h, content=b'{"name": "y"}')
        assert r.status_code == 401 and H_CONTENT_SHA256 in r.json()["error"]["message"]
        h = {**signed_headers(inproc.secret, "GET", "/probe", nonce="inproc-hex"),
             H_CONTENT_SHA256: hashlib.sha256(b"").hexdigest().upper()}
        assert (await http.get("/probe", headers=h)).status_code == 401
    assert [s.name for s in (await _sessions(inproc))] == []


async def _sessions(inproc: InProcRuntime) -> list[object]:
    async with inproc.client() as client:
        return list((await client.sessions()).sessions)


async def test_error_bodies_come_back_as_the_matching_exceptions(inproc: InProcRuntime) -> None:
    async with inproc.client() as client:
        with pytest.raises(JobNotFound) as job:
            await client.get_job("no-such-job")
        assert job.value.details == {"job_id": "no-such-job"}
        with pytest.raises(SessionNotFound, match="no session named 'main'"):
            await client.submit(JobSubmit(job_id="inproc-1", code="1"))
        with pytest.raises(InvalidInput):
            await client.request("POST", "/jobs", json={"job_id": "bad id!", "code": 1})
        with pytest.raises(PathOutsideRoots):
            await client.request("GET", "/files/stat", params={"path": "../../etc/passwd"})


async def test_unknown_route_is_a_json_404(inproc: InProcRuntime) -> None:
    async with inproc.http(headers=inproc.bearer) as http:
        r = await http.get("/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_upload_stat_download_and_delete_a_file(inproc: InProcRuntime) -> None:
    data = b"in-process bytes\n" * 100
    async with inproc.http(headers=inproc.bearer) as http:
        up = await http.put("/files/content", params={"path": "inproc/up.bin"}, content=data)
        assert up.status_code == 200, up.text
        assert up.json()["sha256"] == hashlib.sha256(data).hexdigest()
        again = await http.put("/files/content", params={"path": "inproc/up.bin"}, content=b"x")
        assert again.status_code == 409 and again.json()["error"]["code"] == "file_exists"
        stat = (await http.get("/files/stat", params={"path": "inproc/up.bin"})).json()
        assert stat["size"] == len(data) and stat["type"] == "file"
        part = await http.get("/files/content", params={"path": "inproc/up.bin"},
                              headers={"Range": "bytes=17-33"})
        assert part.status_code == 206 and part.content == data[17:34]
        gone = await http.delete("/files", params={"path": "inproc/up.bin", "confirm": "true"})
        assert gone.status_code == 200
        missing = await http.get("/files/stat", params={"path": "inproc/up.bin"})
        assert missing.status_code == 404
    assert not (inproc.config.roots[0] / "inproc" / "up.bin").exists()


async def test_rotating_the_secret_refuses_the_old_one(tmp_path: Path) -> None:
    async with inproc_runtime(tmp_path / "root") as rt:
        old = rt.secret
        async with rt.http(headers=rt.bearer) as http:
            r = await http.post("/auth/rotate")
        assert r.status_code == 200, r.text
        new = r.json()["secret"]
        assert new != old
        async with rt.client(old) as client:
            with pytest.raises(Unauthorized):
                await client.probe()
        async with RuntimeClient(BASE_URL, new, transport=rt.transport()) as client:
            assert (await client.probe()).cpu_count >= 1


async def test_shutdown_is_reported_by_health(tmp_path: Path) -> None:
    async with inproc_runtime(tmp_path / "root") as rt:
        async with rt.client() as client:
            await client.shutdown()
            assert (await client.health()).status == "shutting_down"
        assert rt.state.shutdown_requested.is_set()
