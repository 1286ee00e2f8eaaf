"""Durable jobs on a real Jupyter Server: the kernel's job agent outlives the bridge.

A "bridge process" here is a real subprocess driving the Jupyter Server through
``JupyterBackend`` (the part of the bridge that tracks jobs); it is killed with SIGKILL,
and a new bridge (the MCP server, in process) re-attaches from the spill files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp import Client
from smartcolab.client.registry import RuntimeSpec
from smartcolab.mcp.deps import BridgeDeps, BridgeSettings
from smartcolab.mcp.server import BridgeConfig, build_server, open_bridge
from support.bridge_helpers import FAST_RETRY, text_of
from support.jupyter_helpers import JupyterProc, start_jupyter

pytestmark = pytest.mark.anyio

# Submits one job, says so, then waits to be killed (as a bridge would, mid-job).
_BRIDGE = """
import asyncio, json, sys
from smartcolab.client.jupyter.server import JupyterBackend
from smartcolab.shared.protocol import JobSubmit

async def main():
    url, token, job_id, session, code, timeout = sys.argv[1:7]
    backend = JupyterBackend(url, token)
    view = await backend.submit(JobSubmit(job_id=job_id, session=session, code=code,
                                          timeout=float(timeout) if timeout else None), wait=0.0)
    print(json.dumps({"status": view.status}), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProc]:
    with start_jupyter(tmp_path_factory.mktemp("jdurable") / "root") as proc:
        yield proc


@asynccontextmanager
async def jbridge(jupyter: JupyterProc, tmp: Path) -> AsyncIterator[tuple[Client, BridgeDeps]]:
    config = BridgeConfig(
        settings=BridgeSettings(save_dir=tmp / "saved", checkpoint_dir=tmp / "ckpt"),
        runtimes=[RuntimeSpec("hub", jupyter.url, jupyter.token, kind="jupyter")],
        default_runtime="hub", embedded=False, retry=FAST_RETRY)
    async with open_bridge(config) as deps, Client(build_server(deps)) as client:
        yield client, deps


def _status(jupyter: JupyterProc, job_id: str) -> dict[str, Any]:
    path = jupyter.root / "smartcolab-jobs" / job_id / "status.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return {}


def _wait_for(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _start_and_kill_bridge(jupyter: JupyterProc, job_id: str, session: str, code: str,
                           timeout: float | None, *, until: Any) -> None:
    """A bridge process submits the job; it is killed (SIGKILL) once ``until(status)``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _BRIDGE, jupyter.url, jupyter.token, job_id, session, code,
         "" if timeout is None else str(timeout)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert b"status" in line, line
        _wait_for(lambda: until(_status(jupyter, job_id)), 90, f"job {job_id} to start")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


async def test_a_new_bridge_reattaches_after_kill_9_and_reads_the_whole_output(
        jupyter: JupyterProc, tmp_path: Path) -> None:
    code = ("import time\nfor i in range(3000):\n    print(f'line {i:05d} ' + 'x' * 40)\n"
            "print('halfway', flush=True)\ntime.sleep(4)\n"
            "for i in range(3000, 6000):\n    print(f'line {i:05d} ' + 'x' * 40)\n"
            "'the end'")
    job_id = "j-durable000000000001"
    _start_and_kill_bridge(jupyter, job_id, "k9", code, 120,
                           until=lambda st: st.get("total_chars", 0) > 1000)
    assert _status(jupyter, job_id)["state"] == "running"  # the bridge died mid-job
    async with jbridge(jupyter, tmp_path) as (client, _):
        with anyio.fail_after(90):
            done = await client.call_tool("get_job", {"job_id": job_id, "wait": 60})
            assert done.structured_content is not None, text_of(done)
            assert done.structured_content["status"] == "succeeded", text_of(done)
            assert "the end" in text_of(done)
            pages, offset = [], 0
            while True:
                page = await client.call_tool("get_job_output", {
                    "job_id": job_id, "offset": offset, "limit": 100_000})
                assert not page.is_error, text_of(page)
                data = page.structured_content or {}
                pages.append(text_of(page).split("\n", 1)[1])
                offset = data["next_offset"]
                if data["complete"]:
                    break
    whole = "".join(pages)
    lines = [ln for ln in whole.splitlines() if ln.startswith("line ")]
    assert [int(ln.split()[1]) for ln in lines] == list(range(6000))
    assert whole.index("halfway") < whole.index("line 03000")


async def test_a_deadline_is_enforced_with_no_bridge_connected(jupyter: JupyterProc,
                                                               tmp_path: Path) -> None:
    job_id = "j-durable000000000002"
    _start_and_kill_bridge(jupyter, job_id, "dl", "import time\nkeep = 1\ntime.sleep(300)", 1.0,
                           until=lambda st: st.get("state") == "running")
    # No bridge now: the kernel's watchdog interrupts at the deadline (+ its margin).
    _wait_for(lambda: _status(jupyter, job_id).get("state") == "ended", 60, "the watchdog")
    async with jbridge(jupyter, tmp_path) as (client, _):
        with anyio.fail_after(60):
            ended = await client.call_tool("get_job", {"job_id": job_id})
            assert ended.structured_content is not None, text_of(ended)
            after = await client.call_tool("run_code_quick", {"code": "keep + 1",
                                                              "session": "dl"})
    assert ended.structured_content["status"] == "timed_out", text_of(ended)
    assert "KeyboardInterrupt" in text_of(ended)
    assert "2" in text_of(after) and not after.is_error  # an interrupt keeps the variables


async def test_native_code_past_its_deadline_gets_a_fresh_kernel_with_no_bridge(
        jupyter: JupyterProc, tmp_path: Path) -> None:
    job_id = "j-durable000000000003"
    _start_and_kill_bridge(jupyter, job_id, "nat", "keep = 1\nsum(range(10**13))", 1.0,
                           until=lambda st: st.get("state") == "running")
    _wait_for(lambda: _status(jupyter, job_id).get("state") == "ended", 90, "the watchdog")
    async with jbridge(jupyter, tmp_path) as (client, _):
        with anyio.fail_after(90):
            ended = await client.call_tool("get_job", {"job_id": job_id})
            after = await client.call_tool("run_code_quick", {"code": "keep", "session": "nat"})
    assert ended.structured_content is not None, text_of(ended)
    assert ended.structured_content["status"] == "timed_out", text_of(ended)
    assert "restarted" in text_of(ended)
    assert after.is_error and "NameError" in text_of(after), text_of(after)


async def test_cancel_of_an_earlier_bridges_job(jupyter: JupyterProc, tmp_path: Path) -> None:
    job_id = "j-durable000000000004"
    _start_and_kill_bridge(jupyter, job_id, "cx", "import time\ntime.sleep(300)", None,
                           until=lambda st: st.get("state") == "running")
    async with jbridge(jupyter, tmp_path) as (client, _):
        with anyio.fail_after(60):
            # No wait: the job prints nothing and never ends, so a wait would last the whole
            # budget (50 s) for the same answer.
            running = await client.call_tool("get_job", {"job_id": job_id, "wait": 0})
            assert running.structured_content is not None, text_of(running)
            assert running.structured_content["status"] == "running", text_of(running)
            cancelled = await client.call_tool("cancel_job", {"job_id": job_id})
    assert cancelled.structured_content is not None, text_of(cancelled)
    assert cancelled.structured_content["status"] == "cancelled", text_of(cancelled)


async def test_a_kernel_restarted_under_an_attached_job_is_reported(
        jupyter: JupyterProc, tmp_path: Path) -> None:
    import httpx2

    job_id = "j-durable000000000005"
    _start_and_kill_bridge(jupyter, job_id, "rs", "import time\nmark = 1\ntime.sleep(300)", None,
                           until=lambda st: st.get("state") == "running")
    async with jbridge(jupyter, tmp_path) as (client, deps):
        with anyio.fail_after(60):
            backend = (await deps.registry.client("hub"))[1]
            await client.call_tool("get_job", {"job_id": job_id, "wait": 0})  # attach, no wait
            kernel_id = backend._sessions["rs"].kernel_id  # type: ignore[attr-defined]
            async with httpx2.AsyncClient() as http:
                r = await http.post(f"{jupyter.url}/api/kernels/{kernel_id}/restart",
                                    headers={"Authorization": f"token {jupyter.token}"})
                assert r.status_code == 200
            ended = await client.call_tool("get_job", {"job_id": job_id, "wait": 20})
            after = await client.call_tool("run_code_quick", {"code": "mark", "session": "rs"})
    assert ended.structured_content is not None, text_of(ended)
    # The restart interrupts the job first (jupyter_client does), else the job is lost.
    assert ended.structured_content["status"] in ("cancelled", "lost"), text_of(ended)
    assert after.is_error and "NameError" in text_of(after), text_of(after)
    assert "STATE LOST" in text_of(after)


async def test_a_server_that_vanishes_mid_job_is_reported(tmp_path: Path) -> None:
    with start_jupyter(tmp_path / "gone" / "root") as server:
        async with jbridge(server, tmp_path) as (client, _):
            with anyio.fail_after(90):
                started = await client.call_tool("run_code_long", {
                    "code": "import time\nprint('working', flush=True)\ntime.sleep(300)",
                    "background": True, "session": "v", "timeout": 600})
                job_id = (started.structured_content or {})["job_id"]
                # get_job waits for the end or ``wait`` (this job never ends): short reads
                # until the output shows, not one 30 s wait.
                seen = ""
                while "working" not in seen:
                    seen += text_of(await client.call_tool("get_job", {"job_id": job_id,
                                                                       "wait": 1}))
                assert "working" in seen, seen
                server.proc.kill()  # the runtime vanishes (a culled hub server, a dead VM)
                server.proc.wait(10)
                ended = await client.call_tool("get_job", {"job_id": job_id, "wait": 60})
    assert ended.structured_content is not None, text_of(ended)
    assert ended.structured_content["status"] == "lost", text_of(ended)
    # (Output already returned is not repeated in later answers.)
    assert "stopped answering" in text_of(ended) and "output seen until then" in text_of(ended)


async def test_save_and_restore_variables_on_the_jupyter_kind(jupyter: JupyterProc,
                                                              tmp_path: Path) -> None:
    async with jbridge(jupyter, tmp_path) as (client, _):
        with anyio.fail_after(90):
            await client.call_tool("run_code_quick", {"code": "kept = [1, 2, 3]",
                                                      "session": "sv"})
            saved = await client.call_tool("save_colab_variables", {"session": "sv"})
            assert not saved.is_error, text_of(saved)
            await client.call_tool("restart_colab_runtime", {"session": "sv"})
            gone = await client.call_tool("run_code_quick", {"code": "kept", "session": "sv"})
            assert gone.is_error and "NameError" in text_of(gone)
            restored = await client.call_tool("restore_colab_variables", {"session": "sv"})
            assert not restored.is_error, text_of(restored)
            back = await client.call_tool("run_code_quick", {"code": "sum(kept)",
                                                             "session": "sv"})
            missing = await client.call_tool("restore_colab_variables", {
                "session": "sv", "snapshot": "nothing_here"})
    assert "6" in text_of(back) and not back.is_error
    assert (jupyter.root / "smartcolab-persist" / "sv" / "manifest.json").is_file()
    assert missing.is_error and "no snapshot" in text_of(missing)


async def test_directory_download_on_the_jupyter_kind(jupyter: JupyterProc,
                                                      tmp_path: Path) -> None:
    tree = jupyter.root / "results"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("alpha\n")
    (tree / "sub" / "b.bin").write_bytes(os.urandom(50_000))
    (tree / "escape").symlink_to("/etc/passwd")
    async with jbridge(jupyter, tmp_path) as (client, _):
        with anyio.fail_after(60):
            got = await client.call_tool("download_from_colab", {"path": "results"})
            again = await client.call_tool("download_from_colab", {"path": "results"})
            missing = await client.call_tool("download_from_colab", {"path": "nope_dir"})
    assert not got.is_error, text_of(got)
    local = tmp_path / "saved" / "results"
    assert (local / "a.txt").read_text() == "alpha\n"
    assert (local / "sub" / "b.bin").read_bytes() == (tree / "sub" / "b.bin").read_bytes()
    assert not (local / "escape").exists() and "escape" in text_of(got)
    assert again.is_error and "already exists" in text_of(again)
    assert missing.is_error
    assert not list((jupyter.root / "smartcolab-jobs" / "archives").glob("*.tar.gz"))
