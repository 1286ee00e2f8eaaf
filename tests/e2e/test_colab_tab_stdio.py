"""The colab-tab kind through the real bridge (``smartcolab mcp`` over stdio): a tab named in
a runtimes file, its link from connect_runtime, the fake page connecting to the bridge
process's relay, and a job run and stopped by our deadline."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest

from mcp import Client
from support.bridge_helpers import stdio_params, text_of
from support.fake_colab_page import FakeColabPage

pytestmark = pytest.mark.anyio


def port_and_token(link: str) -> tuple[int, str]:
    fragment = parse_qs(urlsplit(link).fragment)
    return int(fragment["mcpProxyPort"][0]), fragment["mcpProxyToken"][0]


async def test_a_tab_through_the_stdio_bridge(tmp_path: Path) -> None:
    runtimes = tmp_path / "runtimes.toml"
    runtimes.write_text('default = "tab"\n\n[runtimes.tab]\nkind = "colab-tab"\n')
    params = stdio_params(tmp_path, None, "--no-embedded", env={
        "SMARTCOLAB_RUNTIMES": str(runtimes), "SMARTCOLAB_NO_BROWSER": "1"})
    with anyio.fail_after(240):
        async with Client(params) as client:
            first = await client.call_tool("connect_runtime", {"name": "tab", "wait": 0})
            assert first.structured_content is not None, text_of(first)
            assert first.structured_content["connected"] is False
            assert "has not connected yet" in text_of(first)
            port, token = port_and_token(first.structured_content["link"])
            async with FakeColabPage(port, token) as page:
                ran = await client.call_tool("run_code_quick",
                                             {"code": "print('via stdio'); 2 ** 10"})
                assert not ran.is_error, text_of(ran)
                assert "via stdio" in text_of(ran) and "1024" in text_of(ran)
                stopped = await client.call_tool("run_code_long", {
                    "code": "while True:\n    pass", "timeout": 1})
                assert stopped.structured_content is not None
                assert stopped.structured_content["status"] == "timed_out", text_of(stopped)
                assert any(c.source.startswith("%%smartcolab_job") for c in page.cells)
