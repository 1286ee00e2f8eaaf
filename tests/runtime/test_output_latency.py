"""A long-poll answers the first output after a quiet spell at once, and lingers only on bursts
(runtime/engine/jobs.py).  COALESCE_S is made 30 s here, so a wrong linger cannot hide: the
first answer must come long before it, and a burst's answer no earlier than its deadline."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from smartcolab.runtime.config import RuntimeConfig
from smartcolab.runtime.engine import jobs
from smartcolab.runtime.engine.store import JobRecord

pytestmark = pytest.mark.anyio


def a_job(tmp_path: Path) -> jobs.Job:
    config = RuntimeConfig(roots=[tmp_path], state_dir=tmp_path / "state")
    rec = JobRecord(job_id="j1", session="main", status="running", code="print(1)",
                    timeout=None, client=None, created_at=time.time(), epoch="e")
    jobs.job_dir(config, "j1").mkdir(parents=True)
    return jobs.Job(rec, config, None)


async def test_first_output_after_quiet_goes_at_once_and_a_burst_lingers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "COALESCE_S", 30.0)
    job = a_job(tmp_path)
    async with anyio.create_task_group() as tg:
        async def first_line() -> None:
            await anyio.sleep(0.05)
            job.on_message("stream", {"name": "stdout", "text": "first\n"})

        tg.start_soon(first_line)
        with anyio.fail_after(10):  # a 30 s linger would fail here
            await job.wait(since=0, wait_s=25)
    assert job.output_bytes == len("first\n")
    # A second line right after the first is a burst: the poll waits for more of it, here
    # until its own deadline (1 s), not the 30 s linger and not at once.
    cursor = job.output_bytes
    job.on_message("stream", {"name": "stdout", "text": "second\n"})
    t0 = time.monotonic()
    with anyio.fail_after(10):
        await job.wait(since=cursor, wait_s=1.0)
    assert time.monotonic() - t0 >= 0.9


async def test_a_waiter_is_woken_by_notify_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """Waiters are woken by the job itself (no helper task per wait); a timed-out or
    cancelled wait leaves no waiter behind."""
    job = a_job(tmp_path)
    woken: list[str] = []

    async def waiter(name: str) -> None:
        await job.wait(since=None, wait_s=30)
        woken.append(name)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, "a")
            tg.start_soon(waiter, "b")
            await anyio.sleep(0.05)
            assert len(job._waiters) == 2 and woken == []
            job.rec.status = "succeeded"
            job.notify()
    assert sorted(woken) == ["a", "b"] and not job._waiters

    job.rec.status = "running"
    t0 = time.monotonic()
    await job.wait(since=None, wait_s=0.2)  # times out: no notify
    assert time.monotonic() - t0 >= 0.15 and not job._waiters
    with anyio.move_on_after(0.1):
        await job.wait(since=None, wait_s=30)  # cancelled from outside
    assert not job._waiters
