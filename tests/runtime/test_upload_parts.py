"""Uploads in parts (runtime/files/parts.py): the routes through the in-process app with
our signing client, and a real server behind a connection-cutting proxy."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from smartcolab.client.http.client import RuntimeClient
from smartcolab.runtime.files.parts import MIN_PART, PartUploads
from smartcolab.runtime.server import ServerHandle, serve_in_thread
from smartcolab.shared import routes
from smartcolab.shared.errors import (
    BadRequest,
    Conflict,
    FileExistsOnRuntime,
    Forbidden,
    InvalidInput,
    NotFound,
    PathOutsideRoots,
    PayloadTooLarge,
    RateLimited,
    RuntimeUnreachable,
    SmartColabError,
)
from smartcolab.shared.protocol import H_CONTENT_SHA256, UploadResult, UploadSession
from support.cutproxy import CutProxy
from support.inproc import InProcRuntime, inproc_runtime

pytestmark = pytest.mark.anyio
PART = MIN_PART
DATA = os.urandom(2 * PART + 12_345)  # three parts, the last one short


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def name() -> str:
    return f"up-{uuid.uuid4().hex[:8]}.bin"


async def create(c: RuntimeClient, path: str, data: bytes = DATA, *, digest: str | None = None,
                 overwrite: bool = False, state_digest: bool = True) -> UploadSession:
    r = await c.request("POST", routes.FILES_UPLOADS, idempotent=False, json={
        "path": path, "size": len(data), "overwrite": overwrite, "part_size": PART,
        **({"sha256": digest or sha(data)} if state_digest else {})})
    return UploadSession.model_validate_json(r.content)


async def put_part(c: RuntimeClient, s: UploadSession, offset: int, body: bytes,
                   digest: str | None = None) -> None:
    await c.request("PUT", routes.FILES_UPLOAD_PART, idempotent=False,
                    params={"upload_id": s.upload_id, "offset": offset}, content=body,
                    headers={H_CONTENT_SHA256: digest or sha(body)})


async def status(c: RuntimeClient, s: UploadSession) -> UploadSession:
    r = await c.request("GET", routes.fill(routes.FILES_UPLOAD, upload_id=s.upload_id))
    return UploadSession.model_validate_json(r.content)


async def commit(c: RuntimeClient, s: UploadSession, digest: str | None = None) -> UploadResult:
    r = await c.request("POST", routes.fill(routes.FILES_UPLOAD_COMMIT, upload_id=s.upload_id),
                        idempotent=False, json={"sha256": digest} if digest else None)
    return UploadResult.model_validate_json(r.content)


async def abort(c: RuntimeClient, s: UploadSession) -> None:
    await c.request("DELETE", routes.fill(routes.FILES_UPLOAD, upload_id=s.upload_id),
                    idempotent=False)


def part_of(data: bytes, index: int) -> tuple[int, bytes]:
    return index * PART, data[index * PART:(index + 1) * PART]


def part_files(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if p.name.startswith(".sc-upload-")]


def reason(exc: pytest.ExceptionInfo[SmartColabError]) -> object:
    return exc.value.details.get("reason")


async def test_every_part_route_needs_the_secret(inproc: InProcRuntime) -> None:
    async with inproc.http() as http:
        for method, path in [("POST", "/files/uploads"), ("GET", "/files/uploads/" + "a" * 24),
                             ("DELETE", "/files/uploads/" + "a" * 24),
                             ("POST", "/files/uploads/" + "a" * 24 + "/commit"),
                             ("PUT", "/files/upload-part?upload_id=" + "a" * 24 + "&offset=0")]:
            r = await http.request(method, path, content=b"x" * 10)
            assert r.status_code == 401, (method, path, r.text)


async def test_parts_in_any_order_are_published_only_at_commit(inproc: InProcRuntime) -> None:
    root = inproc.config.roots[0]
    target = name()
    async with inproc.client() as c:
        s = await create(c, target)
        assert (s.parts, s.part_size, s.received) == (3, PART, [])
        [tmp] = [p for p in part_files(root) if s.upload_id in p.name]
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o600 and tmp.stat().st_size == len(DATA)
        await asyncio.gather(*(put_part(c, s, *part_of(DATA, i)) for i in (2, 0)))
        assert (await status(c, s)).received == [0, 2]
        # The whole file's hash follows the run of parts from the start, not part 2 yet.
        open_upload = inproc.app.state.sc_parts.get(s.upload_id)
        assert open_upload.hashed_parts == 1
        assert not (root / target).exists()
        listing = (await c.request("GET", routes.FILES)).json()
        assert not any(".sc-upload-" in e["name"] for e in listing["entries"])
        await put_part(c, s, *part_of(DATA, 1))
        result = await commit(c, s)
        assert (result.path, result.size, result.sha256) == (target, len(DATA), sha(DATA))
        assert (root / target).read_bytes() == DATA
        assert not [p for p in part_files(root) if s.upload_id in p.name]
        with pytest.raises(NotFound) as gone:
            await status(c, s)
        assert reason(gone) == "upload_not_found"
        remote = (await c.request("GET", routes.FILES_STAT, params={"path": target})).json()
        assert remote["sha256"] == sha(DATA)
    assert not list(inproc.state.uploads.dir.iterdir())  # the ledger entry went too


async def test_offsets_off_the_grid_and_wrong_lengths_are_refused(
        inproc: InProcRuntime) -> None:
    async with inproc.client() as c:
        s = await create(c, name())
        # Overlapping two parts, past the end, negative, not a number: nothing written.
        for offset in (PART // 2, PART + 1, len(DATA), 10 * PART):
            with pytest.raises(BadRequest) as bad:
                await put_part(c, s, offset, DATA[offset:offset + PART])
            assert reason(bad) == "bad_offset", offset
        for offset_text in ("-1", "x"):
            with pytest.raises(InvalidInput):
                await c.request("PUT", routes.FILES_UPLOAD_PART, idempotent=False, content=b"a",
                                params={"upload_id": s.upload_id, "offset": offset_text})
        with pytest.raises(BadRequest) as short:
            await put_part(c, s, 0, DATA[:PART - 1])
        assert reason(short) == "bad_part_length"
        with pytest.raises(BadRequest) as long:
            await put_part(c, s, 2 * PART, DATA[2 * PART:] + b"x")
        assert reason(long) == "bad_part_length"
        assert (await status(c, s)).received == []
        await abort(c, s)


async def test_a_part_twice_and_a_wrong_part_digest(inproc: InProcRuntime) -> None:
    async with inproc.client() as c:
        s = await create(c, name())
        await put_part(c, s, *part_of(DATA, 0))
        with pytest.raises(Conflict) as twice:
            await put_part(c, s, *part_of(DATA, 0))
        assert reason(twice) == "part_received"
        offset, body = part_of(DATA, 1)
        with pytest.raises(InvalidInput) as wrong:
            await put_part(c, s, offset, body, digest=sha(b"something else"))
        assert reason(wrong) == "checksum_mismatch"
        assert (await status(c, s)).received == [0]
        with pytest.raises(Conflict) as missing:
            await commit(c, s)
        assert reason(missing) == "parts_missing"
        assert missing.value.details["missing"] == [1, 2]
        await abort(c, s)


async def test_wrong_whole_sha256_publishes_nothing_and_abort_cleans_up(
        inproc: InProcRuntime) -> None:
    root = inproc.config.roots[0]
    target = name()
    async with inproc.client() as c:
        s = await create(c, target, digest=sha(b"another file"))
        for i in range(3):
            await put_part(c, s, *part_of(DATA, i))
        with pytest.raises(InvalidInput) as wrong:
            await commit(c, s)
        assert reason(wrong) == "checksum_mismatch"
        assert wrong.value.details["received"] == sha(DATA)
        assert not (root / target).exists()
        await abort(c, s)
        with pytest.raises(NotFound):
            await commit(c, s)
    assert not [p for p in part_files(root) if s.upload_id in p.name]


async def test_create_checks_the_destination_and_the_limits(inproc: InProcRuntime,
                                                            tmp_path: Path) -> None:
    root = inproc.config.roots[0]
    existing = name()
    (root / existing).write_bytes(b"old")
    async with inproc.client() as c:
        with pytest.raises(FileExistsOnRuntime):
            await create(c, existing)
        with pytest.raises(PathOutsideRoots):
            await create(c, "../outside.bin")
        with pytest.raises(Forbidden):
            await create(c, ".smartcolab/x.bin")
        with pytest.raises(InvalidInput):
            await create(c, name(), digest="not-a-digest")
        with pytest.raises(InvalidInput):
            await c.request("GET", routes.fill(routes.FILES_UPLOAD, upload_id="short"))
        with pytest.raises(NotFound) as unknown:
            await c.request("GET", routes.fill(routes.FILES_UPLOAD, upload_id="a" * 24))
        assert reason(unknown) == "upload_not_found"
        # overwrite: the old file is replaced only at commit.
        s = await create(c, existing, overwrite=True)
        for i in range(3):
            await put_part(c, s, *part_of(DATA, i))
        assert (root / existing).read_bytes() == b"old"
        assert (await commit(c, s)).overwritten is True
        assert (root / existing).read_bytes() == DATA
    async with inproc_runtime(tmp_path / "small", max_upload_bytes=3 * PART) as rt, \
            rt.client() as c:
        with pytest.raises(PayloadTooLarge):
            await create(c, "big.bin", b"x" * (3 * PART + 1))
        opened = [await create(c, f"f{i}.bin", b"tiny") for i in range(16)]
        with pytest.raises(RateLimited) as full:
            await create(c, "one-more.bin", b"tiny")
        assert reason(full) == "too_many_uploads"
        for s in opened:
            await abort(c, s)
        s = await create(c, "one-more.bin", b"tiny")
        await put_part(c, s, 0, b"tiny")
        assert (await commit(c, s)).size == 4


async def test_the_whole_sha256_may_come_with_the_commit(inproc: InProcRuntime) -> None:
    root = inproc.config.roots[0]
    target = name()
    async with inproc.client() as c:
        s = await create(c, target, state_digest=False)
        assert s.sha256 is None
        for i in range(3):
            await put_part(c, s, *part_of(DATA, i))
        with pytest.raises(InvalidInput) as missing:
            await commit(c, s)
        assert reason(missing) == "sha256_missing"
        with pytest.raises(InvalidInput) as wrong:
            await commit(c, s, sha(b"another file"))
        assert reason(wrong) == "checksum_mismatch" and not (root / target).exists()
        assert (await commit(c, s, sha(DATA))).sha256 == sha(DATA)
        assert (root / target).read_bytes() == DATA
        stated = await create(c, name())
        await put_part(c, stated, *part_of(DATA, 0))
        with pytest.raises(InvalidInput) as differs:
            await commit(c, stated, sha(b"another file"))
        assert reason(differs) == "sha256_differs"
        await abort(c, stated)


async def test_parts_checked_only_at_commit(inproc: InProcRuntime) -> None:
    """check=commit: a signed part declares no digest of its own; the whole file's sha256
    (signed, in the commit) still decides what is published."""
    root = inproc.config.roots[0]
    target = name()
    corrupted = DATA[:PART] + bytes([DATA[PART] ^ 1]) + DATA[PART + 1:]
    async with inproc.client() as c:
        s = await create(c, target, state_digest=False)
        for i in range(3):
            offset, body = part_of(corrupted, i)
            await c.request("PUT", routes.FILES_UPLOAD_PART, idempotent=False, content=body,
                            params={"upload_id": s.upload_id, "offset": offset,
                                    "check": "commit"})
        assert (await status(c, s)).received == [0, 1, 2]
        with pytest.raises(InvalidInput) as wrong:
            await commit(c, s, sha(DATA))
        assert reason(wrong) == "checksum_mismatch" and not (root / target).exists()
        await abort(c, s)


def test_idle_uploads_expire(tmp_path: Path) -> None:
    from smartcolab.runtime.files.service import FileService
    from smartcolab.runtime.files.uploads import UploadLedger

    ledger = UploadLedger(tmp_path / "state")
    parts = PartUploads(ledger, 10**9, idle_s=0.0)
    target = FileService([tmp_path], tmp_path / "state").confine("x.bin")
    upload = parts.create(target, "x.bin", 10, sha(b"0123456789"), False, None)
    time.sleep(0.01)
    assert parts.expire() == 1
    assert not upload.tmp.exists() and not list(ledger.dir.iterdir())
    with pytest.raises(NotFound):
        parts.get(upload.upload_id)


def test_a_restart_sweeps_the_part_file_of_an_unfinished_upload(tmp_path: Path) -> None:
    from smartcolab.runtime.files.service import FileService
    from smartcolab.runtime.files.uploads import UploadLedger

    state = tmp_path / "state"
    parts = PartUploads(UploadLedger(state), 10**9)
    upload = parts.create(FileService([tmp_path], state).confine("y.bin"), "y.bin", 10, None,
                          False, None)
    parts.write(upload, 0, [b"0123"])
    assert upload.tmp.exists()
    # A new process (the old one was killed): its ledger sweeps what the old one left.
    assert UploadLedger(state).sweep(all_inactive=True) == (1, 10)
    assert not upload.tmp.exists() and not (tmp_path / "y.bin").exists()


# ---------------------------------------------------------------- a real server
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    handle = serve_in_thread(root=Path(tmp_path_factory.mktemp("parts-server")), port=0,
                             banner=False, start_main_session=False)
    try:
        yield handle
    finally:
        handle.stop()


async def test_bearer_parts_over_real_http(server: ServerHandle) -> None:
    """As curl would send them: no part digest (the whole file's sha256 still checks)."""
    h = {"Authorization": f"Bearer {server.secret}"}
    async with httpx2.AsyncClient(base_url=server.url, headers=h) as http:
        target = name()
        r = await http.post("/files/uploads", json={"path": target, "size": len(DATA),
                                                   "sha256": sha(DATA), "part_size": PART})
        assert r.status_code == 201, r.text
        up = r.json()["upload_id"]
        for i in range(3):
            offset, body = part_of(DATA, i)
            r = await http.put("/files/upload-part", params={"upload_id": up, "offset": offset},
                               content=body)
            assert r.status_code == 204, r.text
        r = await http.post(f"/files/uploads/{up}/commit")
        assert r.status_code == 200 and r.json()["sha256"] == sha(DATA)
    assert (server.config.roots[0] / target).read_bytes() == DATA


async def test_a_part_cut_off_is_not_counted_and_is_sent_again(server: ServerHandle) -> None:
    root = server.config.roots[0]
    target = name()
    async with RuntimeClient(server.url, server.secret) as direct:
        s = await create(direct, target)
        await put_part(direct, s, *part_of(DATA, 0))
        # The tunnel drops half way through part 1.
        with CutProxy(int(server.url.rsplit(":", 1)[1]), up_after=PART // 2, cuts=1) as proxy:
            async with RuntimeClient(proxy.url, server.secret) as cut:
                with pytest.raises(RuntimeUnreachable):
                    await put_part(cut, s, *part_of(DATA, 1))
            assert proxy.cut_count == 1
        assert (await status(direct, s)).received == [0]
        for _ in range(200):  # until the server noticed the cut (it frees the part then)
            try:
                await put_part(direct, s, *part_of(DATA, 1))
                break
            except Conflict as exc:
                assert exc.details["reason"] == "part_in_flight"
                await asyncio.sleep(0.05)
        await put_part(direct, s, *part_of(DATA, 2))
        assert (await status(direct, s)).received == [0, 1, 2]
        assert (await commit(direct, s)).sha256 == sha(DATA)
    assert (root / target).read_bytes() == DATA


def test_hashed_parts_are_written_back_before_the_commit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit's fsync finds little dirty: writeback starts as the parts are hashed."""
    from smartcolab.runtime.files import parts as parts_mod
    from smartcolab.runtime.files.service import FileService
    from smartcolab.runtime.files.uploads import UploadLedger

    if not hasattr(os, "posix_fadvise"):
        pytest.skip("no posix_fadvise here: the fsync at commit writes everything")
    advised: list[tuple[int, int]] = []
    real = os.posix_fadvise

    def spy(fd: int, offset: int, length: int, advice: int) -> None:
        advised.append((offset, offset + length))
        real(fd, offset, length, advice)

    monkeypatch.setattr(parts_mod, "WRITEBACK_EVERY", PART)
    monkeypatch.setattr(os, "posix_fadvise", spy)
    data = os.urandom(4 * PART)
    parts = PartUploads(UploadLedger(tmp_path / "state"), 10**9)
    target = FileService([tmp_path], tmp_path / "state").confine("wb.bin")
    upload = parts.create(target, "wb.bin", len(data), sha(data), False, PART)
    for index in (1, 0, 2, 3):  # part 1 first: nothing is hashed until part 0 is in
        up, i = parts.begin_part(upload.upload_id, index * PART, PART)
        parts.write(up, index * PART, [data[index * PART:(index + 1) * PART]])
        parts.end_part(up, i, True)
        parts.advance_hash(up)
        if index == 1:
            assert advised == []
    # Every hashed byte was handed to writeback, in steps reaching back one step.
    assert advised == [(0, PART), (0, 2 * PART), (PART, 3 * PART), (2 * PART, 4 * PART)]
    parts.commit(upload.upload_id, 0o600)
    assert (tmp_path / "wb.bin").read_bytes() == data


def test_a_part_written_as_the_chunks_it_came_in(tmp_path: Path) -> None:
    from smartcolab.runtime.files.service import FileService
    from smartcolab.runtime.files.uploads import UploadLedger

    data = os.urandom(2 * PART)
    parts = PartUploads(UploadLedger(tmp_path / "state"), 10**9)
    target = FileService([tmp_path], tmp_path / "state").confine("v.bin")
    upload = parts.create(target, "v.bin", len(data), sha(data), False, PART)
    # Chunks of odd sizes, an empty one among them, as a vectored write; then one chunk.
    cuts = [0, 1, 1, 4097, 70_000, PART]
    chunks = [data[a:b] for a, b in itertools.pairwise(cuts)]
    for index, body in ((0, chunks), (1, [data[PART:]])):
        up, i = parts.begin_part(upload.upload_id, index * PART, PART)
        parts.write(up, index * PART, body)
        parts.end_part(up, i, True)
    parts.commit(upload.upload_id, 0o600)
    assert (tmp_path / "v.bin").read_bytes() == data
