"""Fault injection with real processes: a killed server, cut and stalled connections,
a full disk during a download, and many concurrent clients.

``SMARTCOLAB_FAULT_LOAD_S`` sets how long the concurrency test runs (default 10 s;
the issue's figure is 60 s: ``SMARTCOLAB_FAULT_LOAD_S=60 pytest tests/test_faults.py``).
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path

import anyio
import pytest

from smartcolab.client.http import transfer
from smartcolab.client.http.client import RetryPolicy, RuntimeClient
from smartcolab.shared.errors import LocalWriteFailed
from smartcolab.shared.protocol import TERMINAL_STATUSES, JobSubmit
from support.bridge_helpers import bridge, make_config, text_of
from support.cutproxy import CutProxy
from support.faults_helpers import StallProxy, executions, tiny_filesystem, traced_code
from support.runtime_proc import start_runtime

pytestmark = pytest.mark.anyio
LOAD_S = float(os.environ.get("SMARTCOLAB_FAULT_LOAD_S", "10"))
CLIENTS = 50
RETRY = RetryPolicy(attempts=6, initial_s=0.05, max_s=0.5, total_s=30.0)


async def test_sigkill_mid_job_then_restart(tmp_path: Path) -> None:
    """The running job is reported ``lost``, the bridge says state was lost, nothing hangs."""
    proc = start_runtime(tmp_path / "root")
    try:
        async with bridge(make_config(tmp_path, proc, wait_budget_s=5)) as (client, _):
            with anyio.fail_after(120):
                first = await client.call_tool("run_code_quick", {"code": "x = 41"})
                assert not first.is_error, text_of(first)
                started = await client.call_tool("run_code_long", {
                    "code": "import time\nprint('working', flush=True)\ntime.sleep(60)",
                    "background": True})
                assert not started.is_error, text_of(started)
                job_id = started.structured_content["job_id"]  # type: ignore[index]
                async with RuntimeClient(proc.url, proc.secret) as direct:
                    while (await direct.get_job(job_id, wait=1)).status != "running":
                        pass
                proc.kill()  # SIGKILL: no shutdown hook runs, the kernel is orphaned
                proc = start_runtime(proc.root, secret=proc.secret, state_dir=proc.state_dir,
                                     port=proc.port)
                seen = await client.call_tool("get_job", {"job_id": job_id})
                again = await client.call_tool("run_code_quick",
                                               {"code": "print(globals().get('x'))"})
        # A lost job is an error the model reads, saying what happened and what to do.
        text = text_of(seen)
        assert seen.is_error and f"job {job_id}" in text and ": lost" in text
        assert "Submit it again" in text
        assert "STATE LOST" in text and "x = 41" in text  # the epoch change, with what to redo
        assert not again.is_error, text_of(again)
        assert "None" in text_of(again)
    finally:
        proc.kill()


async def test_cut_connections_retry_and_never_run_twice(tmp_path: Path) -> None:
    """Every response is cut mid-way for the first connections: the client retries,
    the job id makes the retry harmless, each job runs exactly once."""
    proc = start_runtime(tmp_path / "root")
    trace = tmp_path / "root" / "trace.txt"
    try:
        with CutProxy(proc.port, down_after=60, cuts=4) as proxy:
            async with RuntimeClient(proxy.url, proc.secret, retry=RETRY) as client:
                with anyio.fail_after(90):
                    ids = [f"cut-{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
                    for job_id in ids:
                        view = await client.submit(JobSubmit(
                            job_id=job_id, code=traced_code(job_id, trace, "print('ok')")),
                            wait=10)
                        while view.status not in TERMINAL_STATUSES:
                            view = await client.get_job(job_id, wait=5)
                        assert view.status == "succeeded"
            assert proxy.cut_count == 4
        assert executions(trace) == {job_id: 1 for job_id in ids}
    finally:
        proc.stop()


async def test_stalled_connection_times_out_and_retries_once(tmp_path: Path) -> None:
    proc = start_runtime(tmp_path / "root")
    trace = tmp_path / "root" / "trace.txt"
    try:
        with StallProxy(proc.port, stalls=2) as proxy:
            async with RuntimeClient(proxy.url, proc.secret, retry=RETRY,
                                     read_timeout=2.0) as client:
                with anyio.fail_after(60):
                    job_id = f"stall-{uuid.uuid4().hex[:6]}"
                    body = JobSubmit(job_id=job_id, code=traced_code(job_id, trace))
                    # The submit path's retry (idempotent by job id), with the read timeout.
                    r = await client.request("POST", "/jobs", json=body.model_dump(mode="json"),
                                             idempotent=True)
                    assert r.status_code in (200, 201)
                    view = await client.get_job(job_id, wait=10)
                    assert view.status == "succeeded"
            assert proxy.stalled == 2
        assert executions(trace) == {job_id: 1}
    finally:
        proc.stop()


async def test_disk_full_during_download(tmp_path: Path) -> None:
    """A clear error, no file at the final name; once space is freed, it completes."""
    proc = start_runtime(tmp_path / "root")
    payload = os.urandom(600 * 1024)
    (tmp_path / "root" / "big.bin").write_bytes(payload)
    save = tmp_path / "save"
    try:
        with tiny_filesystem(save, size_kb=512):
            async with RuntimeClient(proc.url, proc.secret) as client:
                with anyio.fail_after(60):
                    with pytest.raises(LocalWriteFailed) as info:
                        await transfer.download(client, "big.bin", save)
                    message = str(info.value).lower()
                    print(f"\ndisk full -> {type(info.value).__name__}: {info.value}")
                    assert "space" in message, repr(info.value)
                    assert not (save / "big.bin").exists()
        # The same directory on a roomy disk: the download completes and verifies.
        async with RuntimeClient(proc.url, proc.secret) as client:
            with anyio.fail_after(60):
                done = await transfer.download(client, "big.bin", save)
        assert done.path.read_bytes() == payload
        assert done.sha256 == hashlib.sha256(payload).hexdigest()
    finally:
        proc.stop()


async def test_many_concurrent_clients(tmp_path: Path) -> None:
    """50 clients submit jobs for LOAD_S seconds: each job runs once, outputs never mix."""
    proc = start_runtime(tmp_path / "root", "--rate-limit", "0")
    trace = tmp_path / "root" / "trace.txt"
    submitted: list[str] = []
    problems: list[str] = []
    latencies: list[float] = []
    deadline = time.monotonic() + LOAD_S

    async def one_client(n: int) -> None:
        session = "main" if n % 2 == 0 else "second"
        async with RuntimeClient(proc.url, proc.secret, retry=RETRY) as client:
            i = 0
            while time.monotonic() < deadline:
                job_id = f"c{n}-{i}-{uuid.uuid4().hex[:4]}"
                i += 1
                lines = [f"{job_id} line {k}" for k in range(5)]
                body = "".join(f"print({line!r}, flush=True)\n" for line in lines)
                submitted.append(job_id)
                started = time.monotonic()
                view = await client.submit(JobSubmit(
                    job_id=job_id, session=session, code=traced_code(job_id, trace, body)),
                    wait=30)
                while view.status not in TERMINAL_STATUSES:
                    view = await client.get_job(job_id, wait=30)
                latencies.append(time.monotonic() - started)
                full = (await client.get_job(job_id)).output
                if view.status != "succeeded" or full != "".join(f"{x}\n" for x in lines):
                    problems.append(f"{job_id}: {view.status} {full!r}")

    try:
        async with RuntimeClient(proc.url, proc.secret) as setup:
            await setup.create_session("second")
        started = time.monotonic()
        with anyio.fail_after(LOAD_S + 120):
            async with anyio.create_task_group() as tg:
                for n in range(CLIENTS):
                    tg.start_soon(one_client, n)
        elapsed = time.monotonic() - started
        counts = executions(trace)
        latencies.sort()
        p50 = latencies[len(latencies) // 2]
        p99 = latencies[int(len(latencies) * 0.99)]
        print(f"\n{CLIENTS} clients, {elapsed:.1f} s: {len(submitted)} jobs, "
              f"{len(submitted) / elapsed:.1f} jobs/s, latency p50 {p50 * 1000:.0f} ms, "
              f"p99 {p99 * 1000:.0f} ms")
        assert not problems, problems[:5]
        assert len(submitted) >= CLIENTS
        assert counts == {job_id: 1 for job_id in submitted}
        async with RuntimeClient(proc.url, proc.secret) as check:
            listed = await check.list_jobs(limit=1000)
        if len(submitted) <= 1000:
            assert {j.job_id for j in listed.jobs} == set(submitted)
    finally:
        proc.stop()
