"""shared/loop.py: uvloop when installed, the standard loop when asked or missing."""

from __future__ import annotations

import asyncio
import builtins
from typing import Any

import pytest

from smartcolab.shared import loop


async def _loop_type() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_uvloop_runs_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop")
    monkeypatch.delenv(loop.LOOP_ENV, raising=False)
    assert loop.uvloop_wanted()
    assert loop.run(_loop_type()).startswith("uvloop")
    assert loop.anyio_options() == {"use_uvloop": True}


def test_the_standard_loop_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(loop.LOOP_ENV, "asyncio")
    assert not loop.uvloop_wanted()
    assert loop.run(_loop_type()).startswith("asyncio")
    assert loop.anyio_options() == {}


def test_the_standard_loop_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(loop.LOOP_ENV, raising=False)
    real_import = builtins.__import__

    def no_uvloop(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "uvloop":
            raise ImportError("not installed")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    assert not loop.uvloop_wanted()
    assert loop.run(_loop_type()).startswith("asyncio")
