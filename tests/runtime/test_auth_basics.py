"""Auth and error shape against a real runtime server on loopback."""

from __future__ import annotations

import time
from functools import partial

import httpx2
import pytest

from smartcolab.client.http.client import RuntimeClient
from smartcolab.shared.errors import Unauthorized
from support.runtime_proc import RuntimeProc
from support.signing import signed_headers

# Plain HTTP on loopback needs no CA bundle, and httpx2's one-shot calls load it each
# time (about 60 ms of CPU per call).
http_get = partial(httpx2.get, verify=False)


def test_health_is_public_and_minimal(runtime: RuntimeProc) -> None:
    r = http_get(f"{runtime.url}/health")
    assert r.status_code == 200
    assert set(r.json()) == {"status", "version", "epoch"}
    assert r.headers["X-SC-Epoch"] == r.json()["epoch"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "Basic abc"}])
def test_missing_or_wrong_secret_is_401(runtime: RuntimeProc, headers: dict[str, str]) -> None:
    r = http_get(f"{runtime.url}/probe", headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert runtime.secret not in r.text


def test_bearer_secret_is_accepted(runtime: RuntimeProc) -> None:
    r = http_get(f"{runtime.url}/probe", headers=runtime.headers)
    assert r.status_code == 200
    assert r.json()["cpu_count"] >= 1


def test_signed_request_expired_and_replayed(runtime: RuntimeProc) -> None:
    ok = signed_headers(runtime.secret, "GET", "/probe", nonce="once-only")
    assert http_get(f"{runtime.url}/probe", headers=ok).status_code == 200
    replay = http_get(f"{runtime.url}/probe", headers=ok)
    assert replay.status_code == 401 and "replay" in replay.json()["error"]["message"]
    old = signed_headers(runtime.secret, "GET", "/probe", ts=time.time() - 600, nonce="n-old")
    expired = http_get(f"{runtime.url}/probe", headers=old)
    assert expired.status_code == 401 and "clock" in expired.json()["error"]["message"]
    forged = signed_headers("not-the-secret", "GET", "/probe", nonce="n-forged")
    assert http_get(f"{runtime.url}/probe", headers=forged).status_code == 401


def test_signature_covers_the_query(runtime: RuntimeProc) -> None:
    h = signed_headers(runtime.secret, "GET", "/probe", query="a=1", nonce="n-q")
    assert http_get(f"{runtime.url}/probe?a=2", headers=h).status_code == 401


async def test_client_signs_awkward_queries(runtime: RuntimeProc) -> None:
    async with RuntimeClient(runtime.url, runtime.secret) as client:
        r = await client.request("GET", "/probe", params={"x": "a&b #?é/%2e%2e"})
        assert r.status_code == 200
        assert client.last_epoch == r.headers["X-SC-Epoch"]
    async with RuntimeClient(runtime.url, "wrong-secret") as client:
        with pytest.raises(Unauthorized):
            await client.probe()


def test_unknown_endpoint_is_json_404(runtime: RuntimeProc) -> None:
    r = http_get(f"{runtime.url}/nope", headers=runtime.headers)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


pytestmark = pytest.mark.anyio
