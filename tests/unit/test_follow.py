"""The one follower (client/follow.py) against a fake backend: submit, follow, budget, cancel."""

from __future__ import annotations

import re

import anyio
import pytest

from smartcolab.client.follow import Follower, new_job_id
from smartcolab.shared.errors import RuntimeUnreachable
from smartcolab.shared.protocol import JOB_ID_PATTERN, JobSubmit, JobView
from support.fake_backend import FakeBackend

pytestmark = pytest.mark.anyio


def job(code: str, session: str = "main") -> JobSubmit:
    return JobSubmit(job_id=new_job_id("t"), code=code, session=session)


def test_job_ids_are_valid_and_distinct() -> None:
    ids = {new_job_id(), new_job_id("cli")}
    assert len(ids) == 2
    assert all(re.match(JOB_ID_PATTERN, i) for i in ids)
    assert any(i.startswith("cli-") for i in ids)


async def test_submit_creates_the_session_on_first_use() -> None:
    backend = FakeBackend()
    j = job("print:hi", session="fresh")
    view = await Follower(backend, poll_s=0.1).submit(j)
    assert view.status == "succeeded"
    assert backend.calls == [("create_session", "fresh"), ("submit", j.job_id)]
    # Known now: no second creation.
    await Follower(backend, poll_s=0.1).submit(job("print:again", session="fresh"))
    assert [c for c in backend.calls if c[0] == "create_session"] == [("create_session", "fresh")]


async def test_follow_sees_every_polled_view_until_the_end() -> None:
    backend = FakeBackend()
    seen: list[JobView] = []

    async def on_view(view: JobView) -> None:
        seen.append(view)

    with anyio.fail_after(10):
        view = await Follower(backend, poll_s=0.1).run(job("steps:3"), on_view=on_view)
    assert view.status == "succeeded"
    assert "".join(v.output for v in seen) == "step 3\nstep 2\nstep 1\n"
    assert seen[-1] is view


async def test_a_spent_budget_returns_the_running_job_and_leaves_it_running() -> None:
    backend = FakeBackend()
    j = job("hang")
    with anyio.fail_after(10):
        view = await Follower(backend, poll_s=0.1).run(j, budget_s=0.3)
    assert view.status == "running"
    assert ("cancel", j.job_id) not in backend.calls
    assert backend.jobs[j.job_id].status == "running"


async def test_a_cancelled_caller_cancels_the_job() -> None:
    backend = FakeBackend()
    told: list[JobView] = []
    j = job("hang")
    follower = Follower(backend, poll_s=0.1, on_cancelled=told.append)
    with anyio.fail_after(10):
        with anyio.move_on_after(0.3) as scope:
            await follower.run(j)
    assert scope.cancelled_caught
    assert backend.jobs[j.job_id].status == "cancelled"
    assert [v.status for v in told] == ["cancelled"]


async def test_a_wait_that_must_not_cancel_leaves_the_job_running() -> None:
    backend = FakeBackend()
    j = job("hang")
    view = await Follower(backend, poll_s=0.1).submit(j, wait=0)
    with anyio.fail_after(10):
        with anyio.move_on_after(0.3):
            await Follower(backend, poll_s=0.1, cancel_on_cancel=False).follow(view)
    assert ("cancel", j.job_id) not in backend.calls
    assert backend.jobs[j.job_id].status == "running"


class UnreachableOnCancel(FakeBackend):
    async def cancel_job(self, job_id: str) -> JobView:
        raise RuntimeUnreachable("the tunnel is gone")


async def test_a_failing_remote_cancel_does_not_swallow_the_cancellation() -> None:
    backend = UnreachableOnCancel()
    told: list[JobView] = []
    with anyio.fail_after(10):
        with anyio.move_on_after(0.3) as scope:
            await Follower(backend, poll_s=0.1, on_cancelled=told.append).run(job("hang"))
    assert scope.cancelled_caught
    assert told == []
