"""Job behaviour through the in-process bridge against real runtimes: images, timeouts,
wait budget and progress, cancellation, failures, caps, death and restart of the runtime."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.types import ImageContent

from smartcolab.client.http.client import RuntimeClient
from smartcolab.shared.errors import JobNotFound
from support.bridge_helpers import bridge, make_config, text_of
from support.runtime_proc import RuntimeProc, start_runtime

pytestmark = pytest.mark.anyio


async def test_plot_returns_an_image_and_value(runtime: RuntimeProc, tmp_path: Path) -> None:
    code = ("import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
            "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()\n"
            "print('plotted')\n21 * 2")
    async with bridge(make_config(tmp_path, runtime)) as (client, _):
        with anyio.fail_after(60):
            result = await client.call_tool("run_code_quick", {"code": code})
    assert not result.is_error, text_of(result)
    images = [c for c in result.content if isinstance(c, ImageContent)]
    assert len(images) == 1 and images[0].mime_type == "image/png"
    assert "plotted" in text_of(result) and "42" in text_of(result)
    assert result.structured_content and result.structured_content["status"] == "succeeded"


async def test_extra_images_are_saved_not_sent(runtime: RuntimeProc, tmp_path: Path) -> None:
    code = ("import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
            "import matplotlib.pyplot as plt\nfor i in range(3):\n"
            "    plt.figure(); plt.plot([i, 1]); plt.show()")
    async with bridge(make_config(tmp_path, runtime, max_images=1)) as (client, _):
        with anyio.fail_after(60):
            result = await client.call_tool("run_code_quick", {"code": code})
    assert not result.is_error, text_of(result)
    assert sum(isinstance(c, ImageContent) for c in result.content) == 1
    saved = sorted((tmp_path / "saved").glob("*.png"))
    assert len(saved) == 2 and all(p.stat().st_size > 100 for p in saved)
    assert str(saved[0]) in text_of(result)


async def test_progress_bar_shows_its_last_frame(runtime: RuntimeProc, tmp_path: Path) -> None:
    """A 2,000-step \\r progress bar costs one line of the result, not 2,000 frames."""
    code = ("import sys\nfor i in range(1, 2001):\n"
            "    sys.stderr.write(f'\\rstep {i:4d}/2000 ' + '#' * (i // 100))\n"
            "sys.stderr.write('\\n')\nprint('trained')")
    async with bridge(make_config(tmp_path, runtime)) as (client, _):
        with anyio.fail_after(60):
            result = await client.call_tool("run_code_quick", {"code": code})
    text = text_of(result)
    assert not result.is_error, text
    assert "step 2000/2000 " + "#" * 20 in text and "trained" in text
    assert "step 1999" not in text and "step    1/" not in text and "\r" not in text


async def test_every_display_format_reaches_the_model(runtime: RuntimeProc,
                                                     tmp_path: Path) -> None:
    """HTML tables, Markdown, JSON, JPEG and SVG: shown, or saved and named; none dropped."""
    code = ("from IPython.display import display, HTML, Markdown, JSON, SVG, Image\n"
            "display(HTML('<table><tr><th>k</th><th>v</th></tr><tr><td>a</td><td>1</td></tr>'"
            "'</table>'))\n"
            "display(Markdown('# Heading'))\n"
            "display(JSON({'answer': 42}))\n"
            "display(Image(data=b'\\xff\\xd8\\xff\\xe0fakejpeg', format='jpeg'))\n"
            "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\"><circle r=\"4\"/></svg>'))\n"
            "class Thing:\n    def _repr_html_(self):\n        return '<i>only html</i>'\n"
            "Thing()")
    async with bridge(make_config(tmp_path, runtime)) as (client, _):
        with anyio.fail_after(60):
            result = await client.call_tool("run_code_quick", {"code": code})
    text = text_of(result)
    assert not result.is_error, text
    assert "| k | v |\n|---|---|\n| a | 1 |" in text
    assert "# Heading" in text and '"answer": 42' in text and "only html" in text
    images = [c for c in result.content if isinstance(c, ImageContent)]
    assert [i.mime_type for i in images] == ["image/jpeg"]
    saved = sorted((tmp_path / "saved").glob("*.svg"))
    assert len(saved) == 1 and saved[0].read_text().startswith("<svg")
    assert "image/svg+xml output" in text and str(saved[0]) in text


async def test_failure_is_an_error_with_traceback_and_prior_output(runtime: RuntimeProc,
                                                                    tmp_path: Path) -> None:
    code = "print('before the crash')\ndef f():\n    return 1 / 0\nf()"
    async with bridge(make_config(tmp_path, runtime)) as (client, _):
        with anyio.fail_after(60):
            result = await client.call_tool("run_code_quick", {"code": code})
    assert result.is_error
    text = text_of(result)
    assert "before the crash" in text and "ZeroDivisionError" in text and "1 / 0" in text
    assert "\x1b[" not in text


async def test_infinite_loop_times_out_and_next_call_works(runtime: RuntimeProc,
                                                           tmp_path: Path) -> None:
    config = make_config(tmp_path, runtime, quick_timeout_s=1.5)
    async with bridge(config) as (client, _):
        with anyio.fail_after(60):
            looped = await client.call_tool("run_code_quick", {"code": "while True:\n    pass",
                                                               "session": "loop"})
            after = await client.call_tool("run_code_quick", {"code": "print('alive')",
                                                              "session": "loop"})
    assert looped.is_error and looped.structured_content
    assert looped.structured_content["status"] == "timed_out"
    assert "timeout" in text_of(looped)
    assert not after.is_error and "alive" in text_of(after)


async def test_long_job_returns_running_then_get_job_has_the_result(runtime: RuntimeProc,
                                                                    tmp_path: Path) -> None:
    messages: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message)

    code = "import time\nprint('step one', flush=True)\ntime.sleep(3)\nprint('finished')"
    config = make_config(tmp_path, runtime, wait_budget_s=1.5, progress_interval_s=0.5)
    async with bridge(config) as (client, _):
        with anyio.fail_after(60):
            first = await client.call_tool("run_code_long", {"code": code, "session": "long"},
                                           progress_callback=on_progress)
            assert not first.is_error, text_of(first)
            assert first.structured_content and first.structured_content["status"] == "running"
            job_id = first.structured_content["job_id"]
            assert "get_job" in text_of(first) and job_id in text_of(first)
            assert "step one" in text_of(first)
            assert "step one" in messages
            final = None
            for _ in range(10):
                final = await client.call_tool("get_job", {"job_id": job_id})
                assert final.structured_content
                if final.structured_content["status"] != "running":
                    break
    assert final is not None and final.structured_content
    assert final.structured_content["status"] == "succeeded", text_of(final)
    assert "finished" in text_of(final)


async def test_background_job_and_output_paging(runtime: RuntimeProc, tmp_path: Path) -> None:
    code = "for i in range(3000):\n    print(f'line {i:05d} ' + 'x' * 40)"
    async with bridge(make_config(tmp_path, runtime, max_result_chars=2000)) as (client, _):
        with anyio.fail_after(60):
            started = await client.call_tool("run_code_long", {"code": code, "background": True,
                                                               "session": "paging"})
            assert started.structured_content
            job_id = started.structured_content["job_id"]
            done = await client.call_tool("get_job", {"job_id": job_id, "wait": 30})
            page = await client.call_tool("get_job_output", {"job_id": job_id, "offset": 0,
                                                             "limit": 1000})
            listing = await client.call_tool("list_jobs", {"session": "paging"})
    text = text_of(done)
    assert len(text) < 3000 and "bytes of output omitted" in text
    # The marker counts all that is not shown (156,000 bytes printed), not just this cut.
    omitted = int(re.search(r"\[([\d,]+) bytes of output omitted", text)[1].replace(",", ""))
    assert 150_000 < omitted < 156_000
    assert "line 00000" in text and "line 02999" in text
    assert f"get_job_output(job_id='{job_id}'" in text
    assert page.structured_content and page.structured_content["next_offset"] == 1000
    assert text_of(page).splitlines()[1].startswith("line 00000")
    assert job_id in text_of(listing)


async def test_cancelling_the_tool_call_cancels_the_job(runtime: RuntimeProc, tmp_path: Path) -> None:
    code = "import time\nfor i in range(600):\n    time.sleep(0.1)"
    async with bridge(make_config(tmp_path, runtime)) as (client, deps):
        with anyio.fail_after(60):
            # The session's kernel starts first: on a loaded machine its start alone can
            # take longer than the wait below, and then there is no job yet to cancel.
            await client.call_tool("run_code_quick", {"code": "1", "session": "cancel"})
            async with anyio.create_task_group() as tg:
                async def call() -> None:
                    await client.call_tool("run_code_quick", {"code": code, "session": "cancel"})

                tg.start_soon(call)
                # Cancel once the job runs: a fixed sleep raced the new session's kernel
                # start on a loaded machine (cancelled before anything was submitted).
                _, rc = await deps.registry.client()
                await _until_running(deps.journal, rc)
                tg.cancel_scope.cancel()
            job_id = deps.journal.recent(limit=1)[0].job_id
            view = await rc.get_job(job_id)
            while view.status == "running":
                await anyio.sleep(0.1)
                view = await rc.get_job(job_id)
    assert view.status == "cancelled"


async def _until_running(journal: Any, rc: RuntimeClient) -> None:
    while True:
        recent = journal.recent(limit=1)
        with contextlib.suppress(JobNotFound):  # journaled, not submitted yet
            if recent and (await rc.get_job(recent[0].job_id)).status == "running":
                return
        await anyio.sleep(0.1)


async def test_runtime_death_restart_and_journal(tmp_path: Path) -> None:
    proc = start_runtime(tmp_path / "root")
    try:
        async with bridge(make_config(tmp_path, proc, wait_budget_s=20)) as (client, _):
            with anyio.fail_after(90):
                setup = await client.call_tool("run_code_quick", {"code": "model = 'trained'"})
                assert not setup.is_error, text_of(setup)
                async with anyio.create_task_group() as tg:
                    async def kill_soon() -> None:
                        await anyio.sleep(1.0)
                        proc.kill()

                    tg.start_soon(kill_soon)
                    died = await client.call_tool("run_code_quick",
                                                  {"code": "import time; time.sleep(30)"})
                assert died.is_error
                assert "runtime_unreachable" in text_of(died) and proc.url in text_of(died)
                assert "connect_runtime" in text_of(died)
                setup_id = setup.structured_content["job_id"]  # type: ignore[index]
                from_journal = await client.call_tool("get_job", {"job_id": setup_id})
                assert not from_journal.is_error
                assert "local journal" in text_of(from_journal) and "succeeded" in text_of(from_journal)
                jobs = await client.call_tool("list_jobs", {})
                assert jobs.structured_content and jobs.structured_content["source"] == "journal"
                assert len(jobs.structured_content["jobs"]) == 2

                restarted = start_runtime(proc.root, secret=proc.secret, state_dir=proc.state_dir,
                                          port=proc.port)
                proc = restarted
                again = await client.call_tool("run_code_quick", {"code": "print('back')"})
        assert not again.is_error, text_of(again)
        text = text_of(again)
        assert "back" in text and "STATE LOST" in text and "model = 'trained'" in text
    finally:
        proc.kill()
