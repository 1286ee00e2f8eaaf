"""Saving variables to a persistent directory and restoring them into a fresh kernel."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from smartcolab.client.http.client import RuntimeClient
from smartcolab.shared.errors import InvalidInput, NotFound
from smartcolab.shared.protocol import TERMINAL_STATUSES, JobSubmit, RestoreRequest, SaveRequest
from support.runtime_proc import RuntimeProc, start_runtime

pytestmark = pytest.mark.anyio

SETUP = """
import threading
a = 41
b = {"k": [1, 2]}
text = "héllo"
gen = (i for i in range(3))
lock = threading.Lock()
def f(x):
    return x + 1
class Point:
    pass
p = Point()
"""


async def run(client: RuntimeClient, code: str) -> str:
    """Run code in the main session and return its stdout; fail on anything but success."""
    with anyio.fail_after(60):
        view = await client.submit(JobSubmit(job_id=f"t-{secrets.token_hex(6)}", code=code),
                                   wait=30)
        while view.status not in TERMINAL_STATUSES:
            view = await client.get_job(view.job_id, wait=30)
    assert view.status == "succeeded", view
    assert view.result is not None
    return view.result.stdout.text


@pytest.fixture
def persist_runtime(tmp_path: Path) -> Iterator[RuntimeProc]:
    proc = start_runtime(tmp_path / "root", "--persist-dir", str(tmp_path / "saved"))
    try:
        yield proc
    finally:
        proc.kill()


@pytest.fixture
async def client(persist_runtime: RuntimeProc) -> AsyncIterator[RuntimeClient]:
    async with RuntimeClient(persist_runtime.url, persist_runtime.secret) as c:
        yield c


async def test_save_restart_restore(client: RuntimeClient, tmp_path: Path) -> None:
    await run(client, SETUP)
    with anyio.fail_after(60):
        manifest = await client.save_variables("main")
    saved = {v.name for v in manifest.variables}
    failed = {v.name: v.error for v in manifest.failed}
    assert {"a", "b", "text", "p"} <= saved
    assert "gen" in failed and "pickle" in failed["gen"] and "generator" in failed["gen"]
    assert "lock" in failed and "lock" in failed["lock"]
    assert "f" in {v.name for v in manifest.skipped} | saved
    assert manifest.snapshot == "main" and manifest.total_bytes > 0

    on_disk = tmp_path / "saved" / "main"
    assert json.loads((on_disk / "manifest.json").read_text())["variables"] == \
        [v.model_dump() for v in manifest.variables]
    assert not [p.name for p in (tmp_path / "saved").iterdir() if p.name.startswith(".")]
    listed = await client.snapshots()
    assert [m.snapshot for m in listed.snapshots] == ["main"]

    before = (await client.sessions()).sessions[0].epoch
    with anyio.fail_after(60):
        await client.restart_session("main")
    after = (await client.sessions()).sessions[0].epoch
    assert after != before
    assert (await run(client, "print('a' in dir())")).strip() == "False"

    with anyio.fail_after(60):
        report = await client.restore_variables("main")
    assert {"a", "b", "text"} <= set(report.restored)
    assert report.saved_epoch == before and report.epoch == after
    # Point's class was defined in the old kernel: plain pickle cannot rebuild it, and says so.
    problems = {v.name: v.error for v in report.failed}
    if "p" not in report.restored:
        assert "Point" in problems["p"]
    assert (await run(client, "print(a + 1, b['k'], text)")).strip() == "42 [1, 2] héllo"


async def test_named_save_replaces_the_snapshot_and_reports_missing(
        client: RuntimeClient, tmp_path: Path) -> None:
    await run(client, "x = 1\ny = 2")
    first = await client.save_variables("main", SaveRequest(names=["x", "y"], snapshot="pair"))
    assert [v.name for v in first.variables] == ["x", "y"]
    await run(client, "x = 10")
    second = await client.save_variables("main", SaveRequest(names=["x", "nope"], snapshot="pair"))
    assert [v.name for v in second.variables] == ["x"]
    assert [(v.name, v.error) for v in second.failed] == [
        ("nope", "no such variable in this session")]
    assert sorted(p.name for p in (tmp_path / "saved" / "pair").iterdir()) == \
        ["manifest.json", "x.pkl"]
    await run(client, "del x")
    report = await client.restore_variables("main", RestoreRequest(snapshot="pair",
                                                                   names=["x", "y"]))
    assert report.restored == ["x"]
    assert [(v.name, v.error) for v in report.failed] == [("y", "not in this snapshot")]
    assert (await run(client, "print(x)")).strip() == "10"


async def test_bad_input_and_unknown_snapshot(client: RuntimeClient) -> None:
    with pytest.raises(InvalidInput, match="not Python variable names"):
        await client.save_variables("main", SaveRequest(names=["ok", "not a name"]))
    with pytest.raises(NotFound, match="no saved snapshot 'ghost'"):
        await client.restore_variables("main", RestoreRequest(snapshot="ghost"))
    with pytest.raises(InvalidInput):
        await client.save_variables("main", SaveRequest.model_construct(
            names=[], snapshot="../escape"))


async def test_autosave_after_a_long_enough_job(tmp_path: Path) -> None:
    proc = start_runtime(tmp_path / "root", "--persist-dir", str(tmp_path / "saved"),
                         "--autosave-after", "0")
    try:
        async with RuntimeClient(proc.url, proc.secret) as client:
            await run(client, "trained = [0.5, 0.25]")
            deadline = time.monotonic() + 30
            while True:
                names = [m.snapshot for m in (await client.snapshots()).snapshots]
                if "autosave-main" in names or time.monotonic() > deadline:
                    break
                await anyio.sleep(0.1)
            assert names == ["autosave-main"]
            manifest = (await client.snapshots()).snapshots[0]
            assert [v.name for v in manifest.variables] == ["trained"]
    finally:
        proc.kill()


async def test_mcp_tools_save_and_restore(persist_runtime: RuntimeProc, tmp_path: Path) -> None:
    from support.bridge_helpers import bridge, make_config, text_of

    async with bridge(make_config(tmp_path / "bridge", persist_runtime)) as (mcp, _):
        with anyio.fail_after(90):
            ran = await mcp.call_tool("run_code_quick", {"code": "w = [1, 2, 3]\ng = iter(w)\n"
                                                                  "h = (x for x in w)"})
            assert not ran.is_error, text_of(ran)
            saved = await mcp.call_tool("save_colab_variables", {"snapshot": "mcp"})
            assert not saved.is_error, text_of(saved)
            assert "w (list" in text_of(saved)
            assert "not saved:" in text_of(saved) and "- h (generator)" in text_of(saved)
            restarted = await mcp.call_tool("restart_colab_runtime", {})
            assert not restarted.is_error, text_of(restarted)
            restored = await mcp.call_tool("restore_colab_variables",
                                           {"snapshot": "mcp", "names": ["w"]})
            assert not restored.is_error, text_of(restored)
            assert restored.structured_content is not None
            assert restored.structured_content["restored"] == ["w"]
            printed = await mcp.call_tool("run_code_quick", {"code": "print(sum(w))"})
            assert "6" in text_of(printed)
            missing = await mcp.call_tool("restore_colab_variables", {"snapshot": "nothing"})
            assert missing.is_error and "no saved snapshot 'nothing'" in text_of(missing)
