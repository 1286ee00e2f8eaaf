from __future__ import annotations

import inspect
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from support.inproc import InProcRuntime, inproc_runtime
from support.runtime_proc import RuntimeProc, start_runtime


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` start first, one at the head of each xdist worker's share.

    The worksteal scheduler hands each of N workers a contiguous share of the collection
    and later steals from the ends of the shares: a slow test collected late may start
    last and leave the other workers idle at the end.  Dealt round-robin to the heads of
    the shares, slow tests start at once, on different workers.  Every worker computes the
    same order (xdist requires identical collections); without xdist it is slow-first.
    """
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    slow = [item for item in items if item.get_closest_marker("slow")]
    if not slow:
        return
    rest = iter([item for item in items if not item.get_closest_marker("slow")])
    ordered: list[pytest.Item] = []
    left = len(items)
    for i in range(workers):  # the shares as xdist cuts them: len(pending) // workers left
        size = left // (workers - i)
        left -= size
        mine = slow[i::workers]
        ordered += mine + list(itertools.islice(rest, max(0, size - len(mine))))
    ordered += rest
    items[:] = ordered


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    # Session scope, so that the session-wide in-process runtime below can be async.
    return "asyncio"


@pytest.fixture(autouse=True)
def _sync_tests_see_no_event_loop(request: pytest.FixtureRequest) -> Iterator[None]:
    """anyio's pytest plugin marks this thread as running asyncio for as long as an async
    fixture of a wider scope lives (``inproc`` below: the whole session), although its
    loop is idle between tests. A sync test that starts a loop of its own (``anyio.run``,
    the CLI) was then refused, depending on what xdist had run before on that worker."""
    if inspect.iscoroutinefunction(getattr(request, "function", None)):
        yield
        return
    import sniffio

    token = sniffio.current_async_library_cvar.set(None)
    try:
        yield
    finally:
        sniffio.current_async_library_cvar.reset(token)


@pytest.fixture(scope="session", autouse=True)
def _no_local_daemon_outlives_the_tests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Local runtime daemons are detached on purpose: end any a test left behind."""
    from support.daemons import stop_daemons_under

    yield
    stop_daemons_under(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
async def inproc(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InProcRuntime]:
    """The runtime app in process for the whole session (no kernel; tests must not break it).

    Each client it makes speaks from an address of its own, so tests never share a
    rate-limit bucket or a lockout; its clock moves only when a test moves it.
    """
    async with inproc_runtime(Path(tmp_path_factory.mktemp("inproc-root"))) as rt:
        yield rt


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProc]:
    """One real runtime server for the whole session (tests must not break it)."""
    root = tmp_path_factory.mktemp("runtime-root")
    # Shared by every test a worker runs, and tests name sessions of their own: which
    # tests meet here depends on scheduling, so the default cap of 16 is too low for it.
    proc = start_runtime(Path(root), "--max-sessions", "64")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def fresh_runtime(tmp_path: Path) -> Iterator[RuntimeProc]:
    """A runtime server of the test's own, for tests that kill, restart or break it."""
    proc = start_runtime(tmp_path / "root")
    try:
        yield proc
    finally:
        proc.kill()
