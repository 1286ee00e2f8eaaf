"""A full disk under the runtime's state directory (a real 1 MiB tmpfs), end to end.

Only the job that hit the wall fails, and says why; the kernel is interrupted, not
restarted (its variables survive); submits and uploads while the disk is full get
507 with what to do; once space is freed the same session runs the next job and the
failed job's final status reaches the store.  Skipped where mounting is not allowed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from smartcolab.runtime.server import ServerHandle, serve_in_thread
from support.runtime_proc import PROCESS_TIMEOUT_S

SECRET = "disk-full-secret-0123456789"


@pytest.fixture
def tiny_state(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "state"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=PROCESS_TIMEOUT_S)


def fill(mount: Path, leave: int) -> Path:
    """Fill the filesystem until only about ``leave`` bytes are free."""
    filler = mount / "filler"
    free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
    with open(filler, "wb") as f, contextlib.suppress(OSError):
        f.write(b"\0" * max(0, free - leave))
    return filler


def job(http: httpx2.Client, job_id: str, code: str) -> dict[str, Any]:
    r = http.post("/jobs", params={"wait": 30}, json={"job_id": job_id, "code": code})
    assert r.status_code == 201, r.text
    view: dict[str, Any] = r.json()
    deadline = time.monotonic() + 60
    while view["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        view = http.get(f"/jobs/{job_id}", params={"wait": 10}).json()
    return view


def test_a_full_disk_fails_one_job_and_the_session_recovers(tmp_path: Path,
                                                             tiny_state: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    handle: ServerHandle = serve_in_thread(root=root, state_dir=tiny_state, port=0,
                                           secret=SECRET, banner=False)
    try:
        with httpx2.Client(base_url=handle.url, timeout=60,
                           headers={"Authorization": f"Bearer {SECRET}"}) as http:
            first = job(http, "before", "x = 41\nprint('ready')")
            assert first["status"] == "succeeded"
            session = http.get("/sessions").json()["sessions"][0]
            filler = fill(tiny_state, leave=48 * 1024)

            wall = job(http, "hits-the-wall", "print('y' * 600_000)")
            assert wall["status"] == "failed"
            message = wall["result"]["message"]
            assert "disk is full" in message and "free space" in message.lower()
            assert "interrupted, not restarted" in message
            # The kernel was not restarted: same process, same epoch.
            after = http.get("/sessions").json()["sessions"][0]
            assert after["kernel_pid"] == session["kernel_pid"]
            assert after["epoch"] == session["epoch"]

            # Work that needs the disk is refused with 507 and what to do, not 500.
            refused = 0
            for i in range(3):
                r = http.post("/jobs", json={"job_id": f"while-full-{i}", "code": "1"})
                if r.status_code == 507:
                    refused += 1
                    assert r.json()["error"]["code"] == "insufficient_storage"
                    assert "free space" in r.json()["error"]["message"].lower()
                else:
                    assert r.status_code == 201, r.text
                    fill(tiny_state, leave=0)
            up = http.put("/files/content", params={"path": "u.bin"}, content=b"")
            assert up.status_code in (200, 507), up.text
            refused += up.status_code == 507
            assert refused >= 1

            filler.unlink()
            # The same session runs on, with its variables.
            after_free = job(http, "after-free", "print(x + 1)")
            assert after_free["status"] == "succeeded", after_free
            assert "42" in after_free["output"]
            # The failed job's final status reached the store (listings read the store).
            deadline = time.monotonic() + 20
            while True:
                listed = http.get("/jobs", params={"status": "failed"}).json()["jobs"]
                if any(j["job_id"] == "hits-the-wall" for j in listed):
                    break
                assert time.monotonic() < deadline, "the failed job's record never reached the store"
                time.sleep(0.5)
    finally:
        handle.stop()
