"""Against a real runtime and kernel: failed installs fail, large images reach this machine."""

from __future__ import annotations

import base64
from pathlib import Path

import anyio
import pytest
from mcp.types import ImageContent

from support.bridge_helpers import bridge, make_config, text_of
from support.runtime_proc import RuntimeProc

pytestmark = pytest.mark.anyio


async def test_a_failed_pip_install_fails_the_job(runtime: RuntimeProc, tmp_path: Path) -> None:
    async with bridge(make_config(tmp_path, runtime)) as (client, _):
        with anyio.fail_after(120):
            # No network in tests: --no-index fails at once, like a package that is not found.
            failed = await client.call_tool("run_code_quick", {
                "code": "%pip install --no-index smartcolab-no-such-package-xyz",
                "session": "pip"})
            fine = await client.call_tool("run_code_quick", {
                "code": "%pip --version", "session": "pip"})
            after = await client.call_tool("run_code_quick", {
                "code": "print('next cell runs')", "session": "pip"})
    text = text_of(failed)
    assert failed.is_error, text
    assert failed.structured_content and failed.structured_content["status"] == "failed"
    assert "CalledProcessError" in text and "smartcolab-no-such-package-xyz" in text
    assert "No matching distribution" in text or "ERROR" in text  # pip's own words shown
    assert not fine.is_error, text_of(fine)
    assert fine.structured_content and fine.structured_content["status"] == "succeeded"
    assert "pip " in text_of(fine)
    assert not after.is_error and "next cell runs" in text_of(after)


# A PNG of random pixels, larger than the runtime's 5 MiB cap for returned images.
BIG_PNG = """
import os, struct, zlib
from IPython.display import Image, display
w = h = 1400
raw = b"".join(b"\\x00" + os.urandom(w * 3) for _ in range(h))
def chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))
assert len(png) > 5 * 1024 * 1024
display(Image(data=png))
print(len(png))
"""


async def test_an_image_over_5_mib_is_saved_here_and_shown_smaller(
        runtime: RuntimeProc, tmp_path: Path) -> None:
    async with bridge(make_config(tmp_path, runtime)) as (client, _):
        with anyio.fail_after(120):
            result = await client.call_tool("run_code_quick", {"code": BIG_PNG,
                                                               "session": "bigimg"})
    text = text_of(result)
    assert not result.is_error, text
    size = int(next(line for line in text.splitlines() if line.strip().isdigit()))
    saved = list((tmp_path / "saved").glob("*-image1.png"))
    assert len(saved) == 1, text
    assert saved[0].stat().st_size == size  # the whole original, here
    assert str(saved[0]) in text and f"downscaled from {size:,} bytes" in text
    assert "not returned" not in text  # the runtime's note no longer applies
    images = [c for c in result.content if isinstance(c, ImageContent)]
    assert len(images) == 1  # a smaller copy is shown
    assert len(base64.b64decode(images[0].data)) <= 400_000
