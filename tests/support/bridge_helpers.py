"""Helpers for the bridge tests: a BridgeConfig for a real runtime, an in-process client."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcp.types import CallToolResult, TextContent

from mcp import Client, StdioServerParameters
from smartcolab.client.http.client import RetryPolicy
from smartcolab.client.registry import RuntimeSpec
from smartcolab.mcp.deps import BridgeDeps, BridgeSettings
from smartcolab.mcp.server import BridgeConfig, build_server, open_bridge
from support.runtime_proc import RuntimeProc, subprocess_env

# Short retries: a dead runtime must turn into an error in about a second.
FAST_RETRY = RetryPolicy(attempts=3, initial_s=0.1, max_s=0.3, total_s=2.0)


def make_config(tmp: Path, runtime: RuntimeProc | None = None, *, embedded: bool = False,
                **settings: Any) -> BridgeConfig:
    specs = [RuntimeSpec("test", runtime.url, runtime.secret)] if runtime else []
    return BridgeConfig(
        settings=BridgeSettings(save_dir=tmp / "saved", checkpoint_dir=tmp / "ckpt", **settings),
        runtimes=specs, default_runtime="test" if runtime else None, embedded=embedded,
        embedded_root=tmp / "workspace", retry=FAST_RETRY)


@asynccontextmanager
async def bridge(config: BridgeConfig) -> AsyncIterator[tuple[Client, BridgeDeps]]:
    async with open_bridge(config) as deps, Client(build_server(deps)) as client:
        yield client, deps


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


def stdio_params(tmp: Path, runtime: RuntimeProc | None, *args: str,
                 env: dict[str, str] | None = None) -> StdioServerParameters:
    """The real bridge as a subprocess (``smartcolab mcp``) on ``runtime``, state under ``tmp``.

    Without a runtime (and no ``COLAB_URL`` in ``env``) an inherited ``COLAB_URL`` is
    dropped, so the bridge uses its embedded runtime.
    """
    extra = {"CHECKPOINT_DIR": str(tmp / "ckpt"), "LOCAL_SAVE_DIR": str(tmp / "saved")}
    if runtime is not None:
        extra |= {"COLAB_URL": runtime.url, "COLAB_TOKEN": runtime.secret}
    full = subprocess_env({**extra, **(env or {})})
    if "COLAB_URL" not in extra and "COLAB_URL" not in (env or {}):
        full.pop("COLAB_URL", None)
    return StdioServerParameters(command=sys.executable,
                                 args=["-m", "smartcolab", "mcp", "--log-level", "WARNING", *args],
                                 env=full, cwd=str(tmp))
