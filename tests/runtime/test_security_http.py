"""Issue 16, runtime side, over real HTTP: Host/Origin, lockout, auth before body, low items.

Each test makes a bounded number of attempts and says how many; SECURITY.md sums them.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from smartcolab.runtime.server import ServerHandle, serve_in_thread
from smartcolab.shared.protocol import (
    H_CONTENT_SHA256,
    H_NONCE,
    H_SIGNATURE,
    H_TIMESTAMP,
    canonical_request,
    sign,
)
from support.runtime_proc import PROCESS_TIMEOUT_S, subprocess_env

SECRET = "security-test-secret-0123456789"


def start(root: Path, **options: object) -> ServerHandle:
    return serve_in_thread(root=root, port=0, secret=SECRET, banner=False,
                           rate_limit_per_s=0, **options)


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    handle = start(tmp_path_factory.mktemp("sec-http"), lockout_failures=3,
                   allowed_hosts=["runtime.example", "*.corp.example"],
                   allowed_origins=["https://tools.example"])
    try:
        yield handle
    finally:
        handle.stop()


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {SECRET}"}


def raw(handle: ServerHandle, request: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes and read the answer until the server closes or goes quiet."""
    host, port = handle.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
                head, blank, body = data.partition(b"\r\n\r\n")
                stated = [line for line in head.lower().split(b"\r\n")
                          if line.startswith(b"content-length:")]
                if blank and stated and len(body) >= int(stated[0].split(b":")[1]):
                    break
        except TimeoutError:
            pass
    return data


# ------------------------------------------------------------------ Host and Origin (item 3, 14)
@pytest.mark.parametrize("host", ["evil.example", "attacker.test:8765", "runtime.example.evil",
                                  "corp.example.attacker.test"])
def test_foreign_host_is_refused_everywhere(rt: ServerHandle, host: str) -> None:
    """4 names x 4 paths = 16 attempts, 0 answered."""
    for path in ("/health", "/probe", "/jobs/", "/ui"):
        r = httpx2.get(f"{rt.url}{path}", headers={**auth(), "Host": host})
        assert r.status_code == 403, (path, r.text)
        assert r.json()["error"]["code"] == "host_not_allowed"
        assert "location" not in r.headers  # item 14: no redirect built from Host


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost:1234", "[::1]:80", "10.2.3.4",
                                  "runtime.example", "a.corp.example", "ui.localhost",
                                  "abc-8765-colab.googleusercontent.com"])
def test_known_hosts_are_served(rt: ServerHandle, host: str) -> None:
    assert httpx2.get(f"{rt.url}/probe", headers={**auth(), "Host": host}).status_code == 200


def test_trailing_slash_is_not_redirected(rt: ServerHandle) -> None:
    r = httpx2.get(f"{rt.url}/jobs/", headers=auth())
    assert r.status_code == 404 and "location" not in r.headers


@pytest.mark.parametrize("origin,ok", [
    ("https://evil.example", False), ("null", False), ("http://203.0.113.9", False),
    ("file://", False), ("http://localhost:3000", True), ("http://127.0.0.1:9", True),
    ("https://tools.example", True)])
def test_origin_checks(rt: ServerHandle, origin: str, ok: bool) -> None:
    r = httpx2.post(f"{rt.url}/sessions/main/interrupt", headers={**auth(), "Origin": origin})
    if ok:
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"


def test_same_origin_is_allowed(rt: ServerHandle) -> None:
    port = rt.config.port
    r = httpx2.get(f"{rt.url}/probe", headers={**auth(), "Host": f"runtime.example:{port}",
                                               "Origin": f"http://runtime.example:{port}"})
    assert r.status_code == 200


# ------------------------------------------------------------------ lockout (item 4)
def test_requests_without_credentials_never_lock_out(tmp_path: Path) -> None:
    """50 requests without credentials, then 2 wrong ones: still no lockout (limit 3)."""
    handle = start(tmp_path, lockout_failures=3)
    try:
        with httpx2.Client(base_url=handle.url, timeout=10) as http:
            for i in range(50):
                assert http.get(f"/probe?i={i}").status_code == 401
            for _ in range(2):
                assert http.get("/probe", headers={"Authorization": "Bearer x"}).status_code == 401
            assert http.get("/probe", headers={"Authorization": "Bearer x"}).status_code == 401
            # The third wrong credential started the lockout: wrong ones now get 429 ...
            r = http.get("/probe", headers={"Authorization": "Bearer x"})
            assert r.status_code == 429 and r.json()["error"]["details"]["reason"] == "auth_lockout"
            # ... and the right one, from the very same address, is never locked out.
            for _ in range(3):
                assert http.get("/probe", headers=auth()).status_code == 200
            assert http.get("/probe", headers={"Authorization": "Bearer x"}).status_code == 429
    finally:
        handle.stop()


# ------------------------------------------------------------------ auth before body (item 6)
def test_unauthenticated_body_is_never_read(rt: ServerHandle) -> None:
    """A declared 8 MiB body without credentials: the 401 comes before any byte of it."""
    started = time.monotonic()
    answer = raw(rt, b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 8000000\r\n\r\n{", timeout=15)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert time.monotonic() - started < 15
    assert b"WWW-Authenticate: Bearer" in answer or b"www-authenticate: Bearer" in answer


def signed(method: str, path: str, body: bytes, *, declared: bytes | None = None,
           nonce: str = "", query: str = "") -> dict[str, str]:
    digest = hashlib.sha256(body if declared is None else declared).hexdigest()
    stamp = f"{time.time():.3f}"
    nonce = nonce or f"n-{time.monotonic_ns()}"
    return {H_TIMESTAMP: stamp, H_NONCE: nonce, H_CONTENT_SHA256: digest,
            H_SIGNATURE: sign(SECRET, canonical_request(method, path, query, digest, stamp, nonce))}


def test_forged_signed_body_never_reaches_the_app(rt: ServerHandle) -> None:
    """A signed job whose body was swapped: 401, and the job does not exist."""
    good = json.dumps({"job_id": "sec-forged-1", "code": "print('good')"}).encode()
    bad = json.dumps({"job_id": "sec-forged-1", "code": "print('evil')"}).encode()
    r = httpx2.post(f"{rt.url}/jobs", content=bad,
                    headers={**signed("POST", "/jobs", bad, declared=good),
                             "Content-Type": "application/json"})
    assert r.status_code == 401 and "body does not match" in r.json()["error"]["message"]
    # A route that never reads its body cannot be fooled either (POST /shutdown).
    r = httpx2.post(f"{rt.url}/shutdown", content=b"x",
                    headers=signed("POST", "/shutdown", b"x", declared=b""))
    assert r.status_code == 401
    assert httpx2.get(f"{rt.url}/jobs/sec-forged-1", headers=auth()).status_code == 404
    assert httpx2.get(f"{rt.url}/health").json()["status"] == "ok"


def test_signed_request_still_works(rt: ServerHandle) -> None:
    body = json.dumps({"job_id": "sec-signed-1", "code": "print(6*7)"}).encode()
    r = httpx2.post(f"{rt.url}/jobs?wait=30", content=body,
                    headers={**signed("POST", "/jobs", body, query="wait=30"),
                             "Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    assert "42" in r.json()["output"]


# ------------------------------------------------------------------ low items (13, 18, 19)
def test_huge_range_header_is_416_not_500(rt: ServerHandle) -> None:
    (rt.config.roots[0] / "r.txt").write_text("hello")
    for header in ("bytes=" + "9" * 5000 + "-", "bytes=0-" + "1" * 4400, "bytes=" + "1" * 20 + "-"):
        r = httpx2.get(f"{rt.url}/files/content", params={"path": "r.txt"},
                       headers={**auth(), "Range": header})
        assert r.status_code == 416, r.text


def test_ui_cannot_be_framed_by_other_sites(rt: ServerHandle) -> None:
    csp = httpx2.get(f"{rt.url}/ui").headers["content-security-policy"]
    ancestors = csp.split("frame-ancestors", 1)[1].split(";")[0].split()
    assert "'self'" in ancestors and "*" not in ancestors
    assert not any("evil" in a for a in ancestors)


def test_405_names_the_allowed_methods(rt: ServerHandle) -> None:
    r = httpx2.put(f"{rt.url}/jobs", headers=auth())
    assert r.status_code == 405
    assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    r = httpx2.patch(f"{rt.url}/files", headers=auth(), params={"path": "x"})
    assert r.status_code == 405 and "DELETE" in r.headers["allow"] and "GET" in r.headers["allow"]


@pytest.mark.parametrize("body", [{"reset": 0}, {"reset": "true"}, {"reset": 1},
                                  {"names": ["not a name"]}, {"names": ["1x"]}])
def test_cleanup_is_strict(rt: ServerHandle, body: dict[str, object]) -> None:
    r = httpx2.post(f"{rt.url}/sessions/main/cleanup", json=body, headers=auth())
    assert r.status_code == 422, r.text


def test_submit_force_is_a_strict_bool(rt: ServerHandle) -> None:
    r = httpx2.post(f"{rt.url}/jobs", json={"job_id": "sec-force", "code": "1", "force": 1},
                    headers=auth())
    assert r.status_code == 422


def test_openapi_states_the_constraints(rt: ServerHandle) -> None:
    doc = httpx2.get(f"{rt.url}/openapi.json", headers=auth()).json()
    params = {(p, q["name"]): q["schema"] for p, ops in doc["paths"].items()
              for op in ops.values() for q in op.get("parameters", [])}
    assert params[("/files", "cursor")]["anyOf"][0]["pattern"]
    assert "\\x00" in params[("/files/stat", "path")]["pattern"]
    assert params[("/files/stat", "path")]["maxLength"] == 4096
    assert params[("/jobs/{job_id}/output", "offset")]["minimum"] == 0
    assert params[("/jobs/{job_id}", "job_id")]["pattern"]
    assert params[("/files", "confirm")]["enum"] == [True]
    schemas = doc["components"]["schemas"]
    assert schemas["CleanupRequest"]["properties"]["names"]["items"]["pattern"]
    assert "507" in doc["paths"]["/jobs"]["post"]["responses"]


def test_insecure_no_auth_is_gone(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "smartcolab", "serve", "--port", "0",
                          "--root", str(tmp_path), "--insecure-no-auth"],
                         capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S, env=subprocess_env())
    assert out.returncode == 2 and "removed" in out.stderr


def test_short_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 16"):
        serve_in_thread(root=tmp_path, port=0, secret="short", banner=False)
