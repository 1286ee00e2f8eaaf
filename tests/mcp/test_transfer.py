"""The client side of file transfer against a real runtime, through a cutting proxy."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from smartcolab.client.http import transfer, transfer_dir
from smartcolab.client.http.client import RetryPolicy, RuntimeClient
from smartcolab.shared.errors import (
    ChecksumMismatch,
    FileExistsOnRuntime,
    InvalidInput,
    LocalPathRefused,
    RuntimeUnreachable,
)
from support.cutproxy import CutProxy
from support.files_helpers import MB, sha, start_tree_runtime
from support.runtime_proc import RuntimeProc

pytestmark = pytest.mark.anyio
FAST = RetryPolicy(attempts=3, initial_s=0.02, max_s=0.1, total_s=10)
Tree = tuple[RuntimeProc, dict[str, bytes], Path]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tree]:
    base = Path(tmp_path_factory.mktemp("transfer"))
    proc, files = start_tree_runtime(base)
    try:
        yield proc, files, base
    finally:
        proc.stop()


def names(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def wait_no_temps(folder: Path, timeout: float = 20.0) -> list[str]:
    """The folder's names once no upload temp file is left (or at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        left = names(folder) if folder.exists() else []
        if not any(".sc-upload-" in n for n in left) or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def client_for(proc: RuntimeProc, url: str | None = None) -> RuntimeClient:
    return RuntimeClient(url or proc.url, proc.secret, retry=FAST)


async def test_listing_and_stat_helpers(tree: Tree) -> None:
    proc, files, _ = tree
    async with client_for(proc) as c:
        page = await transfer.list_files(c, "sub", recursive=True, limit=2)
        assert len(page.entries) == 2 and page.next_cursor
        every = [e.path async for e in transfer.iter_files(c, "sub", recursive=True)]
        assert "sub/deeper/c.csv" in every and len(every) == page.total
        st = await transfer.stat(c, "a.txt")
        assert st.sha256 == sha(files["a.txt"]) and st.etag


async def test_download_verified_atomic_with_progress(tree: Tree, tmp_path: Path) -> None:
    proc, files, _ = tree
    seen: list[tuple[int, int | None]] = []
    async with client_for(proc) as c:
        with anyio.fail_after(30):
            res = await transfer.download(c, "big.bin", tmp_path,
                                          progress=lambda d, t: seen.append((d, t)))
        assert res.path == tmp_path / "big.bin" and res.size == 3 * MB
        assert res.sha256 == sha(files["big.bin"]) == sha(res.path.read_bytes())
        assert seen[-1] == (3 * MB, 3 * MB) and [d for d, _ in seen] == sorted(d for d, _ in seen)
        assert names(tmp_path) == ["big.bin"]
        with pytest.raises(LocalPathRefused, match="overwrite=true in a tool call, --overwrite on the command line"):
            await transfer.download(c, "big.bin", tmp_path)
        again = await transfer.download(c, "a.txt", tmp_path, "big.bin", overwrite=True)
        assert again.path.read_bytes() == files["a.txt"]
        with pytest.raises(InvalidInput, match="download_dir"):
            await transfer.download(c, "sub", tmp_path)
        odd = await transfer.download(c, "odd/a&b #1?.txt", tmp_path)
        assert odd.path.name == "a&b #1?.txt" and odd.path.read_bytes() == files["odd/a&b #1?.txt"]


async def test_download_resumes_after_cuts(tree: Tree, tmp_path: Path) -> None:
    proc, files, _ = tree
    with CutProxy(proc.port, down_after=700_000, cuts=3) as proxy:
        async with client_for(proc, proxy.url) as c:
            with anyio.fail_after(30):
                res = await transfer.download(c, "big.bin", tmp_path)
        assert proxy.cut_count >= 1
    assert res.attempts > 1
    assert res.sha256 == sha(files["big.bin"]) == sha(res.path.read_bytes())
    assert not (tmp_path / "big.bin.part").exists()


async def test_part_file_is_never_taken_as_finished(tree: Tree, tmp_path: Path) -> None:
    proc, _files, _ = tree
    src = proc.root / "changing.bin"
    first = os.urandom(2 * MB)
    src.write_bytes(first)
    with CutProxy(proc.port, down_after=600_000, cuts=None) as proxy:
        async with client_for(proc, proxy.url) as c:
            with pytest.raises(RuntimeUnreachable, match="resume"), anyio.fail_after(30):
                await transfer.download(c, "changing.bin", tmp_path, attempts=1)
    part = tmp_path / "changing.bin.part"
    assert not (tmp_path / "changing.bin").exists()
    # A new download comes in spans into a pre-sized .part: its record says what is held.
    spans_held = json.loads((tmp_path / "changing.bin.part.json").read_text())["spans"]
    assert 0 < sum(done - start for start, done, _ in spans_held) < len(first)
    # The remote file changes: the stale .part must not be continued.
    second = os.urandom(2 * MB + 5)
    src.write_bytes(second)
    async with client_for(proc) as c:
        res = await transfer.download(c, "changing.bin", tmp_path)
    assert res.resumed_from == 0 and res.path.read_bytes() == second
    assert not part.exists() and not (tmp_path / "changing.bin.part.json").exists()


async def test_part_of_same_version_resumes_and_foreign_part_restarts(tree: Tree,
                                                                      tmp_path: Path) -> None:
    proc, files, _ = tree
    data = files["big.bin"]
    async with client_for(proc) as c:
        head = await transfer.stat(c, "big.bin", with_hash=False)
        (tmp_path / "big.bin.part").write_bytes(data[:MB])
        (tmp_path / "big.bin.part.json").write_text(json.dumps(
            {"remote": "big.bin", "etag": head.etag, "size": head.size}))
        res = await transfer.download(c, "big.bin", tmp_path)
        assert res.resumed_from == MB and res.path.read_bytes() == data
        # A .part with garbage and no record of its version restarts from 0.
        (tmp_path / "x.part").write_bytes(b"garbage" * 1000)
        res2 = await transfer.download(c, "big.bin", tmp_path, "x")
        assert res2.resumed_from == 0 and res2.sha256 == sha(data)
        # Corrupted bytes under a matching record are caught by the digest check.
        bad = bytearray(data[:MB])
        bad[10] ^= 0xFF
        (tmp_path / "y.part").write_bytes(bytes(bad))
        (tmp_path / "y.part.json").write_text(json.dumps(
            {"remote": "big.bin", "etag": head.etag, "size": head.size}))
        with pytest.raises(ChecksumMismatch):
            await transfer.download(c, "big.bin", tmp_path, "y")
        assert not (tmp_path / "y").exists() and not (tmp_path / "y.part").exists()


LOCAL_HOSTILE = ["../evil", "/tmp/evil", "a/../../evil", "..", ".", "./", "a\x00b", "C:\\evil",
                 "\\\\server\\share", "out/evil", "sub/../../evil"]


async def test_local_names_never_escape(tree: Tree, tmp_path: Path) -> None:
    proc, _, _ = tree
    save = tmp_path / "save"
    save.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (save / "out").symlink_to(outside)
    async with client_for(proc) as c:
        for name in LOCAL_HOSTILE:
            with pytest.raises(LocalPathRefused):
                await transfer.download(c, "a.txt", save, name)
        # A planted .part symlink is replaced, not written through.
        (save / "p.txt.part").symlink_to(outside / "victim")
        res = await transfer.download(c, "a.txt", save, "p.txt")
        assert res.path == save / "p.txt"
        nested = await transfer.download(c, "a.txt", save, "deep/er/n.txt")
        assert nested.path == save / "deep" / "er" / "n.txt"
    assert list(outside.iterdir()) == []
    assert names(tmp_path) == ["outside", "save"]


async def test_upload_verified_and_overwrite(tree: Tree, tmp_path: Path) -> None:
    proc, _, _ = tree
    local = tmp_path / "up.bin"
    data = os.urandom(2 * MB + 3)
    local.write_bytes(data)
    seen: list[int] = []
    async with client_for(proc) as c:
        res = await transfer.upload(c, local, "uploads/up.bin", progress=lambda d, t: seen.append(d))
        assert res.sha256 == sha(data) and res.size == len(data) and not res.overwritten
        assert (proc.root / "uploads" / "up.bin").read_bytes() == data
        assert seen[-1] == len(data)
        with pytest.raises(FileExistsOnRuntime):
            await transfer.upload(c, local, "uploads/up.bin")
        local.write_bytes(b"new")
        res2 = await transfer.upload(c, local, "uploads/up.bin", overwrite=True)
        assert res2.overwritten and (proc.root / "uploads" / "up.bin").read_bytes() == b"new"
        with pytest.raises(LocalPathRefused):
            await transfer.upload(c, tmp_path / "missing", "uploads/x")
        (tmp_path / "empty").write_bytes(b"")
        empty = await transfer.upload(c, tmp_path / "empty", "uploads/empty")
        assert empty.size == 0 and (proc.root / "uploads" / "empty").read_bytes() == b""
        back = await transfer.download(c, "uploads/empty", tmp_path / "back")
        assert back.size == 0 and back.path.read_bytes() == b""
        deleted = await transfer.delete(c, "uploads/up.bin")
        assert deleted.deleted and not (proc.root / "uploads" / "up.bin").exists()


async def test_signed_upload_with_wrong_declared_digest_is_refused(tree: Tree) -> None:
    proc, _, _ = tree
    async with client_for(proc) as c:
        with pytest.raises(InvalidInput, match="nothing was written"):
            async with c.stream("PUT", "/files/content", params={"path": "uploads/lie.bin"},
                                headers={"X-SC-Content-SHA256": sha(b"other")},
                                content=b"the real bytes"):
                pass
    assert not (proc.root / "uploads" / "lie.bin").exists()


async def test_interrupted_upload_leaves_no_partial_file(tree: Tree, tmp_path: Path) -> None:
    proc, _, _ = tree
    local = tmp_path / "cut.bin"
    local.write_bytes(os.urandom(3 * MB))
    with CutProxy(proc.port, up_after=1 * MB, cuts=None) as proxy:
        async with client_for(proc, proxy.url) as c:
            with pytest.raises(RuntimeUnreachable), anyio.fail_after(30):
                await transfer.upload(c, local, "uploads/cut.bin", attempts=2)
        cuts = (proxy.connections, proxy.cut_count)
    dest_dir = proc.root / "uploads"
    left = await anyio.to_thread.run_sync(wait_no_temps, dest_dir)
    assert not (dest_dir / "cut.bin").exists()
    assert not any(".sc-upload-" in n for n in left), (left, cuts, proc.log()[-1500:])


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
async def test_download_directory_extracted(tree: Tree, tmp_path: Path, compression: str) -> None:
    proc, files, _ = tree
    async with client_for(proc) as c:
        res = await transfer.download_dir(c, "sub", tmp_path, compression=compression)  # type: ignore[arg-type]
        assert res.extracted and res.refused == [] and res.members >= 3
        assert (tmp_path / "sub" / "b.bin").read_bytes() == files["sub/b.bin"]
        assert (tmp_path / "sub" / "deeper" / "c.csv").read_bytes() == files["sub/deeper/c.csv"]
        assert not (tmp_path / "sub" / "link_up").exists()
        with pytest.raises(LocalPathRefused):
            await transfer.download_dir(c, "sub", tmp_path, compression=compression)  # type: ignore[arg-type]
        raw = await transfer.download_dir(c, "sub", tmp_path, "sub-archive", extract=False,
                                          compression=compression)  # type: ignore[arg-type]
        assert raw.path.is_file() and raw.path.name.startswith("sub-archive.tar")
    assert names(tmp_path) == ["sub", raw.path.name]


def test_extraction_refuses_escaping_members(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE,
                link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            info.type = kind
            info.linkname = link
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        add("top/ok.txt", b"fine")
        add("../escape.txt")
        add("/abs/escape.txt")
        add("top/../../escape2.txt")
        add("other/elsewhere.txt")
        add("top/link", kind=tarfile.SYMTYPE, link="/etc/passwd")
        add("top/hard", kind=tarfile.LNKTYPE, link="../../escape.txt")
    archive = tmp_path / "evil.tar"
    archive.write_bytes(buf.getvalue())
    dest = tmp_path / "dest"
    dest.mkdir()
    members, refused = transfer_dir._extract_into(archive, "none", dest / "top", False)
    assert members == 1 and len(refused) == 6
    assert (dest / "top" / "ok.txt").read_bytes() == b"fine"
    assert names(tmp_path) == ["dest", "evil.tar"]
    assert sorted(p.name for p in dest.iterdir()) == ["top"]


async def test_compressed_download_saves_bytes_and_resumes(tree: Tree, tmp_path: Path) -> None:
    proc, files, _ = tree
    data = files["text.log"]
    async with client_for(proc) as c:
        res = await transfer.download(c, "text.log", tmp_path, compress=True)
    assert res.compressed and res.wire_bytes < len(data) / 5
    assert res.path.read_bytes() == data
    # Cut mid-way: the rest comes uncompressed with Range, and the digest still matches.
    big = proc.root / "big.log"
    big.write_bytes(os.urandom(MB) + data * 2)
    with CutProxy(proc.port, down_after=400_000, cuts=2) as proxy:
        async with client_for(proc, proxy.url) as c:
            res2 = await transfer.download(c, "big.log", tmp_path, compress=True)
    assert res2.path.read_bytes() == big.read_bytes() and res2.attempts > 1
