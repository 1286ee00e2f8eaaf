"""The bridge in-process (mcp.Client(server)) against a real runtime: tools, metadata, bad input."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from support.bridge_helpers import bridge, make_config, text_of
from support.runtime_proc import RuntimeProc

pytestmark = pytest.mark.anyio

EXPECTED_TOOLS = {
    "check_colab_connection", "probe_colab_environment", "run_code_quick", "run_code_long",
    "get_job", "cancel_job", "list_jobs", "get_job_output", "list_colab_variables",
    "cleanup_colab", "restart_colab_runtime", "list_runtimes", "connect_runtime",
    "list_colab_files", "download_from_colab", "upload_to_colab",
}


async def test_every_tool_is_documented_and_annotated(runtime: RuntimeProc, tmp_path: Path) -> None:
    async with bridge(make_config(tmp_path, runtime)) as (client, _):
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) >= EXPECTED_TOOLS
    for tool in tools.values():
        assert tool.description and len(tool.description) > 60, tool.name
        assert tool.annotations is not None, tool.name
        assert tool.annotations.read_only_hint is not None, tool.name
    # Hints equal to MCP's defaults are left out (destructive true when not read-only).
    assert tools["run_code_quick"].annotations.destructive_hint in (None, True)
    assert tools["download_from_colab"].annotations.destructive_hint is False
    assert tools["list_jobs"].annotations.read_only_hint is True
    schema = tools["run_code_long"].input_schema["properties"]
    # ">= 0" and "> 0" are not published (context); test_tool_surface shows the server
    # still refuses a crossing.
    assert schema["timeout"]["anyOf"][0] == {"maximum": 604800.0, "type": "number"}


async def test_probe_and_runtimes(runtime: RuntimeProc, tmp_path: Path) -> None:
    async with bridge(make_config(tmp_path, runtime)) as (client, _):
        with anyio.fail_after(30):
            probe = await client.call_tool("probe_colab_environment", {})
            listing = await client.call_tool("list_runtimes", {})
    assert not probe.is_error, text_of(probe)
    assert probe.structured_content and probe.structured_content["cpu_count"] >= 1
    assert "CPU:" in text_of(probe) and "RAM:" in text_of(probe)
    assert listing.structured_content is not None
    assert listing.structured_content["default"] == "test"
    assert "secret" not in str(listing.structured_content).replace("has_secret", "")
    assert runtime.secret not in text_of(listing)


@pytest.mark.parametrize(("tool", "args", "expected"), [
    ("run_code_quick", {"code": ""}, "code"),
    ("run_code_quick", {"code": "   \n"}, "code is empty"),
    ("run_code_long", {"code": "1", "timeout": -5}, "timeout"),
    ("run_code_quick", {"code": "1", "runtime": "nope"}, "no runtime named 'nope'"),
    ("get_job", {"job_id": "../etc"}, "job_id"),
    ("connect_runtime", {"name": "x", "url": "ftp://a", "secret": "s"}, "URL"),
])
async def test_bad_arguments_get_clear_errors(runtime: RuntimeProc, tmp_path: Path, tool: str,
                                              args: dict[str, object], expected: str) -> None:
    async with bridge(make_config(tmp_path, runtime)) as (client, _):
        with anyio.fail_after(30):
            result = await client.call_tool(tool, args)
    assert result.is_error
    assert expected in text_of(result)


async def test_wrong_secret_is_reported_as_auth_refused(runtime: RuntimeProc, tmp_path: Path) -> None:
    async with bridge(make_config(tmp_path, runtime)) as (client, deps):
        await deps.registry.connect("bad", runtime.url, "not-the-secret")
        with anyio.fail_after(30):
            result = await client.call_tool("probe_colab_environment", {"runtime": "bad"})
    assert result.is_error
    text = text_of(result)
    assert "unauthorized (runtime 'bad')" in text and "connect_runtime" in text


def test_config_snippets_use_this_interpreter_and_match_the_example(tmp_path: Path) -> None:
    import json
    import sys

    from smartcolab.cli.client_config import render_client_config

    desktop = render_client_config("claude-desktop", url="https://x.example")
    entry = json.loads(desktop[desktop.index("{"):])["mcpServers"]["smart-colab"]
    assert entry["command"] == sys.executable and entry["args"] == ["-m", "smartcolab", "mcp"]
    assert entry["env"]["COLAB_URL"] == "https://x.example"
    example = json.loads((Path(__file__).parents[2] / "config" /
                          "claude_desktop_config.example.json").read_text())
    assert example["mcpServers"]["smart-colab"]["args"] == entry["args"]
    code = render_client_config("claude-code", runtime="kaggle")
    assert f"-- {sys.executable} -m smartcolab mcp --runtime kaggle" in code
