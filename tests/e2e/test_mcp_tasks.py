"""MCP tasks end to end: the real bridge (stdio subprocess), a real runtime, the official client.

The jobs wait for a gate file the test creates, so "still working" and "finished" are
decided by the test, not by timing.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Literal

import anyio
import mcp.types as types
import pytest
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.shared.exceptions import MCPError
from pydantic import TypeAdapter

from mcp import Client, StdioServerParameters
from support.bridge_helpers import stdio_params, text_of
from support.runtime_proc import RuntimeProc

pytestmark = pytest.mark.anyio

ANY = TypeAdapter(dict[str, Any])


class Raw(types.Request):  # type: ignore[type-arg]
    """A request the SDK has no model for (tasks/* on 2025-11-25, tools/call with ``task``)."""

    params: dict[str, Any] | None = None


async def raw(client: Client, method: str, params: dict[str, Any]) -> dict[str, Any]:
    if method == "tools/call":
        # The SDK client checks a tools/call answer against CallToolResult; a
        # CreateTaskResult is the right answer to one with ``task``: send it bare.
        return await client.session._dispatcher.send_raw_request(method, params, {})
    return await client.session.send_request(Raw(method=method, params=params), ANY)


def gated(gate: Path, text: str) -> str:
    return (f"import os, time\nwhile not os.path.exists({str(gate)!r}):\n    time.sleep(0.05)\n"
            f"print({text!r})")


def legacy(params: StdioServerParameters, name: str = "tasks-test") -> Client:
    return Client(params, mode="legacy", client_info=types.Implementation(name=name, version="1"))


async def poll_until(client: Client, task_id: str, statuses: set[str]) -> dict[str, Any]:
    with anyio.fail_after(60):
        while True:
            task = await raw(client, "tasks/get", {"taskId": task_id})
            if task["status"] in statuses:
                return task
            await anyio.sleep(0.2)


async def test_legacy_tasks_create_poll_restart_result_cancel(runtime: RuntimeProc,
                                                              tmp_path: Path) -> None:
    params = stdio_params(tmp_path, runtime)
    gate, never = tmp_path / "gate", tmp_path / "never"
    with anyio.fail_after(120):
        async with legacy(params) as client:
            caps = client.server_capabilities.model_dump(by_alias=True, exclude_none=True)
            assert caps["tasks"]["requests"] == {"tools": {"call": {}}}
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert tools["run_code_long"].execution is not None
            assert tools["run_code_long"].execution.task_support == "optional"
            assert tools["run_code_quick"].execution is None
            created = await raw(client, "tools/call", {
                "name": "run_code_long", "arguments": {"code": gated(gate, "finished 42")},
                "task": {"ttl": 600_000}})
            task = created["task"]
            assert task["status"] == "working" and task["ttl"] == 600_000
            job_id = task["taskId"]
            assert (await raw(client, "tasks/get", {"taskId": job_id}))["status"] == "working"
            # Another client (name) does not see it.
            async with legacy(params, "someone-else") as other:
                with pytest.raises(MCPError) as err:
                    await raw(other, "tasks/get", {"taskId": job_id})
                assert err.value.error.code == types.INVALID_PARAMS
                assert (await raw(other, "tasks/list", {}))["tasks"] == []
        # The bridge has exited; the job runs on. A new bridge finds the task.
        async with legacy(params) as client:
            listed = await raw(client, "tasks/list", {})
            assert [t["taskId"] for t in listed["tasks"]] == [job_id]
            assert listed["tasks"][0]["status"] == "working"
            gate.write_text("go")
            result = await raw(client, "tasks/result", {"taskId": job_id})
            assert not result.get("isError"), result
            assert "finished 42" in json.dumps(result["content"])
            assert result["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": job_id}
            assert (await raw(client, "tasks/get", {"taskId": job_id}))["status"] == "completed"
            # Cancel: the task and the job.
            created = await raw(client, "tools/call", {
                "name": "run_code_long", "arguments": {"code": gated(never, "never")},
                "task": {}})
            other_id = created["task"]["taskId"]
            await poll_until(client, other_id, {"working"})
            cancelled = await raw(client, "tasks/cancel", {"taskId": other_id})
            assert cancelled["status"] == "cancelled"
            with pytest.raises(MCPError):  # already over
                await raw(client, "tasks/cancel", {"taskId": other_id})
            job = await client.call_tool("get_job", {"job_id": other_id, "wait": 0})
            assert job.structured_content is not None
            assert job.structured_content["status"] == "cancelled", text_of(job)


async def test_a_download_task_and_the_ttl(runtime: RuntimeProc, tmp_path: Path) -> None:
    with anyio.fail_after(90):
        async with legacy(stdio_params(tmp_path, runtime)) as client:
            await client.call_tool("run_code_quick", {
                "code": "open('task-download.txt', 'w').write('fetched by a task')"})
            created = await raw(client, "tools/call", {
                "name": "download_from_colab", "arguments": {"path": "task-download.txt"},
                "task": {"ttl": 60_000}})
            task_id = created["task"]["taskId"]
            assert task_id.startswith("task-")
            result = await raw(client, "tasks/result", {"taskId": task_id})
            assert not result.get("isError"), result
            [link] = [c for c in result["content"] if c["type"] == "resource_link"]
            read = await client.read_resource(link["uri"])
            assert isinstance(read.contents[0], types.BlobResourceContents)
            assert b"fetched by a task" in base64.b64decode(read.contents[0].blob)
            # A task past its time to live is gone.
            short = await raw(client, "tools/call", {
                "name": "run_code_long", "arguments": {"code": "print(1)"}, "task": {"ttl": 1}})
            assert short["task"]["ttl"] == 1000  # the shortest kept
            await anyio.sleep(1.5)
            with pytest.raises(MCPError) as err:
                await raw(client, "tasks/get", {"taskId": short["task"]["taskId"]})
            assert err.value.error.code == types.INVALID_PARAMS


async def test_without_tasks_a_call_is_unchanged(runtime: RuntimeProc, tmp_path: Path) -> None:
    """No ``task`` in the call: today's answer (wait budget, then the result itself)."""
    with anyio.fail_after(60):
        async with legacy(stdio_params(tmp_path, runtime)) as client:
            result = await client.call_tool("run_code_long", {"code": "print(6 * 7)"})
            assert result.structured_content is not None
            assert result.structured_content["status"] == "succeeded"
            assert "42" in text_of(result)
            assert (await raw(client, "tasks/list", {}))["tasks"] == []
            with pytest.raises(MCPError) as err:  # not a task tool
                await raw(client, "tools/call", {"name": "run_code_quick",
                                                 "arguments": {"code": "1"}, "task": {}})
            assert err.value.error.code == types.METHOD_NOT_FOUND


class TaskResult(types.Result):
    """The 2026-07-28 ``CreateTaskResult`` (``resultType: "task"``)."""

    result_type: Literal["task"] = "task"
    task_id: str
    status: str


class TasksClient(ClientExtension):
    """The client side of ``io.modelcontextprotocol/tasks``: poll tasks/get to the end."""

    identifier = "io.modelcontextprotocol/tasks"

    def __init__(self) -> None:
        self.created: list[str] = []
        self.polls = 0
        self.polled_twice = anyio.Event()

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=TaskResult, resolve=self._resolve)]

    async def _resolve(self, created: TaskResult, ctx: ClaimContext) -> types.CallToolResult:
        self.created.append(created.task_id)
        while True:
            task = await ctx.session.send_request(
                Raw(method="tasks/get", params={"taskId": created.task_id}), ANY)
            self.polls += 1
            if self.polls >= 2:
                self.polled_twice.set()
            if task["status"] == "completed":
                return types.CallToolResult.model_validate(task["result"])
            assert task["status"] == "working", task
            await anyio.sleep(0.2)


async def test_2026_extension_task_through_the_sdk_extension_api(runtime: RuntimeProc,
                                                                 tmp_path: Path) -> None:
    ext = TasksClient()
    gate = tmp_path / "gate"
    with anyio.fail_after(90):
        async with Client(stdio_params(tmp_path, runtime), extensions=[ext]) as client:
            assert client.protocol_version == "2026-07-28"
            caps = client.server_capabilities
            assert caps.extensions and "io.modelcontextprotocol/tasks" in caps.extensions
            async with anyio.create_task_group() as tg:
                done: list[types.CallToolResult] = []

                async def call() -> None:
                    done.append(await client.call_tool(
                        "run_code_long", {"code": gated(gate, "modern 7")}))

                tg.start_soon(call)
                await ext.polled_twice.wait()  # polled while the job waits for the gate
                gate.write_text("go")
            [result] = done
            assert "modern 7" in text_of(result) and not result.is_error
            assert ext.created == [result.structured_content["job_id"]]  # task id = job id
            # Quick tools stay plain calls.
            quick = await client.call_tool("run_code_quick", {"code": "print(1 + 1)"})
            assert "2" in text_of(quick) and len(ext.created) == 1
        # A 2026 client that does not declare the extension: plain results, no task methods.
        async with Client(stdio_params(tmp_path, runtime)) as plain:
            assert plain.protocol_version == "2026-07-28"
            result = await plain.call_tool("run_code_long", {"code": "print('plain')"})
            assert "plain" in text_of(result) and result.structured_content is not None
            assert result.structured_content["status"] == "succeeded"
            with pytest.raises(MCPError) as err:
                await raw(plain, "tasks/get", {"taskId": ext.created[0]})
            assert err.value.error.code == types.MISSING_REQUIRED_CLIENT_CAPABILITY
