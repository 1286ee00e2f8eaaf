"""Honest waiting through the in-process bridge against a real runtime: get_job returns only
output not yet shown, waits the time asked (capped), says how long it really waited, never
cancels the job it waits on; output comes in the order it happened."""

from __future__ import annotations

import re
import time
from pathlib import Path

import anyio
import pytest

from smartcolab.shared.protocol import TERMINAL_STATUSES
from support.bridge_helpers import bridge, make_config, text_of
from support.runtime_proc import RuntimeProc

pytestmark = pytest.mark.anyio


def _waited(text: str) -> float:
    found = re.search(r"after waiting ([\d.]+) s", text)
    assert found, text
    return float(found.group(1))


async def test_get_job_repeats_nothing_already_shown(runtime: RuntimeProc, tmp_path: Path) -> None:
    code = ("import time\nprint('first-AAA', flush=True)\ntime.sleep(3)\n"
            "print('second-BBB')")
    config = make_config(tmp_path, runtime, wait_budget_s=1.5, progress_interval_s=0.5)
    async with bridge(config) as (client, _):
        with anyio.fail_after(90):
            first = await client.call_tool("run_code_long", {"code": code, "session": "shown"})
            assert first.structured_content and first.structured_content["status"] == "running"
            assert "first-AAA" in text_of(first)
            job_id = first.structured_content["job_id"]
            texts = []
            while True:
                result = await client.call_tool("get_job", {"job_id": job_id})
                texts.append(text_of(result))
                assert result.structured_content
                if result.structured_content["status"] in TERMINAL_STATUSES:
                    break
            again = await client.call_tool("get_job", {"job_id": job_id, "from_start": True})
    assert result.structured_content["status"] == "succeeded", texts[-1]
    assert not any("first-AAA" in t for t in texts), texts
    assert sum(t.count("second-BBB") for t in texts) == 1, texts
    assert "not repeated" in texts[-1] and "from_start=true" in texts[-1]
    assert "first-AAA" in text_of(again) and "second-BBB" in text_of(again)


async def test_get_job_waits_the_time_asked_and_says_so(runtime: RuntimeProc,
                                                        tmp_path: Path) -> None:
    code = "import time\nfor i in range(300):\n    print(i, flush=True)\n    time.sleep(0.2)"
    config = make_config(tmp_path, runtime, wait_budget_s=3)
    async with bridge(config) as (client, _):
        with anyio.fail_after(90):
            await client.call_tool("run_code_quick", {"code": "1", "session": "waits"})
            t0 = time.monotonic()
            started = await client.call_tool("run_code_long", {
                "code": code, "session": "waits", "background": True})
            submit_s = time.monotonic() - t0
            assert started.structured_content
            job_id = started.structured_content["job_id"]
            # It returned at once: it does not claim to have waited the budget.
            if "after waiting" in text_of(started):
                assert _waited(text_of(started)) <= submit_s + 0.05, text_of(started)
            t0 = time.monotonic()
            short = await client.call_tool("get_job", {"job_id": job_id, "wait": 2})
            short_s = time.monotonic() - t0
            capped = await client.call_tool("get_job", {"job_id": job_id, "wait": 600})
            await client.call_tool("cancel_job", {"job_id": job_id})
    assert short.structured_content and short.structured_content["status"] == "running"
    # Not at the first new line (the job prints every 0.2 s): after the 2 s asked for.
    assert short_s >= 2.0 and _waited(text_of(short)) >= 1.95, text_of(short)
    assert capped.structured_content and capped.structured_content["status"] == "running"
    assert 2.95 <= _waited(text_of(capped)) < 30, text_of(capped)
    assert "over the wait budget" in text_of(capped)


async def test_cancelling_get_job_leaves_the_job_running(runtime: RuntimeProc,
                                                         tmp_path: Path) -> None:
    code = ("import time\nfor i in range(20):\n    print(i, flush=True)\n    time.sleep(0.2)\n"
            "print('all done')")
    async with bridge(make_config(tmp_path, runtime, progress_interval_s=0.5)) as (client, deps):
        with anyio.fail_after(90):
            started = await client.call_tool("run_code_long", {
                "code": code, "session": "keep", "background": True})
            assert started.structured_content
            job_id = started.structured_content["job_id"]
            with anyio.move_on_after(2):  # the client gives up on the wait
                await client.call_tool("get_job", {"job_id": job_id, "wait": 40})
            _, rc = await deps.registry.client()
            view = await rc.get_job(job_id)
            assert view.status == "running"  # the wait was given up well before the end
            while view.status not in TERMINAL_STATUSES:
                view = await rc.get_job(job_id, wait=5)
    assert view.status == "succeeded"
    assert view.result is not None and "all done" in view.result.stdout.text


async def test_output_comes_in_the_order_it_happened(runtime: RuntimeProc,
                                                     tmp_path: Path) -> None:
    code = ("import sys\nfrom IPython.display import Markdown, display\n"
            "print('out-1', flush=True)\nprint('err-1', file=sys.stderr, flush=True)\n"
            "display(Markdown('**md-1**'))\nprint('out-2', flush=True)\n6 * 7")
    async with bridge(make_config(tmp_path, runtime)) as (client, _):
        with anyio.fail_after(60):
            result = await client.call_tool("run_code_quick", {"code": code, "session": "order"})
    text = text_of(result)
    marks = ["out-1", "[stderr]\nerr-1", "**md-1**", "[stdout]\nout-2", "]: 42"]
    where = [text.find(m) for m in marks]
    assert -1 not in where and where == sorted(where), text


async def test_a_busy_session_answers_at_once(runtime: RuntimeProc, tmp_path: Path) -> None:
    code = "import time\nfor i in range(400):\n    time.sleep(0.1)"
    async with bridge(make_config(tmp_path, runtime)) as (client, deps):
        with anyio.fail_after(120):
            first = await client.call_tool("run_code_long", {
                "code": code, "session": "busy", "background": True})
            assert first.structured_content
            ahead = first.structured_content["job_id"]
            _, rc = await deps.registry.client()
            while (await rc.get_job(ahead, wait=1)).status != "running":
                pass
            t0 = time.monotonic()
            quick = await client.call_tool("run_code_quick", {
                "code": "print('should never run')", "session": "busy"})
            quick_s = time.monotonic() - t0
            t0 = time.monotonic()
            queued = await client.call_tool("run_code_long", {
                "code": "print('second ran')", "session": "busy"})
            queued_s = time.monotonic() - t0
            assert queued.structured_content
            behind = queued.structured_content["job_id"]
            await client.call_tool("cancel_job", {"job_id": ahead})
            final = await client.call_tool("get_job", {"job_id": behind, "wait": 30})
            listed = {v.job_id for v in (await rc.list_jobs(session="busy")).jobs}
    # The quick call is refused before the 40 s job ends, names it and the choices.
    text = text_of(quick)
    assert quick.is_error and quick_s < 25, text
    assert ahead in text and "running for" in text and "Nothing was queued" in text
    assert "cancel_job" in text and "another session" in text and "get_job" in text
    # run_code_long queues behind it and says so at once.
    assert queued_s < 25 and queued.structured_content["status"] == "queued"
    assert queued.structured_content["queued_behind"] == ahead
    assert ahead in text_of(queued) and "queued behind it" in text_of(queued)
    assert final.structured_content and final.structured_content["status"] == "succeeded"
    assert "second ran" in text_of(final)
    assert listed == {ahead, behind}  # the refused quick call left no job behind


async def test_thread_output_stays_with_the_job_that_started_the_thread(
        runtime: RuntimeProc, tmp_path: Path) -> None:
    start = ("import threading, time\nev = threading.Event()\n"
             "def work():\n    time.sleep(0.5)\n    print('bg-idle', flush=True)\n"
             "    ev.wait(60)\n    print('bg-during', flush=True)\n"
             "threading.Thread(target=work, daemon=True).start()\nprint('cell-one')")
    later = "import time\nev.set()\ntime.sleep(1.5)\nprint('cell-two')"
    async with bridge(make_config(tmp_path, runtime)) as (client, _):
        with anyio.fail_after(90):
            first = await client.call_tool("run_code_quick", {"code": start, "session": "thr"})
            assert first.structured_content and "cell-one" in text_of(first)
            job_id = first.structured_content["job_id"]
            # Printed while the session is idle: kept with the first job, readable at once.
            idle = ""
            while "bg-idle" not in idle:
                await anyio.sleep(0.2)
                idle = text_of(await client.call_tool("get_job", {"job_id": job_id}))
            second = await client.call_tool("run_code_quick", {"code": later, "session": "thr"})
            during = text_of(await client.call_tool("get_job", {"job_id": job_id}))
    assert "[after the job ended, from a thread it started]" in idle, idle
    # Printed during the second cell: not that cell's output, the first job's.
    assert "cell-two" in text_of(second) and "bg-during" not in text_of(second)
    assert "bg-during" in during and "bg-idle" not in during, during
