"""Against a real runtime and kernel: failed installs fail, large images reach this machine."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

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
