"""The runtime's file endpoints over real HTTP (bearer auth, as curl would send)."""

from __future__ import annotations

import gzip
import io
import os
import socket
import tarfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from urllib.parse import quote

import httpx2
import pytest

from smartcolab.runtime.server import ServerHandle, serve_in_thread
from support.files_helpers import HOSTILE_PATHS, sha, start_tree_runtime
from support.runtime_proc import RuntimeProc

Tree = tuple[RuntimeProc, dict[str, bytes], Path]
# Plain HTTP on loopback needs no CA bundle, and httpx2's one-shot calls load it each time
# (about 60 ms of CPU per call; the hostile-path test alone makes 150 calls).
http_get = partial(httpx2.get, verify=False)
http_put = partial(httpx2.put, verify=False)
http_delete = partial(httpx2.delete, verify=False)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tree]:
    base = Path(tmp_path_factory.mktemp("files-server"))
    proc, files = start_tree_runtime(base)
    try:
        yield proc, files, base
    finally:
        proc.stop()


def get(proc: RuntimeProc, endpoint: str, **params: object) -> httpx2.Response:
    return http_get(f"{proc.url}{endpoint}", params=params, headers=proc.headers, timeout=30)


def test_listing_top_level_skips_state_dir(tree: Tree) -> None:
    proc, _files, _ = tree
    listing = get(proc, "/files").json()
    names = {e["name"] for e in listing["entries"]}
    assert {"a.txt", "sub", "odd", "big.bin"} <= names
    assert ".smartcolab" not in names
    by_name = {e["name"]: e for e in listing["entries"]}
    assert by_name["a.txt"] == {**by_name["a.txt"], "type": "file", "size": 6, "path": "a.txt"}
    assert by_name["sub"]["type"] == "dir"
    # Links out are shown as links, never followed; a link inside shows its target.
    assert by_name["link_out_file"]["type"] == "symlink"
    assert by_name["link_out_dir"]["type"] == "symlink"
    assert by_name["link_in"]["type"] == "file" and by_name["link_in"]["size"] == 6
    assert ".smartcolab" in {e["name"] for e in get(proc, "/files", include_state="true").json()["entries"]}


def test_listing_recursive_pattern_and_pagination(tree: Tree) -> None:
    proc, _files, _ = tree
    rec = get(proc, "/files", path="sub", recursive="true").json()
    paths = {e["path"] for e in rec["entries"]}
    assert {"sub/b.bin", "sub/deeper", "sub/deeper/c.csv", "sub/link_up"} <= paths
    assert not any("secret" in p for p in paths)  # sub/link_up points out: not descended
    csv = get(proc, "/files", recursive="true", pattern="*.csv").json()
    assert [e["path"] for e in csv["entries"]] == ["sub/deeper/c.csv"]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = get(proc, "/files", recursive="true", limit=3,
                   **({"cursor": cursor} if cursor else {})).json()
        seen += [e["path"] for e in page["entries"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    full = get(proc, "/files", recursive="true").json()
    assert seen == [e["path"] for e in full["entries"]] and pages > 2
    assert full["total"] == len(seen)
    bad = get(proc, "/files", recursive="false", limit=3, cursor=page_cursor(proc))
    assert bad.status_code == 422 and "cursor" in bad.json()["error"]["message"]
    assert get(proc, "/files", cursor="garbage!!").status_code == 422


def page_cursor(proc: RuntimeProc) -> str:
    cursor: str = get(proc, "/files", recursive="true", limit=1).json()["next_cursor"]
    return cursor


def test_missing_path_is_404_and_file_listing_is_one_entry(tree: Tree) -> None:
    proc, _, _ = tree
    r = get(proc, "/files", path="nope/missing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "file_not_found"
    one = get(proc, "/files", path="a.txt").json()
    assert [e["path"] for e in one["entries"]] == ["a.txt"]


def test_stat_hash_and_cache(tree: Tree) -> None:
    proc, files, base = tree
    st = get(proc, "/files/stat", path="sub/b.bin").json()
    assert st["sha256"] == sha(files["sub/b.bin"]) and st["size"] == 200_000
    assert st["etag"] and st["type"] == "file"
    assert get(proc, "/files/stat", path="sub/b.bin", hash="false").json()["sha256"] is None
    # Changing the file (size + mtime) invalidates the cached digest.
    p = base / "root" / "sub" / "b.bin"
    p.write_bytes(b"changed")
    st2 = get(proc, "/files/stat", path="sub/b.bin").json()
    assert st2["sha256"] == sha(b"changed") and st2["etag"] != st["etag"]
    p.write_bytes(files["sub/b.bin"])
    assert get(proc, "/files/stat", path="sub").json()["type"] == "dir"
    # Same size and mtime: the cached digest is served without reading the file again,
    # which is how we can see the cache at work.
    st3 = get(proc, "/files/stat", path="sub/b.bin").json()
    before = p.stat()
    flipped = bytearray(files["sub/b.bin"])
    flipped[0] ^= 0xFF
    p.write_bytes(bytes(flipped))
    os.utime(p, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert get(proc, "/files/stat", path="sub/b.bin").json()["sha256"] == st3["sha256"]
    p.write_bytes(files["sub/b.bin"])


def test_content_ranges_and_if_range(tree: Tree) -> None:
    proc, files, _ = tree
    data = files["big.bin"]
    full = get(proc, "/files/content", path="big.bin")
    assert full.status_code == 200 and full.content == data
    assert full.headers["accept-ranges"] == "bytes"
    assert int(full.headers["content-length"]) == len(data)
    etag = full.headers["etag"]
    url = f"{proc.url}/files/content?path=big.bin"
    cases = {"bytes=10-19": data[10:20], "bytes=1000-": data[1000:], "bytes=-5": data[-5:],
             f"bytes=0-{len(data) + 100}": data}
    for rng, want in cases.items():
        r = http_get(url, headers={**proc.headers, "Range": rng})
        assert r.status_code == 206, rng
        assert r.content == want
        assert r.headers["content-range"].endswith(f"/{len(data)}")
    for bad in (f"bytes={len(data)}-", "bytes=5-2", "bytes=x-y", "items=0-1", "bytes=-"):
        r = http_get(url, headers={**proc.headers, "Range": bad})
        assert r.status_code == 416, bad
        assert r.json()["error"]["code"] == "range_not_satisfiable"
    same = http_get(url, headers={**proc.headers, "Range": "bytes=100-", "If-Range": etag})
    assert same.status_code == 206 and same.content == data[100:]
    stale = http_get(url, headers={**proc.headers, "Range": "bytes=100-",
                                     "If-Range": '"0-0"'})
    assert stale.status_code == 200 and stale.content == data
    head = httpx2.head(url, headers=proc.headers)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(data))
    assert head.content == b""


def test_content_gzip_when_asked(tree: Tree) -> None:
    proc, files, _ = tree
    url = f"{proc.url}/files/content?path=text.log"
    with httpx2.stream("GET", url + "&compress=true", headers=proc.headers) as r:
        raw = b"".join(r.iter_raw())
        assert r.headers["content-encoding"] == "gzip"
    assert gzip.decompress(raw) == files["text.log"]
    assert len(raw) < len(files["text.log"]) / 5
    # Unless asked, and for already-compressed formats, files come as they are.
    plain = http_get(url, headers=proc.headers)
    assert "content-encoding" not in plain.headers and plain.content == files["text.log"]
    (proc.root / "pic.png").write_bytes(b"p" * 5000)
    png = http_get(f"{proc.url}/files/content?path=pic.png&compress=true", headers=proc.headers)
    assert "content-encoding" not in png.headers and png.content == b"p" * 5000


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_archive_of_directory(tree: Tree, compression: str) -> None:
    proc, files, _ = tree
    r = get(proc, "/files/archive", path="sub", compression=compression)
    assert r.status_code == 200
    raw = r.content
    if compression == "zstd":
        import zstandard

        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
    mode = "r:gz" if compression == "gzip" else "r:"
    with tarfile.open(fileobj=io.BytesIO(raw), mode=mode) as tar:
        names = tar.getnames()
        member = tar.extractfile("sub/b.bin")
        assert member is not None and member.read() == files["sub/b.bin"]
    assert "sub/deeper/c.csv" in names
    assert not any("secret" in n for n in names)
    assert get(proc, "/files/archive", path="a.txt").status_code == 400
    assert get(proc, "/files/archive", path="sub", compression="rar").status_code == 422


def test_zstd_missing_gives_clear_422(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from smartcolab.runtime.files import archive
    from smartcolab.shared.errors import InvalidInput

    real = importlib.import_module

    def no_zstd(name: str, package: str | None = None) -> object:
        if name == "zstandard":
            raise ImportError(name)
        return real(name, package)

    monkeypatch.setattr(archive.importlib, "import_module", no_zstd)
    with pytest.raises(InvalidInput, match=r"smart-colab-mcp\[zstd\]"):
        archive.zstd_module()


def test_hostile_paths_never_escape(tree: Tree) -> None:
    proc, _, _ = tree
    escapes = []
    for hostile in HOSTILE_PATHS:
        for endpoint in ("/files", "/files/stat", "/files/content", "/files/archive"):
            r = get(proc, endpoint, path=hostile)
            if r.status_code == 200 and b"TOP SECRET" in r.content:
                escapes.append((endpoint, hostile))
            if r.status_code == 200 and endpoint == "/files":
                assert all(e["root"] == str(proc.root) for e in r.json()["entries"])
            assert r.status_code in (200, 400, 403, 404, 422), (endpoint, hostile, r.text)
        # The raw query carries the hostile bytes exactly as typed (no client encoding).
        raw = http_get(f"{proc.url}/files/content?path={hostile}", headers=proc.headers)
        if raw.status_code == 200 and b"TOP SECRET" in raw.content:
            escapes.append(("raw", hostile))
        put = http_put(f"{proc.url}/files/content", params={"path": hostile},
                         headers=proc.headers, content=b"pwned")
        if put.status_code == 200:  # a literal odd name such as '..\\x' or '%2e%2e/x'
            landed = proc.root / put.json()["path"]
            assert landed.resolve().is_relative_to(proc.root) and landed.read_bytes() == b"pwned"
            landed.unlink()
    assert escapes == []
    assert sorted(p.name for p in proc.root.parent.iterdir()) == ["outside_dir", "root",
                                                                 "secret.txt"]
    assert [p.name for p in (proc.root.parent / "outside_dir").iterdir()] == ["secret.txt"]
    assert (proc.root.parent / "secret.txt").read_bytes() == b"TOP SECRET"
    assert get(proc, "/files/content", path="../secret.txt").json()["error"]["code"] == \
        "path_outside_roots"
    assert get(proc, "/files/content", path="link_out_file").status_code == 403


@pytest.mark.parametrize(("path", "status"), [
    ("a\x00b", 422), ("x" * 300, 422), ("d/" * 2100, 422)])
def test_malformed_paths_are_refused_clearly(tree: Tree, path: str, status: int) -> None:
    proc, _, _ = tree
    r = get(proc, "/files/stat", path=path)
    assert r.status_code == status
    assert r.json()["error"]["message"]


def test_awkward_names_round_trip(tree: Tree) -> None:
    proc, files, _ = tree
    for rel in ("odd/a&b #1?.txt", "odd/caf\u00e9 \u65e5\u672c.txt"):
        r = get(proc, "/files/content", path=rel)
        assert r.status_code == 200 and r.content == files[rel]
        listed = get(proc, "/files", path="odd").json()["entries"]
        assert rel in {e["path"] for e in listed}
    # The same name percent-encoded by hand in the raw query.
    q = quote("odd/a&b #1?.txt", safe="")
    r = http_get(f"{proc.url}/files/content?path={q}", headers=proc.headers)
    assert r.content == files["odd/a&b #1?.txt"]


def test_upload_overwrite_and_delete(tree: Tree) -> None:
    proc, _, _ = tree
    url = f"{proc.url}/files/content"
    body = b"payload " * 1000
    r = http_put(url, params={"path": "up/new.bin"}, headers={
        **proc.headers, "X-SC-Content-SHA256": sha(body)}, content=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"path": "up/new.bin", "size": len(body), "sha256": sha(body),
                        "overwritten": False}
    assert (proc.root / "up" / "new.bin").read_bytes() == body
    again = http_put(url, params={"path": "up/new.bin"}, headers=proc.headers, content=b"x")
    assert again.status_code == 409 and again.json()["error"]["code"] == "file_exists"
    ok = http_put(url, params={"path": "up/new.bin", "overwrite": "true"},
                    headers=proc.headers, content=b"x")
    assert ok.status_code == 200 and ok.json()["overwritten"] is True
    wrong = http_put(url, params={"path": "up/other.bin"}, headers={
        **proc.headers, "X-SC-Content-SHA256": sha(b"something else")}, content=body)
    assert wrong.status_code == 422 and "nothing was written" in wrong.json()["error"]["message"]
    assert not (proc.root / "up" / "other.bin").exists()
    assert [p.name for p in (proc.root / "up").iterdir()] == ["new.bin"]  # no temp left
    st = get(proc, "/files/stat", path="up/new.bin").json()
    assert st["sha256"] == sha(b"x")
    assert http_delete(f"{proc.url}/files", params={"path": "up/new.bin"},
                         headers=proc.headers).status_code == 400  # no confirm
    assert http_delete(f"{proc.url}/files", params={"path": "up", "confirm": "true"},
                         headers=proc.headers).status_code == 400  # a directory
    d = http_delete(f"{proc.url}/files", params={"path": "up/new.bin", "confirm": "true"},
                      headers=proc.headers)
    assert d.status_code == 200 and d.json() == {"path": "up/new.bin", "deleted": True}
    assert not (proc.root / "up" / "new.bin").exists()
    gone = http_delete(f"{proc.url}/files", params={"path": "up/new.bin", "confirm": "true"},
                         headers=proc.headers)
    assert gone.status_code == 404
    state = http_put(url, params={"path": ".smartcolab/evil"}, headers=proc.headers,
                       content=b"x")
    assert state.status_code == 403


def test_delete_link_removes_link_not_target(tree: Tree) -> None:
    proc, _, base = tree
    link = proc.root / "tmp_link"
    link.symlink_to(proc.root / "a.txt")
    r = http_delete(f"{proc.url}/files", params={"path": "tmp_link", "confirm": "true"},
                      headers=proc.headers)
    assert r.status_code == 200
    assert not link.is_symlink() and (proc.root / "a.txt").exists()
    out = http_delete(f"{proc.url}/files", params={"path": "link_out_file", "confirm": "true"},
                        headers=proc.headers)
    assert out.status_code == 200  # the link lives inside the root; its target is untouched
    assert (base / "secret.txt").read_bytes() == b"TOP SECRET"
    (proc.root / "link_out_file").symlink_to(base / "secret.txt")


@pytest.fixture(scope="module")
def small_limit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    root = Path(tmp_path_factory.mktemp("small-limit"))
    handle = serve_in_thread(root=root, port=0, banner=False, max_upload_bytes=100_000,
                             start_main_session=False)
    try:
        yield handle
    finally:
        handle.stop()


def test_upload_size_limit_up_front_and_while_streaming(small_limit: ServerHandle) -> None:
    h = {"Authorization": f"Bearer {small_limit.secret}"}
    url = f"{small_limit.url}/files/content"
    r = http_put(url, params={"path": "big"}, headers=h, content=b"x" * 100_001)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count
        for _ in range(20):
            yield b"y" * 10_000

    r = http_put(url, params={"path": "big"}, headers=h, content=chunks())
    assert r.status_code == 413
    root = small_limit.config.roots[0]
    assert not (root / "big").exists()
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]
    ok = http_put(url, params={"path": "fits"}, headers=h, content=b"z" * 100_000)
    assert ok.status_code == 200


def test_interrupted_upload_leaves_nothing(small_limit: ServerHandle) -> None:
    import time

    root = small_limit.config.roots[0]

    def temps() -> list[Path]:
        return [p for p in root.iterdir() if ".sc-upload-" in p.name]

    host, port = small_limit.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall((f"PUT /files/content?path=cut.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   f"Authorization: Bearer {small_limit.secret}\r\n"
                   "Content-Length: 90000\r\n\r\n").encode() + b"a" * 40_000)
        # Hang up only once the server is streaming into its temp file, so the check
        # below cannot run before the upload has even started.
        deadline = time.monotonic() + 20
        while not temps() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert temps(), "the server never started streaming the upload"
    deadline = time.monotonic() + 20
    while temps() and time.monotonic() < deadline:  # the server notices the hang-up, cleans up
        time.sleep(0.05)
    assert not (root / "cut.bin").exists()
    assert not [p for p in root.iterdir() if ".sc-upload-" in p.name]
