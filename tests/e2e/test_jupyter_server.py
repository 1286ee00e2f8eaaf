"""The bridge's tools against a real Jupyter Server (kind "jupyter"), in-process MCP client."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp import Client
from smartcolab.client.jupyter import durable
from smartcolab.client.jupyter import jobs as jupyter_jobs
from smartcolab.client.jupyter import server as jupyter_server
from smartcolab.client.jupyter import session as jupyter_session
from smartcolab.client.registry import RuntimeSpec
from smartcolab.mcp.deps import BridgeDeps, BridgeSettings
from smartcolab.mcp.server import BridgeConfig, build_server, open_bridge
from support.bridge_helpers import FAST_RETRY, text_of
from support.jupyter_helpers import JupyterProc, start_jupyter

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProc]:
    # A JupyterHub single-user server is the same API under /user/NAME/: test that shape.
    with start_jupyter(tmp_path_factory.mktemp("jupyter") / "root",
                       base_url="/user/alice/") as proc:
        yield proc


@asynccontextmanager
async def jbridge(jupyter: JupyterProc, tmp: Path, **settings: Any
                  ) -> AsyncIterator[tuple[Client, BridgeDeps]]:
    config = BridgeConfig(
        settings=BridgeSettings(save_dir=tmp / "saved", checkpoint_dir=tmp / "ckpt", **settings),
        runtimes=[RuntimeSpec("hub", jupyter.url, jupyter.token, kind="jupyter")],
        default_runtime="hub", embedded=False, retry=FAST_RETRY)
    async with open_bridge(config) as deps, Client(build_server(deps)) as client:
        yield client, deps


async def test_run_state_variables_probe(jupyter: JupyterProc, tmp_path: Path) -> None:
    async with jbridge(jupyter, tmp_path) as (client, _):
        with anyio.fail_after(60):
            check = await client.call_tool("check_colab_connection", {})
            assert not check.is_error, text_of(check)
            first = await client.call_tool("run_code_quick", {"code": "x = 21\nprint('hi')\nx * 2"})
            assert not first.is_error, text_of(first)
            assert "hi" in text_of(first) and "42" in text_of(first)
            assert first.structured_content["job_tracking"] == "bridge"
            assert "no job store" in text_of(first)
            again = await client.call_tool("run_code_quick", {"code": "x + 1"})
            assert "22" in text_of(again)  # state persists between calls
            bad = await client.call_tool("run_code_quick", {"code": "print('before')\n1/0"})
            assert bad.is_error and "ZeroDivisionError" in text_of(bad)
            assert "before" in text_of(bad)
            variables = await client.call_tool("list_colab_variables", {})
            assert "x: int" in text_of(variables), text_of(variables)
            probe = await client.call_tool("probe_colab_environment", {})
            assert not probe.is_error, text_of(probe)
            assert probe.structured_content["cpu_count"] >= 1
            cleaned = await client.call_tool("cleanup_colab", {"names": ["x"]})
            assert "deleted: x" in text_of(cleaned)
            gone = await client.call_tool("run_code_quick", {"code": "x"})
            assert gone.is_error and "NameError" in text_of(gone)


async def test_background_job_get_job_and_cancel(jupyter: JupyterProc, tmp_path: Path) -> None:
    async with jbridge(jupyter, tmp_path) as (client, deps):
        with anyio.fail_after(60):
            started = await client.call_tool("run_code_long", {
                "code": "import time\nfor k in range(3):\n    print('step', k, flush=True)\n"
                        "    time.sleep(0.3)\n'done'", "background": True, "session": "bg"})
            job_id = started.structured_content["job_id"]
            assert started.structured_content["status"] in ("queued", "running")
            got = await client.call_tool("get_job", {"job_id": job_id, "wait": 30})
            assert got.structured_content["status"] == "succeeded", text_of(got)
            assert "step 2" in text_of(got) and "done" in text_of(got)
            listed = await client.call_tool("list_jobs", {})
            assert job_id in text_of(listed)
            page = await client.call_tool("get_job_output", {"job_id": job_id})
            assert "step 0" in text_of(page)
            long = await client.call_tool("run_code_long", {
                "code": "import time\ntime.sleep(60)", "background": True, "session": "bg"})
            long_id = long.structured_content["job_id"]
            await client.call_tool("get_job", {"job_id": long_id, "wait": 0.5})
            cancelled = await client.call_tool("cancel_job", {"job_id": long_id})
            assert cancelled.structured_content["status"] == "cancelled", text_of(cancelled)
            after = await client.call_tool("run_code_quick", {"code": "k", "session": "bg"})
            assert "2" in text_of(after)  # an interrupt keeps the variables
            assert deps.journal.get(long_id) is not None


async def test_timeout_interrupts_and_keeps_state(jupyter: JupyterProc, tmp_path: Path) -> None:
    async with jbridge(jupyter, tmp_path) as (client, _):
        with anyio.fail_after(60):
            await client.call_tool("run_code_quick", {"code": "keep = 1", "session": "t"})
            soft = await client.call_tool("run_code_long", {
                "code": "import time\ntime.sleep(30)", "timeout": 1, "session": "t"})
            assert soft.structured_content["status"] == "timed_out", text_of(soft)
            assert "KeyboardInterrupt" in text_of(soft)
            kept = await client.call_tool("run_code_quick", {"code": "keep + 1", "session": "t"})
            assert "2" in text_of(kept) and "STATE LOST" not in text_of(kept)


async def _c_loop_then_next(client: Client, session: str) -> tuple[str, str, float]:
    """A C-level loop (ignores SIGINT) past its timeout, then the next job: texts, its time."""
    await client.call_tool("run_code_quick", {"code": "keep = 1", "session": session})
    stuck = await client.call_tool("run_code_long", {
        "code": "sum(range(10**13))", "timeout": 1, "session": session})
    assert stuck.structured_content["status"] == "timed_out", text_of(stuck)
    assert "restarted" in text_of(stuck)
    started = time.monotonic()
    after = await client.call_tool("run_code_quick", {"code": "keep", "session": session})
    return text_of(stuck), text_of(after), time.monotonic() - started


async def test_a_cell_that_ignores_the_interrupt_gets_a_fresh_kernel(
        jupyter: JupyterProc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jupyter_jobs, "INTERRUPT_GRACE_S", 1.0)
    # Short slices: the first view of the first job comes before its kernel has an epoch.
    async with jbridge(jupyter, tmp_path, progress_interval_s=0.2) as (client, _):
        with anyio.fail_after(90):
            stuck, after, took = await _c_loop_then_next(client, "c")
    assert "STATE LOST" in stuck + after
    assert "NameError" in after and took < 15, (after, took)


async def test_an_old_kernel_that_survives_its_restart_is_replaced(
        jupyter: JupyterProc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jupyter_jobs, "INTERRUPT_GRACE_S", 1.0)
    monkeypatch.setattr(jupyter_session, "RESTART_VERIFY_S", 2.0)
    # The kernel's own watchdog would kill the GIL-holding loop 2 s after the bridge's
    # grace, the very moment the bridge finds the old kernel still there: Jupyter then
    # restarts it under the same kernel id, and the replacement raced that restart (one
    # fresh-clone run in eight). Here the bridge's replacement is what is tested.
    monkeypatch.setattr(durable, "WATCHDOG_MARGIN_S", 120.0)
    async with jbridge(jupyter, tmp_path) as (client, deps):
        backend = (await deps.registry.client("hub"))[1]
        assert isinstance(backend, jupyter_server.JupyterBackend)
        real_call = backend.rest.call

        async def restart_that_leaves_the_old_process(method: str, path: str,
                                                      **kw: Any) -> Any:
            # Stands in for the server-side failure: the restart returns, the old
            # process (still in the C loop) keeps the kernel.
            return {} if path.endswith("/restart") else await real_call(method, path, **kw)

        monkeypatch.setattr(backend.rest, "call", restart_that_leaves_the_old_process)
        with anyio.fail_after(90):
            await client.call_tool("run_code_quick", {"code": "0", "session": "s"})
            old_kernel = backend._sessions["s"].kernel_id
            stuck, after, took = await _c_loop_then_next(client, "s")
            new_kernel = backend._sessions["s"].kernel_id
    assert "STATE LOST" in stuck + after
    assert "NameError" in after and took < 15, (after, took)
    assert new_kernel != old_kernel


async def test_a_restart_by_someone_else_is_reported(jupyter: JupyterProc,
                                                     tmp_path: Path) -> None:
    import httpx2

    async with jbridge(jupyter, tmp_path) as (client, deps):
        with anyio.fail_after(60):
            await client.call_tool("run_code_quick", {"code": "a = 1", "session": "ext"})
            backend = (await deps.registry.client("hub"))[1]
            kernel_id = backend._sessions["ext"].kernel_id  # type: ignore[attr-defined]
            async with httpx2.AsyncClient() as http:  # e.g. JupyterLab's restart button
                r = await http.post(f"{jupyter.url}/api/kernels/{kernel_id}/restart",
                                    headers={"Authorization": f"token {jupyter.token}"})
                assert r.status_code == 200
            after = await client.call_tool("run_code_quick", {"code": "a", "session": "ext"})
    assert after.is_error and "NameError" in text_of(after), text_of(after)
    assert "STATE LOST" in text_of(after)


async def test_kernel_death_fails_the_job_as_on_the_runtime(jupyter: JupyterProc,
                                                             tmp_path: Path) -> None:
    # The same status as tests/runtime/test_jobs_limits.py: failed, KernelDied, state lost.
    async with jbridge(jupyter, tmp_path) as (client, _):
        with anyio.fail_after(60):
            await client.call_tool("run_code_quick", {"code": "d = 1", "session": "die"})
            died = await client.call_tool("run_code_quick", {
                "code": "import os\nprint('about to die', flush=True)\nos._exit(1)",
                "session": "die"})
            after = await client.call_tool("run_code_quick", {"code": "d", "session": "die"})
    assert died.structured_content["status"] == "failed", text_of(died)
    assert "KernelDied" in text_of(died) and "are gone" in text_of(died)
    assert after.is_error and "NameError" in text_of(after)


async def test_a_restart_by_someone_else_during_a_job_ends_it(jupyter: JupyterProc,
                                                              tmp_path: Path) -> None:
    import httpx2

    async with jbridge(jupyter, tmp_path) as (client, deps):
        with anyio.fail_after(60):
            started = await client.call_tool("run_code_long", {
                "code": "import time\nprint('started', flush=True)\ntime.sleep(300)",
                "background": True, "session": "ext2", "timeout": 600})
            job_id = started.structured_content["job_id"]
            # get_job waits for the end or ``wait`` (this job never ends): short reads until
            # the output shows, not one 30 s wait.
            seen = ""
            while "started" not in seen:
                seen += text_of(await client.call_tool("get_job", {"job_id": job_id,
                                                                   "wait": 1}))
            assert "started" in seen, seen
            backend = (await deps.registry.client("hub"))[1]
            kernel_id = backend._sessions["ext2"].kernel_id  # type: ignore[attr-defined]
            async with httpx2.AsyncClient() as http:
                r = await http.post(f"{jupyter.url}/api/kernels/{kernel_id}/restart",
                                    headers={"Authorization": f"token {jupyter.token}"})
                assert r.status_code == 200
            ended = await client.call_tool("get_job", {"job_id": job_id, "wait": 30})
    assert ended.structured_content["status"] == "cancelled", text_of(ended)
    assert "session was restarted" in text_of(ended)


async def test_files_up_and_down(jupyter: JupyterProc, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from smartcolab.client.jupyter import files as jupyter_files

    monkeypatch.setattr(jupyter_files, "UPLOAD_CHUNK", 64 * 1024)  # several chunks
    async with jbridge(jupyter, tmp_path) as (client, _):
        saved = tmp_path / "saved"
        saved.mkdir(parents=True, exist_ok=True)
        data = os.urandom(300_000)
        (saved / "blob.bin").write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        with anyio.fail_after(60):
            up = await client.call_tool("upload_to_colab", {"local_path": "blob.bin",
                                                            "remote_path": "data/blob.bin"})
            assert not up.is_error, text_of(up)
            assert up.structured_content["sha256"] == digest
            assert (jupyter.root / "data" / "blob.bin").read_bytes() == data
            assert not list((jupyter.root / "data").glob("*part"))
            again = await client.call_tool("upload_to_colab", {"local_path": "blob.bin",
                                                               "remote_path": "data/blob.bin"})
            assert again.is_error and "file_exists" in text_of(again)
            listed = await client.call_tool("list_colab_files", {"path": "data"})
            assert "blob.bin" in text_of(listed)
            (jupyter.root / "data" / "made.txt").write_text("made remotely\n")
            down = await client.call_tool("download_from_colab", {"path": "data/made.txt"})
            assert not down.is_error, text_of(down)
            assert (saved / "made.txt").read_text() == "made remotely\n"
            big = await client.call_tool("download_from_colab", {"path": "data/blob.bin",
                                                                 "local_name": "copy.bin"})
            assert big.structured_content["sha256"] == digest
            assert (saved / "copy.bin").read_bytes() == data
            folder = await client.call_tool("download_from_colab", {"path": "data"})
            assert not folder.is_error, text_of(folder)  # packed in the kernel, then fetched
            assert (saved / "data" / "blob.bin").read_bytes() == data
            missing = await client.call_tool("download_from_colab", {"path": "nope.txt"})
            assert missing.is_error and "file_not_found" in text_of(missing)


async def test_connect_runtime_with_kind_jupyter(jupyter: JupyterProc, tmp_path: Path) -> None:
    async with jbridge(jupyter, tmp_path) as (client, deps):
        with anyio.fail_after(30):
            result = await client.call_tool("connect_runtime", {
                "name": "lab", "url": jupyter.url, "secret": jupyter.token, "kind": "jupyter",
                "secret_in_transcript": True, "make_default": False})
            assert not result.is_error, text_of(result)
            ran = await client.call_tool("run_code_quick", {"code": "6 * 7", "runtime": "lab"})
    assert deps.registry.spec("lab").kind == "jupyter"
    assert "42" in text_of(ran)


async def test_wrong_token_is_refused_clearly(jupyter: JupyterProc, tmp_path: Path) -> None:
    wrong = JupyterProc(jupyter.url, "not-the-token", jupyter.root, jupyter.proc)
    async with jbridge(wrong, tmp_path) as (client, _):
        with anyio.fail_after(30):
            result = await client.call_tool("check_colab_connection", {})
    assert result.is_error and "token" in text_of(result)


async def test_a_new_bridge_finds_the_session_again(jupyter: JupyterProc, tmp_path: Path) -> None:
    async with jbridge(jupyter, tmp_path / "one") as (client, _):
        with anyio.fail_after(30):
            await client.call_tool("run_code_quick", {"code": "kept = 'yes'", "session": "re"})
    async with jbridge(jupyter, tmp_path / "two") as (client, _):
        with anyio.fail_after(30):
            again = await client.call_tool("run_code_quick", {"code": "kept", "session": "re"})
            gone = await client.call_tool("get_job", {"job_id": "j-00000000000000000000"})
    assert "yes" in text_of(again)
    assert gone.is_error and "no record of it" in text_of(gone)


def test_runtimes_file_kind_jupyter(tmp_path: Path) -> None:
    from smartcolab.client.registry import env_runtimes, load_runtimes_file
    from smartcolab.shared.errors import InvalidInput

    path = tmp_path / "runtimes.toml"
    path.write_text('[runtimes.hub]\nkind = "jupyter"\nurl = "https://h.example/user/al/"\n'
                    'token_env = "HUB_TOKEN"\nkernel = "py311"\n')
    (spec,), _ = load_runtimes_file(path, {"HUB_TOKEN": "tok"})
    assert (spec.kind, spec.url, spec.secret, spec.kernel_name) == (
        "jupyter", "https://h.example/user/al", "tok", "py311")
    assert spec.public()["kind"] == "jupyter" and "tok" not in str(spec.public())
    path.write_text('[runtimes.x]\nkind = "spark"\nurl = "https://x"\n')
    with pytest.raises(InvalidInput, match="kind"):
        load_runtimes_file(path, {})
    (env_spec,) = env_runtimes({"JUPYTER_URL": "http://127.0.0.1:8888", "JUPYTER_TOKEN": "t"})
    assert (env_spec.name, env_spec.kind) == ("jupyter", "jupyter")
