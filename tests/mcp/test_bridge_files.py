"""File tools through the in-process bridge against a real runtime."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from support.bridge_helpers import bridge, make_config, text_of
from support.runtime_proc import RuntimeProc

pytestmark = pytest.mark.anyio


async def test_download_globs_list_download_and_upload(runtime: RuntimeProc, tmp_path: Path) -> None:
    code = ("import os\nos.makedirs('bridge_out', exist_ok=True)\n"
            "for n in ('a', 'b'):\n    open(f'bridge_out/{n}.txt', 'w').write(n * 1000)\n"
            "open('bridge_out/skip.log', 'w').write('no')")
    async with bridge(make_config(tmp_path, runtime)) as (client, _):
        with anyio.fail_after(60):
            ran = await client.call_tool("run_code_long", {
                "code": code, "download": ["bridge_out/*.txt"], "session": "files"})
            listed = await client.call_tool("list_colab_files", {"path": "bridge_out",
                                                                 "pattern": "*.txt"})
            single = await client.call_tool("download_from_colab", {"path": "bridge_out/b.txt",
                                                                    "local_name": "copy.txt"})
            again = await client.call_tool("download_from_colab", {"path": "bridge_out/b.txt",
                                                                   "local_name": "copy.txt"})
            (tmp_path / "saved" / "up.txt").write_text("uploaded text")
            up = await client.call_tool("upload_to_colab", {"local_path": "up.txt",
                                                            "remote_path": "bridge_out/up.txt",
                                                            "overwrite": True})
            outside = tmp_path / "secret.txt"
            outside.write_text("private")
            refused = await client.call_tool("upload_to_colab", {"local_path": str(outside)})
    saved = tmp_path / "saved"
    assert not ran.is_error, text_of(ran)
    assert (saved / "bridge_out__a.txt").read_text() == "a" * 1000
    assert (saved / "bridge_out__b.txt").exists() and not (saved / "bridge_out__skip.log").exists()
    assert "downloaded bridge_out/a.txt" in text_of(ran) and "sha256" in text_of(ran)
    assert not listed.is_error and "bridge_out/a.txt" in text_of(listed)
    assert "skip.log" not in text_of(listed)
    assert not single.is_error and (saved / "copy.txt").read_text() == "b" * 1000
    assert again.is_error and "overwrite" in text_of(again).lower()
    assert not up.is_error, text_of(up)
    assert (runtime.root / "bridge_out" / "up.txt").read_text() == "uploaded text"
    assert refused.is_error and "local_path_refused" in text_of(refused)
