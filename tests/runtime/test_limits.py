"""Abuse limits against a real runtime server: sizes, allowlist, rate limit, lockout.

The runtime is told to trust forwarding headers from loopback (``--trusted-proxy``;
by default only its own tunnel agent is believed), so each test speaks as its own
client address through ``X-Forwarded-For`` and the tests do not share rate-limit
buckets or lockouts.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx2
import pytest

from smartcolab.shared.protocol import (
    H_CONTENT_SHA256,
    H_NONCE,
    H_SIGNATURE,
    H_TIMESTAMP,
    canonical_request,
    sign,
)
from support.runtime_proc import PROCESS_TIMEOUT_S, RuntimeProc, start_runtime, subprocess_env

# Plain HTTP on loopback needs no CA bundle, and httpx2's one-shot calls load it each
# time (about 60 ms of CPU per call).
http_get = partial(httpx2.get, verify=False)
http_post = partial(httpx2.post, verify=False)
http_put = partial(httpx2.put, verify=False)


LOCKOUT_S = 2
LIMIT_ARGS = ("--max-body-kb", "4", "--max-header-kb", "4", "--max-query-kb", "1",
              "--rate-limit", "5", "--rate-burst", "10", "--lockout-failures", "3",
              "--lockout-seconds", str(LOCKOUT_S),
              "--allow-cidr", "127.0.0.0/8", "--allow-cidr", "10.1.0.0/16",
              "--trusted-proxy", "127.0.0.1/32")


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProc]:
    proc = start_runtime(Path(tmp_path_factory.mktemp("limited")), *LIMIT_ARGS)
    try:
        yield proc
    finally:
        proc.stop()


def as_client(addr: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    return {"X-Forwarded-For": addr, **(headers or {})}


def assert_error(r: httpx2.Response, status: int, code: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code
    return dict(body)


def test_declared_body_over_limit_is_413_before_anything_runs(limited: RuntimeProc) -> None:
    r = http_post(f"{limited.url}/shutdown", content=b"x" * 5000,
                    headers=as_client("10.1.0.1", limited.headers))
    err = assert_error(r, 413, "payload_too_large")
    assert "4096" in str(err["message"])
    assert http_get(f"{limited.url}/health").status_code == 200  # still serving


def test_streamed_body_over_limit_is_413(limited: RuntimeProc) -> None:
    """No Content-Length: the limit is enforced on the bytes actually received."""
    body = b"y" * 6000
    digest = hashlib.sha256(body).hexdigest()
    stamp, nonce = f"{time.time():.3f}", "chunked-1"
    headers = as_client("10.1.0.2", {
        H_TIMESTAMP: stamp, H_NONCE: nonce, H_CONTENT_SHA256: digest,
        H_SIGNATURE: sign(limited.secret,
                          canonical_request("POST", "/shutdown", "", digest, stamp, nonce))})

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]

    r = http_post(f"{limited.url}/shutdown", content=chunks(), headers=headers)
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert_error(r, 413, "payload_too_large")
    assert http_get(f"{limited.url}/health").status_code == 200


def test_streamed_upload_route_is_exempt_from_the_body_limit(limited: RuntimeProc) -> None:
    r = http_put(f"{limited.url}/files/content", content=b"z" * 6000,
                   headers=as_client("10.1.0.3"))
    assert r.status_code != 413


def test_large_headers_are_431(limited: RuntimeProc) -> None:
    r = http_get(f"{limited.url}/health", headers=as_client("10.1.0.4", {"X-Big": "h" * 5000}))
    assert_error(r, 431, "headers_too_large")


def test_long_query_is_413(limited: RuntimeProc) -> None:
    r = http_get(f"{limited.url}/health", params={"q": "a" * 1100},
                   headers=as_client("10.1.0.5"))
    assert_error(r, 413, "payload_too_large")


def test_allowlist(limited: RuntimeProc) -> None:
    outside = http_get(f"{limited.url}/health", headers=as_client("192.0.2.7"))
    err = assert_error(outside, 403, "forbidden")
    assert "192.0.2.7" in str(err["message"])
    assert http_get(f"{limited.url}/health", headers=as_client("10.1.9.9")).status_code == 200
    # A client cannot slip in by writing an allowed address further left:
    # the tunnel appends the real one, which is what counts.
    spoof = http_get(f"{limited.url}/health", headers=as_client("10.1.0.1, 192.0.2.7"))
    assert spoof.status_code == 403


def test_rate_limit_is_per_client_with_retry_after(limited: RuntimeProc) -> None:
    with httpx2.Client(base_url=limited.url) as http:
        # Until the first 429, not a fixed count: on a loaded machine requests can come
        # slowly enough for the bucket (5 a second) to refill between them.
        answers = []
        while len(answers) < 200 and 429 not in (r.status_code for r in answers[-1:]):
            answers.append(http.get("/health", headers=as_client("10.1.1.1")))
        assert [r.status_code for r in answers[:10]] == [200] * 10  # the burst
        limited_r = answers[-1]
        err = assert_error(limited_r, 429, "rate_limited")
        assert int(limited_r.headers["Retry-After"]) >= 1
        assert err["details"] == {"reason": "rate_limit", "retry_after": 1}
        assert http.get("/health", headers=as_client("10.1.1.2")).status_code == 200


def test_lockout_after_failed_auth(limited: RuntimeProc) -> None:
    me, other = "10.1.2.1", "10.1.2.2"
    wrong = {"Authorization": "Bearer not-the-secret"}
    for _ in range(3):
        r = http_get(f"{limited.url}/probe", headers=as_client(me, wrong))
        assert r.status_code == 401
    # Locked out: a wrong secret is refused with a delay to wait ...
    r = http_get(f"{limited.url}/probe", headers=as_client(me, wrong))
    err = assert_error(r, 429, "rate_limited")
    assert err["details"]["reason"] == "auth_lockout"  # type: ignore[index]
    assert 1 <= int(r.headers["Retry-After"]) <= LOCKOUT_S
    assert limited.secret not in r.text
    # ... while the right secret, from the same address, is never locked out.
    assert http_get(f"{limited.url}/probe",
                      headers=as_client(me, limited.headers)).status_code == 200
    ok = http_get(f"{limited.url}/probe", headers=as_client(other, limited.headers))
    assert ok.status_code == 200
    time.sleep(LOCKOUT_S + 0.2)
    again = http_get(f"{limited.url}/probe", headers=as_client(me, wrong))
    assert again.status_code == 401  # the lockout ended
    assert any(e["event"] == "lockout" and e["client"] == me for e in limited.audit())


def test_success_resets_the_failure_count(limited: RuntimeProc) -> None:
    me = "10.1.3.1"
    wrong = {"Authorization": "Bearer nope"}
    for _ in range(5):
        assert http_get(f"{limited.url}/probe",
                          headers=as_client(me, wrong)).status_code == 401
        assert http_get(f"{limited.url}/probe",
                          headers=as_client(me, limited.headers)).status_code == 200


def test_forwarding_headers_ignored_from_untrusted_peer(tmp_path: Path) -> None:
    """With loopback not trusted, X-Forwarded-For cannot choose the client address."""
    proc = start_runtime(tmp_path / "r", "--trusted-proxy", "198.51.100.1/32",
                         "--allow-cidr", "127.0.0.0/8")
    try:
        # Believed, this header would put the client outside the allowlist.
        r = http_get(f"{proc.url}/health", headers=as_client("192.0.2.7"))
        assert r.status_code == 200, r.text
    finally:
        proc.stop()


def test_bad_cidr_is_refused_at_start(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "smartcolab", "serve", "--port", "0", "--root", str(tmp_path),
         "--allow-cidr", "10.0.0.0/33"],
        capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S, env=subprocess_env())
    assert out.returncode == 2
    assert "10.0.0.0/33" in out.stderr and "CIDR" in out.stderr
