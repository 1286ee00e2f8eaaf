"""Audit trail and secret handling against a real runtime server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx2
import pytest

from smartcolab.client.http.client import RuntimeClient
from smartcolab.runtime.security.audit import AuditLog, code_digest
from smartcolab.runtime.security.redact import REDACTED, Redactor
from smartcolab.shared.errors import Unauthorized
from support.runtime_proc import RuntimeProc, start_runtime

# Plain HTTP on loopback needs no CA bundle, and httpx2's one-shot calls load it each
# time (about 60 ms of CPU per call).
http_get = partial(httpx2.get, verify=False)
http_post = partial(httpx2.post, verify=False)


pytestmark = pytest.mark.anyio
SECRET = "audit-test-secret-4f9c2a7e51d8"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProc]:
    # The root's name contains the secret, so the probe (which reports its root)
    # shows whether redaction works.
    root = Path(tmp_path_factory.mktemp("audit")) / f"root-{SECRET}"
    proc = start_runtime(root, secret=SECRET, state_dir=root.parent / "state")
    try:
        yield proc
    finally:
        proc.stop()


async def test_authenticated_requests_and_failures_are_audited(server: RuntimeProc) -> None:
    async with RuntimeClient(server.url, server.secret) as client:
        await client.probe()
    assert http_get(f"{server.url}/probe", headers=server.headers).status_code == 200
    assert http_get(f"{server.url}/probe",
                      headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert http_get(f"{server.url}/health").status_code == 200
    lines = server.audit()
    requests = [e for e in lines if e["event"] == "request" and e["path"] == "/probe"]
    assert {e["auth"] for e in requests} >= {"hmac", "bearer"}
    for e in requests:
        assert e["client"] == "127.0.0.1" and e["status"] == 200 and e["method"] == "GET"
        assert isinstance(e["duration_ms"], float) and isinstance(e["ts"], float)
    assert any(e["event"] == "auth_failed" and e["status"] == 401 for e in lines)
    assert not any(e.get("path") == "/health" for e in lines)  # public, not audited


async def test_probe_is_redacted(server: RuntimeProc) -> None:
    r = http_get(f"{server.url}/probe", headers=server.headers)
    assert r.status_code == 200
    assert SECRET not in r.text
    assert r.json()["disk_root"].endswith(f"root-{REDACTED}")


async def test_rotation_without_restart(tmp_path: Path) -> None:
    proc = start_runtime(tmp_path / "r")
    try:
        old = proc.secret
        health = http_get(f"{proc.url}/health").json()
        r = http_post(f"{proc.url}/auth/rotate", headers=proc.headers)
        assert r.status_code == 200
        new = r.json()["secret"]
        assert new != old and len(new) >= 32
        assert http_get(f"{proc.url}/probe", headers=proc.headers).status_code == 401
        async with RuntimeClient(proc.url, old) as client:
            with pytest.raises(Unauthorized):
                await client.probe()
        async with RuntimeClient(proc.url, new) as client:
            assert (await client.probe()).epoch == health["epoch"]  # nothing restarted
        assert http_get(f"{proc.url}/health").json()["epoch"] == health["epoch"]
        # Neither secret reaches the audit log or the server's JSON log lines.
        audit = (proc.state_dir / "audit.log").read_text()
        assert "secret_rotated" in audit
        assert old not in audit and new not in audit
        proc.stop()
        json_lines = [ln for ln in proc.log().splitlines() if ln.startswith("{")]
        assert json_lines, "the server logged nothing?"
        assert not any(old in ln or new in ln for ln in json_lines)
    finally:
        proc.kill()


def test_openapi_needs_the_secret(server: RuntimeProc) -> None:
    # The schema is built on first request: seconds on a loaded 2-core machine, past httpx's 5 s.
    assert http_get(f"{server.url}/openapi.json", timeout=60).status_code == 401
    doc = http_get(f"{server.url}/openapi.json", headers=server.headers, timeout=60).json()
    probe = doc["paths"]["/probe"]["get"]["responses"]
    assert probe["401"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ErrorResponse")
    assert "HTTPValidationError" not in json.dumps(doc)


def test_audit_log_rotates_and_stays_valid(tmp_path: Path) -> None:
    redactor = Redactor(SECRET)
    audit = AuditLog(tmp_path, max_bytes=2000, backups=3, redactor=redactor)
    try:
        for i in range(200):
            audit.job(job_id=f"j{i}", client="127.0.0.1", session="main",
                      code=f"print({i!r}, {SECRET!r})", status="succeeded", duration_s=0.5)
    finally:
        audit.close()
    files = sorted(tmp_path.glob("audit.log*"))
    assert [f.name for f in files] == ["audit.log", "audit.log.1", "audit.log.2", "audit.log.3"]
    for f in files:
        assert f.stat().st_size <= 2000
        for line in f.read_text().splitlines():
            entry = json.loads(line)
            assert entry["event"] == "job" and len(entry["code_sha256"]) == 64
    last = json.loads((tmp_path / "audit.log").read_text().splitlines()[-1])
    assert last["job_id"] == "j199"
    assert last["code_sha256"] == code_digest(f"print(199, {SECRET!r})")
    assert SECRET not in "".join(f.read_text() for f in files)


def test_redactor() -> None:
    r = Redactor("short", "a-long-secret-value")
    assert r.redact("x a-long-secret-value y") == f"x {REDACTED} y"
    assert r.redact("short stays") == "short stays"  # too short to be a secret
    r.add("a-long-secret-value-rotated")
    assert r.redact("a-long-secret-value-rotated") == REDACTED
    assert r.redact_bytes(b"..a-long-secret-value..") == f"..{REDACTED}..".encode()


def test_audit_write_failure_is_reported_once(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import errno
    import io

    class Full(io.StringIO):
        def write(self, s: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    audit = AuditLog(tmp_path, max_bytes=0, backups=0)
    audit._lines._fh = Full()
    for i in range(3):  # dropped, and said once, not per line
        audit.event("request", n=i)
    assert capsys.readouterr().err.count("the audit log could not be written") == 1
    audit._lines._fh = None  # reopened on the next line
    audit.event("request", n=3)
    audit.close()
    assert json.loads((tmp_path / "audit.log").read_text().splitlines()[-1])["n"] == 3
