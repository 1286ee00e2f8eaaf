"""A directory as a tar stream, built on the fly: no temporary copy, bounded memory.

A worker thread runs ``tarfile`` in stream mode into a small writer that hands
chunks to the event loop through a bounded queue; the response drains the queue.
If the client goes away the worker notices at its next chunk and stops.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import importlib
import os
import tarfile
import threading
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any, Literal

from smartcolab.runtime.files.service import Confined, FileService, open_regular
from smartcolab.shared.errors import BadRequest, InvalidInput, RateLimited

Compression = Literal["none", "gzip", "zstd"]
CHUNK = 1024 * 1024
QUEUE_CHUNKS = 8
GZIP_LEVEL = 6
ZSTD_LEVEL = 3
_POLL_S = 0.5
# Archives built at once (each holds a thread of its own pool while it runs).
MAX_ARCHIVES = 4
_EXECUTOR: concurrent.futures.ThreadPoolExecutor | None = None
_IN_FLIGHT = [0]


class _Aborted(Exception):
    """The response was closed (client gone): the worker stops writing."""


def zstd_module() -> Any:
    """The optional ``zstandard`` module, or a clear 422 when it is not installed."""
    try:
        return importlib.import_module("zstandard")
    except ImportError:
        raise InvalidInput(
            "compression=zstd needs the optional package 'zstandard' on the runtime "
            "(pip install 'smart-colab-mcp[zstd]'); use compression=gzip or none instead",
            details={"reason": "zstd_not_installed"}) from None


class _QueueWriter:
    """A write-only file object whose bytes go to the event loop in ~1 MiB chunks."""

    def __init__(self, put: Callable[[bytes], None]) -> None:
        self._put = put
        self._buf = bytearray()

    def write(self, data: bytes) -> int:
        self._buf += data
        if len(self._buf) >= CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buf:
            self._put(bytes(self._buf))
            self._buf.clear()

    def close(self) -> None:
        self.flush()


def _members(service: FileService, base: Confined) -> list[tuple[Path, str]]:
    """(real path, name in the archive), skipping the state dir and links leading outside."""
    prefix = base.path.name or "root"
    out: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(base.path, followlinks=False):
        current = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames
                             if not service._skip(current / d, d) and not (current / d).is_symlink())
        rel_dir = current.relative_to(base.path)
        out.append((current, (Path(prefix) / rel_dir).as_posix()))
        for name in sorted(filenames):
            path = current / name
            if service._skip(path, name):
                continue
            real = Path(os.path.realpath(path))
            if path.is_symlink() and not any(real == r or r in real.parents for r in service.roots):
                continue
            if real.is_file():
                out.append((real, (Path(prefix) / rel_dir / name).as_posix()))
    return out


def _write_tar(service: FileService, base: Confined, compression: Compression,
               put: Callable[[bytes], None]) -> None:
    sink = _QueueWriter(put)
    outer: Any = sink
    if compression == "gzip":
        outer = gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)
    elif compression == "zstd":
        outer = zstd_module().ZstdCompressor(level=ZSTD_LEVEL).stream_writer(sink, closefd=False)
    with tarfile.open(fileobj=outer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for real, arcname in _members(service, base):
            try:
                if real.is_dir() and not real.is_symlink():
                    tar.addfile(tar.gettarinfo(str(real), arcname=arcname))
                    continue
                # Opened first, judged by fstat: a FIFO or link swapped in since the
                # walk is left out instead of blocking this thread forever.
                with open_regular(real) as f:
                    tar.addfile(tar.gettarinfo(arcname=arcname, fileobj=f), f)
            except (OSError, BadRequest):
                continue  # vanished, unreadable or not a regular file since the walk
    if outer is not sink:
        outer.close()
    sink.close()


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = concurrent.futures.ThreadPoolExecutor(MAX_ARCHIVES,
                                                          thread_name_prefix="sc-archive")
    return _EXECUTOR


async def tar_stream(service: FileService, base: Confined,
                     compression: Compression) -> AsyncGenerator[bytes, None]:
    """Yield the tar (optionally compressed) of ``base`` chunk by chunk.

    Archives run on their own small thread pool: however many are asked for, or
    however they stall, the default executor (file reads, hashing, /probe) stays free.
    """
    if compression == "zstd":
        zstd_module()
    if _IN_FLIGHT[0] >= MAX_ARCHIVES:
        raise RateLimited(f"{MAX_ARCHIVES} directory archives are being built already; "
                          "retry when one finishes", retry_after=5.0,
                          details={"reason": "archives_busy"})
    _IN_FLIGHT[0] += 1
    try:
        async for chunk in _tar_chunks(service, base, compression):
            yield chunk
    finally:
        _IN_FLIGHT[0] -= 1


async def _tar_chunks(service: FileService, base: Confined,
                      compression: Compression) -> AsyncGenerator[bytes, None]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=QUEUE_CHUNKS)
    stop = threading.Event()

    def put(item: bytes | BaseException | None) -> None:
        fut = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while True:
            try:
                fut.result(timeout=_POLL_S)
                return
            except concurrent.futures.TimeoutError:
                if stop.is_set():
                    fut.cancel()
                    raise _Aborted() from None

    def work() -> None:
        try:
            _write_tar(service, base, compression, put)
            put(None)
        except _Aborted:
            return
        except BaseException as exc:  # handed to the response, which aborts the stream
            try:
                put(exc)
            except _Aborted:
                return

    worker = asyncio.ensure_future(loop.run_in_executor(_executor(), work))
    try:
        while True:
            item = await queue.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        await worker
