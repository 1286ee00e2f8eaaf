"""Files under the runtime's roots: confinement, listing, stat with cached sha256, delete.

Every client path goes through :meth:`FileService.confine`, the one function that
decides whether a path may be touched: it resolves symlinks and ``..`` and refuses
anything that does not land inside a configured root.  Reads of whole files happen
in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import fnmatch
import hashlib
import json
import os
import stat as stat_mod
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from smartcolab.shared.errors import (
    BadRequest,
    FileNotFoundOnRuntime,
    Forbidden,
    InvalidInput,
    PathOutsideRoots,
)
from smartcolab.shared.protocol import FileEntry, FileList, FileStat

MAX_PATH_CHARS = 4096
MAX_NAME_BYTES = 255
HASH_CHUNK = 1024 * 1024
SHA_CACHE_SIZE = 4096
DEFAULT_LIST_LIMIT = 1000
MAX_LIST_LIMIT = 10_000
# A recursive listing stops scanning here: a listing must answer in bounded time.
MAX_SCAN_ENTRIES = 200_000
STATE_DIR_NAME = ".smartcolab"
UPLOAD_TMP_MARK = ".sc-upload-"

FileType = Literal["file", "dir", "symlink", "other"]


@dataclass(frozen=True)
class Confined:
    """A client path resolved inside one of the roots."""

    path: Path
    root: Path

    @property
    def rel(self) -> str:
        rel = self.path.relative_to(self.root).as_posix()
        return "" if rel == "." else rel


def etag_for(st: os.stat_result) -> str:
    """A strong validator that changes when the file's size or mtime changes."""
    return f'"{st.st_size:x}-{st.st_mtime_ns:x}"'


def _type_of(mode: int) -> FileType:
    if stat_mod.S_ISREG(mode):
        return "file"
    if stat_mod.S_ISDIR(mode):
        return "dir"
    if stat_mod.S_ISLNK(mode):
        return "symlink"
    return "other"


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_client_path(raw: str) -> str:
    """Refuse malformed paths (NUL, too long) with a message that says what to send."""
    if "\x00" in raw:
        raise InvalidInput("the path contains a NUL byte; send a plain path such as 'data/x.csv'",
                           details={"reason": "nul_byte"})
    if len(raw) > MAX_PATH_CHARS:
        raise InvalidInput(f"the path has {len(raw)} characters; at most {MAX_PATH_CHARS} are "
                           "accepted", details={"reason": "path_too_long"})
    for part in raw.replace("\\", "/").split("/"):
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise InvalidInput(f"a path component is longer than {MAX_NAME_BYTES} bytes: "
                               f"{part[:40]}...", details={"reason": "name_too_long"})
    return raw


class FileService:
    """File operations confined to ``roots``; the first root is the working root."""

    def __init__(self, roots: list[Path], state_dir: Path | None = None) -> None:
        if not roots:
            raise ValueError("at least one root is needed")
        self.roots = [Path(os.path.realpath(r)) for r in roots]
        self.state_dir = Path(os.path.realpath(state_dir)) if state_dir else None
        self._sha: OrderedDict[tuple[str, int, int], str] = OrderedDict()
        self._inflight: dict[tuple[str, int, int], asyncio.Future[str]] = {}

    # ------------------------------------------------------------ confinement
    def confine(self, raw: str, *, follow_final: bool = True) -> Confined:
        """Resolve a client path and check it stays inside a root.

        A relative path is relative to the working root; an absolute one must lie
        inside some root.  Symlinks are resolved (the last one too unless
        ``follow_final`` is false, as for deleting a link itself).
        """
        check_client_path(raw)
        text = raw.strip() or "."
        candidate = Path(text)
        if not candidate.is_absolute():
            candidate = self.roots[0] / candidate
        if follow_final:
            resolved = Path(os.path.realpath(candidate))
        else:
            parent = Path(os.path.realpath(candidate.parent))
            name = candidate.name
            resolved = parent / name if name not in ("", ".", "..") else Path(
                os.path.realpath(candidate))
        for root in self.roots:
            if _inside(resolved, root):
                return Confined(resolved, root)
        shown = ", ".join(str(r) for r in self.roots)
        raise PathOutsideRoots(
            f"'{raw[:200]}' resolves outside the runtime's roots ({shown}); use a path "
            "relative to the working root, or start the server with --root for more "
            "directories", details={"roots": [str(r) for r in self.roots]})

    def refuse_state_dir(self, target: Confined) -> None:
        """Writes and deletes never touch the runtime's own job store."""
        if self.state_dir is not None and _inside(target.path, self.state_dir):
            raise Forbidden("that path is inside the runtime's state directory, which "
                            "belongs to the server; choose another path")

    def existing(self, raw: str) -> tuple[Confined, os.stat_result]:
        target = self.confine(raw)
        try:
            return target, target.path.stat()
        except FileNotFoundError:
            raise FileNotFoundOnRuntime(f"no such file or directory: '{raw[:200]}'",
                                        details={"path": raw[:200]}) from None
        except NotADirectoryError:
            raise FileNotFoundOnRuntime(f"no such file or directory: '{raw[:200]}' (a parent "
                                        "is a file)") from None

    # ------------------------------------------------------------ listing
    def _skip(self, path: Path, name: str) -> bool:
        if UPLOAD_TMP_MARK in name:
            return True
        if name == STATE_DIR_NAME:
            return True
        return self.state_dir is not None and path == self.state_dir

    def _entry(self, de: os.DirEntry[str], root: Path) -> tuple[FileEntry, bool]:
        """One listing entry, and whether a recursive walk may descend into it."""
        path = Path(de.path)
        rel = path.relative_to(root).as_posix()
        lst = de.stat(follow_symlinks=False)
        if not de.is_symlink():
            kind = _type_of(lst.st_mode)
            return FileEntry(name=de.name, path=rel, root=str(root), type=kind,
                             size=lst.st_size if kind == "file" else 0,
                             mtime=lst.st_mtime), kind == "dir"
        target = Path(os.path.realpath(path))
        if any(_inside(target, r) for r in self.roots):
            try:
                st = target.stat()
            except OSError:
                st = lst
            kind = _type_of(st.st_mode)
            # Followed for its type and size, never descended: no loops, no escapes.
            return FileEntry(name=de.name, path=rel, root=str(root), type=kind,
                             size=st.st_size if kind == "file" else 0, mtime=st.st_mtime), False
        return FileEntry(name=de.name, path=rel, root=str(root), type="symlink", size=0,
                         mtime=lst.st_mtime), False

    def _scan(self, base: Confined, recursive: bool, pattern: str | None,
              include_state: bool) -> list[FileEntry]:
        found: list[FileEntry] = []
        stack = [base.path]
        scanned = 0
        while stack and scanned < MAX_SCAN_ENTRIES:
            current = stack.pop()
            try:
                with os.scandir(current) as it:
                    items = sorted(it, key=lambda d: d.name)
            except (PermissionError, FileNotFoundError, NotADirectoryError):
                continue
            for de in items:
                scanned += 1
                if not include_state and self._skip(Path(de.path), de.name):
                    continue
                try:
                    entry, descend = self._entry(de, base.root)
                except OSError:
                    continue
                if pattern is None or fnmatch.fnmatchcase(de.name, pattern):
                    found.append(entry)
                if recursive and descend:
                    stack.append(Path(de.path))
        found.sort(key=lambda e: e.path)
        return found

    def list(self, raw: str, *, recursive: bool = False, pattern: str | None = None,
             limit: int = DEFAULT_LIST_LIMIT, cursor: str | None = None,
             include_state: bool = False) -> FileList:
        """Entries under a directory (or the one entry of a file), paginated."""
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        target, st = self.existing(raw)
        query_key = _query_key(target.path, recursive, pattern, include_state)
        offset = _decode_cursor(cursor, query_key) if cursor else 0
        if stat_mod.S_ISDIR(st.st_mode):
            entries = self._scan(target, recursive, pattern, include_state)
        else:
            entries = [FileEntry(name=target.path.name, path=target.rel, root=str(target.root),
                                 type=_type_of(st.st_mode), size=st.st_size, mtime=st.st_mtime)]
        page = entries[offset:offset + limit]
        nxt = offset + len(page)
        return FileList(root=str(target.root), path=target.rel, entries=page, total=len(entries),
                        next_cursor=_encode_cursor(nxt, query_key) if nxt < len(entries) else None)

    # ------------------------------------------------------------ stat and hashing
    async def stat(self, raw: str, *, with_hash: bool = True) -> FileStat:
        target, st = self.existing(raw)
        kind = _type_of(st.st_mode)
        digest = await self.sha256(target.path, st) if with_hash and kind == "file" else None
        return FileStat(path=target.rel, root=str(target.root), type=kind,
                        size=st.st_size if kind == "file" else 0, mtime=st.st_mtime,
                        sha256=digest, etag=etag_for(st) if kind == "file" else None)

    async def sha256(self, path: Path, st: os.stat_result) -> str:
        """The file's digest, cached by (path, size, mtime_ns); one computation at a time."""
        key = (str(path), st.st_size, st.st_mtime_ns)
        cached = self._sha.get(key)
        if cached is not None:
            self._sha.move_to_end(key)
            return cached
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            digest = await asyncio.to_thread(hash_file, path)
            fut.set_result(digest)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # consumed here so no "never retrieved" warning
            raise
        finally:
            del self._inflight[key]
        self.remember(key, digest)
        return digest

    def remember(self, key: tuple[str, int, int], digest: str) -> None:
        self._sha[key] = digest
        while len(self._sha) > SHA_CACHE_SIZE:
            self._sha.popitem(last=False)

    # ------------------------------------------------------------ delete
    def delete(self, raw: str, *, confirm: bool) -> Confined:
        if not confirm:
            raise BadRequest("deleting needs confirm=true; nothing was deleted",
                             details={"reason": "confirm_required"})
        target = self.confine(raw, follow_final=False)
        self.refuse_state_dir(target)
        try:
            st = target.path.lstat()
        except FileNotFoundError:
            raise FileNotFoundOnRuntime(f"no such file: '{raw[:200]}'") from None
        if stat_mod.S_ISDIR(st.st_mode):
            raise BadRequest(f"'{raw[:200]}' is a directory; only files can be deleted",
                             details={"reason": "is_a_directory"})
        target.path.unlink()
        return target


_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
               | getattr(os, "O_CLOEXEC", 0))


def open_regular(path: Path | str, *, buffering: int = -1) -> BinaryIO:
    """Open a file for reading only if it is, at the moment of opening, a regular file.

    ``O_NONBLOCK`` keeps a FIFO swapped in after a ``stat`` from blocking the thread
    forever; ``O_NOFOLLOW`` refuses a symlink swapped in for the (already resolved)
    path; ``fstat`` on the opened descriptor judges what was actually opened.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadRequest("the file was replaced by a symbolic link while being opened; "
                             "retry", details={"reason": "not_a_file"}) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            raise BadRequest("not a regular file (a directory, FIFO, socket or device): "
                             "only regular files are read", details={"reason": "not_a_file"})
        if _OPEN_FLAGS & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=buffering)
    except BaseException:
        os.close(fd)
        raise


def hash_file(path: Path) -> str:
    """sha256 of a file read in chunks (hashlib releases the GIL on large buffers)."""
    h = hashlib.sha256()
    buf = bytearray(HASH_CHUNK)
    view = memoryview(buf)
    with open_regular(path, buffering=0) as f:
        while n := f.readinto(buf):  # type: ignore[attr-defined] # unbuffered: a FileIO
            h.update(view[:n])
    return h.hexdigest()


def _query_key(path: Path, recursive: bool, pattern: str | None, include_state: bool) -> str:
    text = json.dumps([str(path), recursive, pattern, include_state])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _encode_cursor(offset: int, query_key: str) -> str:
    raw = json.dumps({"o": offset, "q": query_key}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, query_key: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        offset = int(data["o"])
        same = data["q"] == query_key
    except (ValueError, KeyError, TypeError):
        raise InvalidInput("the cursor is not one this runtime gave out; start without a "
                           "cursor") from None
    if not same or offset < 0:
        raise InvalidInput("the cursor belongs to another listing (path, recursive or pattern "
                           "changed); start without a cursor")
    return offset
