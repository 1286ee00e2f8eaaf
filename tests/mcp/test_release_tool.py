"""The release_runtime tool, in process against a fake backend: it asks the capability,
calls release, and says what happened; a kind that cannot release says what to do."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from mcp import Client
from smartcolab.client.backend import Capability
from smartcolab.client.registry import RuntimeSpec
from smartcolab.mcp.deps import BridgeSettings
from smartcolab.mcp.server import BridgeConfig, build_server
from support.bridge_helpers import text_of
from support.fake_backend import FakeBackend

pytestmark = pytest.mark.anyio


def config(tmp: Path, backend: FakeBackend) -> BridgeConfig:
    return BridgeConfig(
        settings=BridgeSettings(save_dir=tmp / "saved", checkpoint_dir=tmp / "ckpt"),
        runtimes=[RuntimeSpec("fake", "http://fake.invalid", kind="fake")],
        default_runtime="fake", embedded=False, factories={"fake": backend.factory()})


class ReleasableBackend(FakeBackend):
    released = 0

    async def release(self) -> bool:
        self.released += 1
        return self.released == 1


async def test_release_runtime_releases_once_then_says_none_was_held(tmp_path: Path) -> None:
    backend = ReleasableBackend(capabilities=frozenset({Capability.RELEASE}))
    async with Client(build_server(config(tmp_path, backend))) as client:
        with anyio.fail_after(20):
            first = await client.call_tool("release_runtime", {"runtime": "fake"})
            second = await client.call_tool("release_runtime", {"runtime": "fake"})
    assert not first.is_error and "was released: its state is gone" in text_of(first)
    assert first.structured_content == {"runtime": "fake", "released": True}
    assert "held no Colab runtime" in text_of(second) and backend.released == 2


async def test_release_runtime_on_a_kind_that_cannot_says_what_to_do(tmp_path: Path) -> None:
    backend = ReleasableBackend(capabilities=frozenset())
    async with Client(build_server(config(tmp_path, backend))) as client:
        with anyio.fail_after(20):
            result = await client.call_tool("release_runtime", {"runtime": "fake"})
    assert result.is_error and "nothing to release" in text_of(result)
    assert "stop it where it runs" in text_of(result) and backend.released == 0
