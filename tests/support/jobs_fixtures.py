"""Fixtures for the job and session tests (a pytest plugin: ``pytest_plugins``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.jobs_helpers import Api, runtime_with_grace
from support.runtime_proc import RuntimeProc


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProc]:
    """A runtime of this test module's own (kill grace 1 s), so restarts hurt no one else."""
    proc = runtime_with_grace(Path(tmp_path_factory.mktemp("jobs-root")))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def api(rt: RuntimeProc) -> Iterator[Api]:
    client = Api(rt)
    try:
        yield client
    finally:
        client.close()
