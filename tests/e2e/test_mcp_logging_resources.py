"""MCP logging and resources through the real bridge (stdio subprocess) and a real runtime."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
import pytest
from mcp.shared.exceptions import MCPError

from mcp import Client
from support.bridge_helpers import stdio_params, text_of
from support.runtime_proc import RuntimeProc

pytestmark = pytest.mark.anyio


class Raw(types.Request):  # type: ignore[type-arg]
    """A request with params the SDK's own model would refuse to build."""

    params: dict[str, Any] | None = None

THREE_IMAGES = """\
import io
from PIL import Image as Picture
from IPython.display import Image, display
for colour in ("red", "green", "blue"):
    buf = io.BytesIO()
    Picture.new("RGB", (4, 4), colour).save(buf, format="PNG")
    display(Image(data=buf.getvalue()))
print("drawn")
"""


@pytest.mark.filterwarnings("ignore:The logging capability is deprecated")
async def test_log_notifications_follow_set_level(runtime: RuntimeProc, tmp_path: Path) -> None:
    got: list[types.LoggingMessageNotificationParams] = []
    arrived = [anyio.Event()]

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        got.append(params)
        arrived[0].set()

    async def job(client: Client, code: str, session: str = "main") -> str:
        result = await client.call_tool("run_code_quick", {"code": code, "session": session})
        assert result.structured_content is not None, text_of(result)
        return str(result.structured_content["job_id"])

    async def heard_of(job_id: str) -> list[tuple[str, str | None]]:
        """Events about ``job_id`` once its job event arrived (a later event proves
        that nothing sent before it is still on its way)."""
        with anyio.fail_after(20):
            while not any(f"job {job_id} " in str(g.data) for g in got):
                arrived[0] = anyio.Event()
                if not any(f"job {job_id} " in str(g.data) for g in got):
                    await arrived[0].wait()
        return [(g.level, g.logger) for g in got if job_id in str(g.data)]

    with anyio.fail_after(120):
        async with Client(stdio_params(tmp_path, runtime), mode="legacy",
                          logging_callback=on_log) as client:
            caps = client.server_capabilities
            assert caps.logging is not None and caps.prompts is None
            # Default level (warning): a job that succeeds says nothing.
            quiet = await job(client, "print('quiet')")
            await client.set_logging_level("info")
            loud = await job(client, "print('loud')")
            assert await heard_of(loud) == [("info", "smartcolab.jobs")]
            assert not any(quiet in str(g.data) for g in got)
            assert "succeeded" in str(got[-1].data)
            # A kernel that dies: a lost-state warning (epoch change) besides the job's.
            doomed = await job(client, "import os; os._exit(1)", session="doomed")
            assert ("warning", "smartcolab.epochs") in await heard_of(doomed)
            # At "error", warnings and infos are filtered out.
            await client.set_logging_level("error")
            failing = await job(client, "1/0")
            fine = await job(client, "print(1)")
            await client.set_logging_level("info")
            assert await heard_of(await job(client, "print(2)")) == [("info", "smartcolab.jobs")]
            assert not any(failing in str(g.data) or fine in str(g.data) for g in got)
            with pytest.raises(MCPError) as err:
                await client.session.send_request(
                    Raw(method="logging/setLevel", params={"level": "loud"}), types.EmptyResult)
            assert err.value.error.code == types.INVALID_PARAMS


async def test_saved_files_and_job_output_as_resources(runtime: RuntimeProc,
                                                       tmp_path: Path) -> None:
    with anyio.fail_after(90):
        async with Client(stdio_params(tmp_path, runtime), mode="legacy") as client:
            templates = {t.uri_template for t in
                         (await client.list_resource_templates()).resource_templates}
            assert {"smartcolab://jobs/{job_id}/output/{page}",
                    "smartcolab://saved/{name}"} <= templates
            result = await client.call_tool("run_code_quick", {"code": THREE_IMAGES})
            assert "drawn" in text_of(result)
            assert "saved to" in text_of(result)  # the text fallback stays
            links = [c for c in result.content if isinstance(c, types.ResourceLink)]
            saved = [link for link in links if str(link.uri).startswith("smartcolab://saved/")]
            [image] = saved
            assert image.mime_type == "image/png" and image.name.endswith("image3.png")
            on_disk = (tmp_path / "saved" / image.name).read_bytes()
            read = await client.read_resource(str(image.uri))
            [blob] = read.contents
            assert isinstance(blob, types.BlobResourceContents)
            assert base64.b64decode(blob.blob) == on_disk
            listed = {str(r.uri) for r in (await client.list_resources()).resources}
            assert str(image.uri) in listed
            [output] = [link for link in links if "/output/" in str(link.uri)]
            page = await client.read_resource(str(output.uri))
            assert isinstance(page.contents[0], types.TextResourceContents)
            assert "drawn" in page.contents[0].text
            # Files the bridge did not save, and names that leave the directory: refused.
            (tmp_path / "saved" / "planted.txt").write_text("not ours")
            (tmp_path / "secret.txt").write_text("secret")
            for uri in ("smartcolab://saved/planted.txt", "smartcolab://saved/..%2Fsecret.txt",
                        "smartcolab://saved/%2E%2E"):
                with pytest.raises(MCPError):
                    await client.read_resource(uri)
            with pytest.raises(MCPError) as err:
                await client.list_prompts()
            assert err.value.error.code == types.METHOD_NOT_FOUND
