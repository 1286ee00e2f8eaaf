"""Parallel uploads in parts (client/http/transfer_parts.py) against a real runtime on
loopback, through a proxy that cuts connections; the single-stream fallbacks in process."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest

from smartcolab.client.http import transfer, transfer_parts
from smartcolab.client.http.client import RetryPolicy, RuntimeClient
from smartcolab.client.http.transfer_parts import upload_parts
from smartcolab.client.local_files import hash_local
from smartcolab.runtime.files.parts import MIN_PART
from smartcolab.runtime.server import ServerHandle, serve_in_thread
from smartcolab.shared import routes
from smartcolab.shared.errors import ChecksumMismatch
from support.cutproxy import CutProxy
from support.inproc import BASE_URL, InProcRuntime, inproc_runtime

pytestmark = pytest.mark.anyio
FAST = RetryPolicy(attempts=3, initial_s=0.02, max_s=0.1, total_s=10)
PART = MIN_PART
DATA = os.urandom(5 * PART + 4321)  # six parts, the last one short


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    handle = serve_in_thread(root=Path(tmp_path_factory.mktemp("parallel-upload")), port=0,
                             banner=False, start_main_session=False)
    try:
        yield handle
    finally:
        handle.stop()


def port_of(server: ServerHandle) -> int:
    return int(server.url.rsplit(":", 1)[1])


def leftovers(server: ServerHandle) -> list[str]:
    return [p.name for p in server.config.roots[0].iterdir() if p.name.startswith(".sc-upload")]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "src.bin"
    path.write_bytes(DATA)
    return path


@pytest.mark.parametrize("check_parts", [False, True])
async def test_parallel_upload_is_verified_and_uses_several_streams(
        server: ServerHandle, source: Path, check_parts: bool) -> None:
    seen: list[int] = []
    with CutProxy(port_of(server), cuts=0) as proxy:
        async with RuntimeClient(proxy.url, server.secret, retry=FAST) as c:
            with anyio.fail_after(60):
                hashing = asyncio.ensure_future(asyncio.to_thread(hash_local, source))
                res = await upload_parts(c, source, len(DATA), hashing, "par.bin",
                                         overwrite=True, streams=4, part_size=PART,
                                         attempts=3, check_parts=check_parts,
                                         progress=lambda d, t: seen.append(d))
                assert res is not None
        assert proxy.connections >= 3  # the parts went over more than one connection
    assert (res.path, res.size, res.sha256) == ("par.bin", len(DATA), sha(DATA))
    assert (server.config.roots[0] / "par.bin").read_bytes() == DATA
    assert seen == sorted(seen) and seen[-1] == len(DATA) and len(seen) == 6
    assert leftovers(server) == []


async def test_parallel_upload_resends_the_parts_cut_off(server: ServerHandle,
                                                        source: Path) -> None:
    with CutProxy(port_of(server), up_after=PART // 2, cuts=3) as proxy:
        async with RuntimeClient(proxy.url, server.secret, retry=FAST) as c:
            with anyio.fail_after(60):
                res = await transfer.upload(c, source, "cut.bin", streams=4, part_size=PART,
                                            attempts=8)
        assert proxy.cut_count == 3
    assert res.sha256 == sha(DATA)
    assert (server.config.roots[0] / "cut.bin").read_bytes() == DATA
    assert leftovers(server) == []


@pytest.mark.parametrize("change", ["shrink", "flip"])
async def test_a_file_changed_during_the_upload_is_refused_and_nothing_kept(
        server: ServerHandle, source: Path, change: str) -> None:
    def change_file(done: int, total: int | None) -> None:
        # After a first part landed: the parts read from now on see the change.
        with open(source, "r+b") as f:
            if change == "shrink":
                f.truncate(len(DATA) - PART)
            else:
                f.seek(len(DATA) - 1)
                f.write(bytes([DATA[-1] ^ 0xFF]))

    async with RuntimeClient(server.url, server.secret, retry=FAST) as c:
        if change == "shrink":
            with anyio.fail_after(60), pytest.raises(ChecksumMismatch):
                await transfer.upload(c, source, "changed.bin", streams=2, part_size=PART,
                                      progress=change_file)
        else:
            # The whole file's sha256 is computed beside the parts: it may or may not
            # have read the last byte before the change; either way what is published
            # is one consistent version of the file, or nothing.
            try:
                with anyio.fail_after(60):
                    res = await transfer.upload(c, source, "changed.bin", streams=2,
                                                part_size=PART, progress=change_file)
            except ChecksumMismatch:
                assert not (server.config.roots[0] / "changed.bin").exists()
            else:
                published = (server.config.roots[0] / "changed.bin").read_bytes()
                flipped = DATA[:-1] + bytes([DATA[-1] ^ 0xFF])
                assert published == flipped and res.sha256 == sha(flipped)
                (server.config.roots[0] / "changed.bin").unlink()
    assert not (server.config.roots[0] / "changed.bin").exists()
    assert leftovers(server) == []  # the upload was aborted


class Recording(httpx2.AsyncBaseTransport):
    """The in-process app, with the paths of the requests it got written down."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.calls.append((request.method, request.url.path))
        return await self.inner.handle_async_request(request)


async def test_small_files_and_runtimes_without_parts_take_one_stream(
        tmp_path: Path, source: Path) -> None:
    async with inproc_runtime(tmp_path / "old") as rt:
        small = tmp_path / "small.bin"
        small.write_bytes(DATA[:PART])
        rec = Recording(rt.transport())
        async with RuntimeClient(BASE_URL, rt.secret, transport=rec) as c:
            res = await transfer.upload(c, small, "small.bin", streams=4, part_size=PART)
        assert res.sha256 == sha(DATA[:PART])
        assert rec.calls == [("PUT", routes.FILES_CONTENT)]
        # An older runtime: no part routes (404 on create) -> the single stream.
        drop_part_routes(rt)
        rec = Recording(rt.transport())
        async with RuntimeClient(BASE_URL, rt.secret, transport=rec) as c:
            res = await transfer.upload(c, source, "big.bin", streams=4, part_size=PART)
        assert res.sha256 == sha(DATA)
        assert rec.calls == [("POST", routes.FILES_UPLOADS), ("PUT", routes.FILES_CONTENT)]
        assert (rt.config.roots[0] / "big.bin").read_bytes() == DATA


def drop_part_routes(rt: InProcRuntime) -> None:
    """The app as a runtime before the part API: its routers not included."""
    from smartcolab.runtime.api import uploads

    gone = {id(uploads.router), id(uploads.part_router)}
    before = len(rt.app.router.routes)
    rt.app.router.routes[:] = [
        r for r in rt.app.router.routes
        if id(getattr(r, "original_router", None)) not in gone
        and getattr(r, "path", None) not in (routes.FILES_UPLOADS, routes.FILES_UPLOAD_PART)]
    assert len(rt.app.router.routes) < before


def test_parts_are_several_per_stream_and_the_streams_start_staggered() -> None:
    mib = 1024 * 1024
    # About 8 parts per stream (whole MiB), within the client's 8-64 MiB.
    assert transfer_parts.part_size_for(1024 * mib, 6) == 22 * mib
    assert transfer_parts.part_size_for(10 * mib, 6) == transfer_parts.MIN_PART
    assert transfer_parts.part_size_for(100 * 1024 * mib, 6) == transfer_parts.MAX_PART
    # Half the streams at once, the others spread over the first part.
    assert transfer_parts.stagger(6, 600) == [0, 0, 0, 150, 300, 450]
    assert transfer_parts.stagger(4, 600) == [0, 0, 200, 400]
    assert transfer_parts.stagger(1, 600) == [0]


async def test_the_later_streams_start_at_their_points_of_the_first_part(
        server: ServerHandle, source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    leads: list[int | None] = []
    real = transfer_parts._worker

    async def spy(run: transfer_parts._Run) -> None:
        leads.append(run.lead)  # how far the first part was when this stream started
        await real(run)

    monkeypatch.setattr(transfer_parts, "_worker", spy)
    async with RuntimeClient(server.url, server.secret, retry=FAST) as c:
        with anyio.fail_after(60):
            res = await transfer.upload(c, source, "staggered.bin", streams=4, part_size=PART,
                                        overwrite=True)
    assert res.sha256 == sha(DATA)
    assert (server.config.roots[0] / "staggered.bin").read_bytes() == DATA
    assert len(leads) == 4 and leads[:2] == [0, 0]
    for at, lead in zip([PART // 3, 2 * PART // 3], leads[2:], strict=True):
        assert lead is None or lead >= at  # None: the first part was over by then
