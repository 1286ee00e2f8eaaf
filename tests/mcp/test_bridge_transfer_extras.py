"""Transfer progress through the bridge, a cancelled threaded download, the default runtimes file."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import anyio
import pytest

from mcp import Client, StdioServerParameters
from smartcolab.cli.app import mcp_runtimes_file
from smartcolab.client.http import transfer
from smartcolab.client.http.client import RuntimeClient
from smartcolab.client.transfer import resumable as transfer_recv
from support.bridge_helpers import bridge, make_config, text_of
from support.runtime_proc import RuntimeProc, subprocess_env

pytestmark = pytest.mark.anyio
MB = 1024 * 1024


def _progress_log() -> tuple[list[tuple[float, float | None, str | None]], object]:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    return seen, on_progress


async def test_file_tools_report_progress(runtime: RuntimeProc, tmp_path: Path) -> None:
    data = os.urandom(3 * MB)
    (runtime.root / "progress_src.bin").write_bytes(data)
    down, on_down = _progress_log()
    up, on_up = _progress_log()
    async with bridge(make_config(tmp_path, runtime)) as (client, _):
        with anyio.fail_after(60):
            got = await client.call_tool("download_from_colab", {"path": "progress_src.bin"},
                                         progress_callback=on_down)  # type: ignore[arg-type]
            sent = await client.call_tool(
                "upload_to_colab", {"local_path": "progress_src.bin",
                                    "remote_path": "progress_back.bin", "overwrite": True},
                progress_callback=on_up)  # type: ignore[arg-type]
    assert not got.is_error and not sent.is_error, text_of(got) + text_of(sent)
    assert (runtime.root / "progress_back.bin").read_bytes() == data
    for seen, verb in ((down, "downloaded"), (up, "uploaded")):
        assert seen, f"no progress notification for the {verb} file"
        assert seen[-1][:2] == (len(data), len(data))
        assert seen[-1][2] is not None and seen[-1][2].startswith(f"{verb} 3.0 of 3.0 MB")
        values = [p for p, _, _ in seen]
        assert values == sorted(set(values))  # strictly increasing, as MCP requires


async def test_progress_is_throttled(runtime: RuntimeProc, tmp_path: Path) -> None:
    from smartcolab.mcp.tools.files import mcp_progress

    class Ctx:
        def __init__(self) -> None:
            self.sent: list[tuple[float, float | None]] = []

        async def report_progress(self, progress: float, total: float | None = None,
                                  message: str | None = None) -> None:
            self.sent.append((progress, total))

    ctx = Ctx()
    report = mcp_progress(ctx, "downloaded", every_s=10.0)  # type: ignore[arg-type]
    for done in (1, 2, 3, 2, 5):
        await report(done, 5)
    assert ctx.sent == [(1, 5), (5, 5)]  # the first, then only the last within 10 s


async def test_cancelled_download_stops_its_thread_and_resumes(
        runtime: RuntimeProc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(48 * MB)
    (runtime.root / "cancel_me.bin").write_bytes(data)
    monkeypatch.setattr(transfer_recv, "PROGRESS_EVERY_S", 0.0005)
    async with RuntimeClient(runtime.url, runtime.secret) as client:
        with anyio.fail_after(60):
            with anyio.CancelScope() as scope:
                def cancel_early(done: int, total: int | None) -> None:
                    if 0 < done < len(data):
                        scope.cancel()

                # One stream: its .part grows as it receives (parallel spans: test_parallel_download)
                await transfer.download(client, "cancel_me.bin", tmp_path, progress=cancel_early,
                                        streams=1)
            part = tmp_path / "cancel_me.bin.part"
            assert scope.cancelled_caught and not (tmp_path / "cancel_me.bin").exists()
            assert 0 < part.stat().st_size < len(data)
            size = part.stat().st_size  # the thread was waited for before the cancel went on
            await anyio.sleep(0.3)
            assert part.stat().st_size == size, "the receive thread kept writing after cancel"
            again = await transfer.download(client, "cancel_me.bin", tmp_path)
    assert again.resumed_from > 0
    assert again.sha256 == hashlib.sha256(data).hexdigest()
    assert again.path.read_bytes() == data


def test_mcp_runtimes_file_resolution(tmp_path: Path) -> None:
    explicit = tmp_path / "given.toml"
    assert mcp_runtimes_file(explicit, {}) == explicit  # must exist: the loader says if not
    named = tmp_path / "named.toml"
    assert mcp_runtimes_file(None, {"SMARTCOLAB_RUNTIMES": str(named)}) is None
    named.write_text("")
    assert mcp_runtimes_file(None, {"SMARTCOLAB_RUNTIMES": str(named)}) == named


async def test_mcp_reads_the_runtimes_file_that_runtimes_add_writes(
        runtime: RuntimeProc, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = subprocess_env({"HOME": str(home), "CHECKPOINT_DIR": str(tmp_path / "ckpt"),
                          "VM_TOKEN": runtime.secret})
    for name in ("COLAB_URL", "COLAB_TOKEN", "SMARTCOLAB_RUNTIMES"):
        env.pop(name, None)
    added = await anyio.run_process(
        [sys.executable, "-m", "smartcolab", "runtimes", "add", "vm", runtime.url,
         "--secret-env", "VM_TOKEN", "--default"], env=env, check=False)
    assert added.returncode == 0, added.stderr.decode()
    assert (home / ".smartcolab" / "runtimes.toml").is_file()
    params = StdioServerParameters(command=sys.executable, env=env, cwd=str(tmp_path),
                                   args=["-m", "smartcolab", "mcp", "--log-level", "WARNING"])
    with anyio.fail_after(60):
        async with Client(params) as client:
            listed = await client.call_tool("list_runtimes", {})
            ran = await client.call_tool("run_code_quick", {"code": "print(6 * 7)"})
    assert listed.structured_content is not None, text_of(listed)
    assert listed.structured_content["default"] == "vm", text_of(listed)
    assert not ran.is_error and "42" in text_of(ran)


def test_start_writeback_keeps_the_bytes(tmp_path: Path) -> None:
    data = os.urandom(3 * MB)
    with open(tmp_path / "w.bin", "wb") as f:
        f.write(data[:2 * MB])
        assert transfer_recv._start_writeback(f, 0, 2 * MB) == 2 * MB
        f.write(data[2 * MB:])
    assert (tmp_path / "w.bin").read_bytes() == data
