"""Helpers for the job and session tests: a small bearer-token client."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import httpx2

from support.runtime_proc import RuntimeProc, start_runtime

KILL_GRACE = "1"


class Api:
    """Thin synchronous client with the bearer secret (the signed client is tested too)."""

    def __init__(self, rt: RuntimeProc) -> None:
        self.rt = rt
        self.http = httpx2.Client(base_url=rt.url, headers=rt.headers, timeout=90)

    def submit(self, code: str, *, job_id: str | None = None, wait: float = 30,
               **fields: Any) -> dict[str, Any]:
        r = self.submit_raw(code, job_id=job_id, wait=wait, **fields)
        assert r.status_code in (200, 201), r.text
        body: dict[str, Any] = r.json()
        return body

    def submit_raw(self, code: str, *, job_id: str | None = None, wait: float = 30,
                   **fields: Any) -> httpx2.Response:
        body = {"job_id": job_id or f"t-{secrets.token_hex(6)}", "code": code, **fields}
        return self.http.post("/jobs", params={"wait": wait}, json=body)

    def get(self, job_id: str, **params: Any) -> dict[str, Any]:
        r = self.http.get(f"/jobs/{job_id}", params=params)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def wait_done(self, job_id: str, deadline_s: float = 30) -> dict[str, Any]:
        """The job's whole view once it has ended.

        Each poll passes the cursor of the last one: without it a job that has printed
        anything answers at once, and the loop spun fast enough to hit the rate limit.
        """
        end = time.monotonic() + deadline_s
        since: dict[str, int] = {}
        while True:
            view = self.get(job_id, wait=min(5.0, max(0.1, end - time.monotonic())), **since)
            if view["status"] not in ("queued", "running"):
                return self.get(job_id) if since else view
            if time.monotonic() > end:
                raise AssertionError(f"job {job_id} still {view['status']} after {deadline_s} s")
            since = {"since": view["cursor"]}

    def close(self) -> None:
        self.http.close()


def runtime_with_grace(root: Path, *args: str, **kwargs: Any) -> RuntimeProc:
    return start_runtime(root, "--kill-grace", KILL_GRACE, *args, **kwargs)
