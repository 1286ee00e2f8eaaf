"""``smartcolab tab open NAME --exec CODE`` as a person runs it: the link on stderr, the fake
page connects to it, the code's output on stdout, the exit status of the job."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
from anyio.streams.text import TextReceiveStream

from support.fake_colab_page import FakeColabPage
from support.runtime_proc import subprocess_env

pytestmark = pytest.mark.anyio


async def test_tab_open_prints_the_link_waits_and_runs_code(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "smartcolab", "tab", "open", "cli-tab", "--no-browser",
               "--wait", "120", "--exec", "print('from the cli'); 6 * 7"]
    with anyio.fail_after(240):
        async with await anyio.open_process(command, env=subprocess_env({}),
                                            cwd=str(tmp_path)) as proc:
            assert proc.stderr is not None and proc.stdout is not None
            seen = ""
            async for chunk in TextReceiveStream(proc.stderr):
                seen += chunk
                found = re.search(r"https://colab\.google\.com/\S+", seen)
                if found:
                    break
            assert found, seen
            fragment = parse_qs(urlsplit(found.group(0)).fragment)
            async with FakeColabPage(int(fragment["mcpProxyPort"][0]),
                                     fragment["mcpProxyToken"][0]) as page:
                stdout = "".join([c async for c in TextReceiveStream(proc.stdout)])
                status = await proc.wait()
                rest = "".join([c async for c in TextReceiveStream(proc.stderr)])
                assert any(c.source.startswith("%%smartcolab_job") for c in page.cells)
    assert status == 0, rest
    assert "from the cli" in stdout and "42" in stdout
    assert "succeeded" in rest
