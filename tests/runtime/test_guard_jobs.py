"""Guarded mode wired into job submission, and job outputs kept free of the secret."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from support.runtime_proc import RuntimeProc, start_runtime

SECRET = "guard-jobs-secret-8b1d4e6f0a2c"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProc]:
    root = Path(tmp_path_factory.mktemp("guarded"))
    proc = start_runtime(root, "--guarded", secret=SECRET)
    try:
        yield proc
    finally:
        proc.stop()


def run(proc: RuntimeProc, code: str) -> httpx2.Response:
    body = {"job_id": f"t-{uuid.uuid4().hex[:10]}", "code": code}
    return httpx2.post(f"{proc.url}/jobs", params={"wait": 30}, json=body,
                       headers=proc.headers, timeout=60)


def test_refused_code_never_runs(guarded: RuntimeProc) -> None:
    marker = guarded.root / "ran.txt"
    code = f"open({str(marker)!r}, 'w').write('x')\nimport os\nos.system('true')"
    r = run(guarded, code)
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["code"] == "guard_refused" and "os.system" in err["message"]
    assert "not a sandbox" in err["message"]
    assert not marker.exists()
    refused = [e for e in guarded.audit() if e["event"] == "guard_refused"]
    assert refused and "os.system" in refused[-1]["reasons"][0]


def test_ordinary_code_runs_and_is_audited(guarded: RuntimeProc) -> None:
    r = run(guarded, "print(6 * 7)")
    assert r.status_code == 201, r.text
    view = r.json()
    assert view["status"] == "succeeded" and view["output"] == "42\n"
    def job_lines(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in events if e["event"] == "job" and e["job_id"] == view["job_id"]]

    jobs = job_lines(guarded.audit(until=job_lines))
    assert len(jobs) == 1
    entry = jobs[0]
    assert entry["status"] == "succeeded" and entry["client"] == "127.0.0.1"
    assert len(entry["code_sha256"]) == 64 and entry["duration_s"] >= 0
    assert "print(6 * 7)" not in (guarded.state_dir / "audit.log").read_text()


def test_kernel_environment_has_no_secret(guarded: RuntimeProc) -> None:
    r = run(guarded, "import os\nprint(sorted(k for k, v in os.environ.items() "
                     f"if 'SMARTCOLAB_SECRET' in k or v == {SECRET!r}))")
    assert r.json()["output"] == "[]\n", r.text


def test_secret_echoed_by_a_job_is_redacted(guarded: RuntimeProc) -> None:
    """A job that reads the secret from elsewhere (here: the server's own environment
    block, as any code running as the same user could) gets it back redacted."""
    code = ("import os\nraw = open(f'/proc/{os.getppid()}/environ', 'rb').read()\n"
            "print([v.decode() for v in raw.split(b'\\0') if v.startswith(b'SMARTCOLAB_')])")
    r = run(guarded, code)
    view = r.json()
    assert view["status"] == "succeeded", r.text
    assert SECRET not in r.text and "[redacted]" in view["output"]
    page = httpx2.get(f"{guarded.url}/jobs/{view['job_id']}/output", headers=guarded.headers)
    assert SECRET not in page.text and "[redacted]" in page.json()["text"]
