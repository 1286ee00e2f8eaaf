"""The MCP tools in process against a fake backend registered through the registry's factories.

No runtime process: the fake (tests/support/fake_backend.py) makes the follow, budget,
cancel and capability paths cheap to reach.  The server owns its lifetime here, as in
``smartcolab mcp``: ``build_server(config)`` opens the bridge in its lifespan.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.types import CallToolResult

from mcp import Client
from smartcolab.client.backend import Capability
from smartcolab.client.registry import RuntimeSpec
from smartcolab.mcp.chunked.checkpoints import CheckpointStore
from smartcolab.mcp.deps import BridgeSettings
from smartcolab.mcp.server import BridgeConfig, build_server
from support.bridge_helpers import text_of
from support.fake_backend import FakeBackend

pytestmark = pytest.mark.anyio


def config(tmp: Path, backend: FakeBackend) -> BridgeConfig:
    return BridgeConfig(
        settings=BridgeSettings(save_dir=tmp / "saved", checkpoint_dir=tmp / "ckpt",
                                wait_budget_s=0.5, progress_interval_s=0.1),
        runtimes=[RuntimeSpec("fake", "http://fake.invalid", kind="fake")],
        default_runtime="fake", embedded=False,
        factories={"fake": backend.factory()})


async def call(client: Client, tool: str, args: dict[str, Any]) -> CallToolResult:
    with anyio.fail_after(20):
        return await client.call_tool(tool, args)


async def test_quick_code_runs_and_the_session_is_made_on_first_use(tmp_path: Path) -> None:
    backend = FakeBackend()
    async with Client(build_server(config(tmp_path, backend))) as client:
        result = await call(client, "run_code_quick", {"code": "print:hello", "session": "s2"})
        assert not result.is_error
        assert "hello" in text_of(result)
        assert result.structured_content is not None
        assert result.structured_content["status"] == "succeeded"
        assert result.structured_content["job_tracking"] == "runtime"
        assert backend.calls[0] == ("create_session", "s2")
    assert backend.closed  # the lifespan closed the registry and its backends


async def test_a_kind_without_a_job_store_says_the_bridge_tracks_its_jobs(tmp_path: Path) -> None:
    backend = FakeBackend(capabilities=frozenset())
    async with Client(build_server(config(tmp_path, backend))) as client:
        result = await call(client, "run_code_quick", {"code": "print:hi"})
        assert result.structured_content is not None
        assert result.structured_content["job_tracking"] == "bridge"


async def test_a_running_job_is_handed_over_then_followed_and_cancelled(tmp_path: Path) -> None:
    backend = FakeBackend()
    async with Client(build_server(config(tmp_path, backend))) as client:
        started = await call(client, "run_code_long", {"code": "hang"})
        assert started.structured_content is not None
        assert started.structured_content["status"] == "running"
        job_id = started.structured_content["job_id"]
        again = await call(client, "get_job", {"job_id": job_id, "wait": 0})
        assert again.structured_content is not None
        assert again.structured_content["status"] == "running"
        assert ("cancel", job_id) not in backend.calls  # waiting never stops the job
        stopped = await call(client, "cancel_job", {"job_id": job_id})
        assert stopped.structured_content is not None
        assert stopped.structured_content["status"] == "cancelled"
        listed = await call(client, "list_jobs", {})
        assert job_id in text_of(listed)


async def test_cancelling_the_tool_call_cancels_the_job(tmp_path: Path) -> None:
    backend = FakeBackend()
    cfg = config(tmp_path, backend)
    cfg = replace(cfg, settings=replace(cfg.settings, wait_budget_s=30))  # the call waits
    async with Client(build_server(cfg)) as client:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.call_tool, "run_code_quick", {"code": "hang"})
                await backend.submitted.wait()  # the job reached the runtime
                tg.cancel_scope.cancel()
            (job_id,) = backend.jobs
            await backend.jobs[job_id].changed.wait()
        assert backend.jobs[job_id].status == "cancelled"
        assert ("cancel", job_id) in backend.calls


@pytest.mark.parametrize(("tool", "args", "says"), [
    ("save_colab_variables", {}, "cannot keep variable snapshots; save with code instead"),
    ("restore_colab_variables", {}, "cannot keep variable snapshots; save with code instead"),
    ("list_colab_files", {}, "cannot move files; read and write files with code instead"),
    ("download_from_colab", {"path": "x.csv"}, "cannot move files"),
])
async def test_a_missing_capability_is_refused_with_what_to_do(
        tmp_path: Path, tool: str, args: dict[str, Any], says: str) -> None:
    backend = FakeBackend()
    async with Client(build_server(config(tmp_path, backend))) as client:
        result = await call(client, tool, args)
    assert result.is_error
    text = text_of(result)
    assert f"Error executing tool {tool}: unsupported: runtime 'fake' is a fake runtime, which " \
        in text
    assert says in text
    assert "What to do:" in text


async def test_declared_capabilities_are_asked_not_types(tmp_path: Path) -> None:
    backend = FakeBackend(capabilities=frozenset({Capability.FILES}))
    assert backend.supports(Capability.FILES)
    assert not backend.supports(Capability.ARCHIVES)
    assert backend.job_tracking == "bridge"
    with pytest.raises(Exception, match="cannot send a directory as one archive"):
        backend.require(Capability.ARCHIVES)


async def test_closing_the_server_stops_a_background_chunked_operation(tmp_path: Path) -> None:
    backend = FakeBackend()
    async with Client(build_server(config(tmp_path, backend))) as client:
        result = await call(client, "run_chunked_operation", {
            "loop_code": "x = i", "n_iterations": 10, "checkpoint_name": "bg", "wait": 0})
        assert result.structured_content is not None
        assert result.structured_content["status"] == "running"
        with anyio.fail_after(20):
            await backend.submitted.wait()  # its first batch reached the runtime
    # The lifespan stopped the operation: its batch was cancelled and the checkpoint paused.
    (job_id,) = backend.jobs
    assert backend.jobs[job_id].status == "cancelled"
    store = CheckpointStore(tmp_path / "ckpt")
    try:
        assert store.require("bg").status == "paused"
    finally:
        store.close()


# What a model sees of each tool: name and its effective (read-only, destructive,
# idempotent, open-world) hints, in order (a hint left out is MCP's default: false,
# true, false, true; destructive means nothing on a read-only tool). No titles: they only
# restated the names. A change here is a change of the tools' contract.
TOOL_SURFACE = [
    ("check_colab_connection", (1, 0, 1, 1)),
    ("probe_colab_environment", (1, 0, 1, 1)),
    ("list_colab_variables", (1, 0, 1, 1)),
    ("cleanup_colab", (0, 1, 0, 1)),
    ("restart_colab_runtime", (0, 1, 0, 1)),
    ("list_runtimes", (1, 0, 1, 0)),
    ("connect_runtime", (0, 0, 1, 1)),
    ("release_runtime", (0, 1, 1, 1)),
    ("run_code_quick", (0, 1, 0, 1)),
    ("run_code_long", (0, 1, 0, 1)),
    ("get_job", (1, 0, 1, 1)),
    ("cancel_job", (0, 1, 1, 1)),
    ("list_jobs", (1, 0, 1, 1)),
    ("get_job_output", (1, 0, 1, 1)),
    ("list_colab_files", (1, 0, 1, 1)),
    ("download_from_colab", (0, 0, 1, 1)),
    ("upload_to_colab", (0, 1, 1, 1)),
    ("run_chunked_operation", (0, 1, 0, 1)),
    ("get_checkpoint", (1, 0, 1, 0)),
    ("list_checkpoints", (1, 0, 1, 0)),
    ("delete_checkpoint", (0, 1, 1, 0)),
    ("save_colab_variables", (0, 0, 1, 1)),
    ("restore_colab_variables", (0, 1, 1, 1)),
    ("notebook_read_cells", (1, 0, 1, 1)),
    ("notebook_write_cell", (0, 1, 0, 1)),
]


async def test_the_tools_a_model_sees(tmp_path: Path) -> None:
    cfg = config(tmp_path, FakeBackend())
    cfg = replace(cfg, settings=replace(cfg.settings, long_timeout_s=777.0))
    async with Client(build_server(cfg)) as client:
        tools = (await client.list_tools()).tools
    surface = []
    for t in tools:
        a = t.annotations
        assert a is not None
        assert a.read_only_hint is not None and t.title is None
        read_only = a.read_only_hint
        destructive = not read_only and a.destructive_hint is not False
        hints = (read_only, destructive, a.idempotent_hint is True, a.open_world_hint is not False)
        surface.append((t.name, tuple(int(h) for h in hints)))
        assert t.description and "ctx" not in t.input_schema["properties"]
    assert surface == TOOL_SURFACE
    long = next(t for t in tools if t.name == "run_code_long")
    assert long.input_schema["properties"]["timeout"]["default"] == 777.0  # the setting
