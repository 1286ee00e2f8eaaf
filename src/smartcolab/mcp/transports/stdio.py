"""MCP over stdio without a worker-thread hop per message.

The SDK's ``stdio_server`` reads and writes through ``anyio.wrap_file``: every line
read, every write and every flush is handed to a worker thread and back (12 hops
for one tool call, about a fifth of the bridge's busy time in bench/profile_bridge.py).
Here stdin and stdout are asyncio pipes on the event loop instead, and the SDK's
own ``stdio_server`` is given them as its streams, so everything else stays the
SDK's: UTF-8, newline-delimited JSON, an invalid line passed on as an error, the
session closed at EOF.  The descriptors are claimed as the SDK claims them (fd 0
then reads EOF and fd 1 goes to stderr while serving, so a child's stray output
misses the wire; restored on exit).

Only pipes and sockets are served this way (what an MCP client spawns us with):
a terminal or a regular file, Windows, or an SDK without the claim helper gets the
SDK's own transport; so does ``SMARTCOLAB_STDIO=sdk`` (for A/B benches, or a way out).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, BinaryIO, cast

from mcp.server.stdio import stdio_server

# Complete lines waiting for the SDK, in bytes, above which stdin is not read (as the
# SDK's unbuffered hand-off does, a client that floods us is held back, not buffered).
HIGH_WATER = 4 * 1024 * 1024

FORCE_SDK = "SMARTCOLAB_STDIO"
Streams = tuple[Any, Any]


def _claim_helpers() -> tuple[Any, Any, Any] | None:
    try:
        from mcp.server import stdio as sdk

        return sdk._claim_fd, sdk._open_stdin_diversion, sdk._open_stdout_diversion
    except (ImportError, AttributeError):  # pragma: no cover - another SDK version
        return None


def _is_pipe(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class _Lines(asyncio.Protocol):
    """stdin as lines of text, read on the event loop (``async for line in ...``)."""

    def __init__(self) -> None:
        self._partial = bytearray()
        self._lines: deque[bytes] = deque()
        self._queued = 0
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None
        self.transport: asyncio.ReadTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.ReadTransport, transport)

    def data_received(self, data: bytes) -> None:
        self._partial += data
        end = self._partial.rfind(b"\n")
        if end < 0:
            return
        for line in bytes(self._partial[:end + 1]).splitlines(keepends=True):
            self._lines.append(line)
            self._queued += len(line)
        del self._partial[:end + 1]
        if self._queued > HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def _end(self) -> None:
        if not self._eof:
            self._eof = True
            if self._partial:  # a last line without its newline is still a line
                self._lines.append(bytes(self._partial))
                self._partial.clear()
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> str:
        while not self._lines:
            if self._eof:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        line = self._lines.popleft()
        self._queued -= len(line)
        if self._queued <= HIGH_WATER // 2 and self.transport is not None and not self._eof:
            self.transport.resume_reading()
        return line.decode("utf-8", errors="replace")


class _Writer(asyncio.Protocol):
    """stdout written on the event loop; ``flush`` waits while the pipe is full."""

    def __init__(self) -> None:
        self._paused = False
        self._drained: asyncio.Future[None] | None = None
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.resume_writing()  # nobody reads any more: writes are dropped, none waits

    async def write(self, text: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(text.encode("utf-8"))

    async def flush(self) -> None:
        # The transport writes at once when it can; only a full pipe makes us wait.
        while self._paused:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained


@contextlib.asynccontextmanager
async def stdio_streams() -> AsyncIterator[Streams]:
    """The SDK's read and write streams over this process's stdin and stdout."""
    helpers = _claim_helpers()
    if (sys.platform == "win32" or helpers is None or os.environ.get(FORCE_SDK) == "sdk"
            or not (_is_pipe(0) and _is_pipe(1))):
        async with stdio_server() as streams:
            yield streams
        return
    claim, stdin_diversion, stdout_diversion = helpers
    restores = []
    try:
        stdin_buffer, restore = claim(0, sys.stdin, "rb", stdin_diversion)
        restores.append(restore)
        stdout_buffer, restore = claim(1, sys.stdout, "wb", stdout_diversion)
        restores.append(restore)
        async with (_pipes(stdin_buffer, stdout_buffer) as (lines, writer),
                    stdio_server(stdin=cast(Any, lines), stdout=cast(Any, writer)) as streams):
            yield streams
    finally:
        for restore in reversed(restores):
            if restore is not None:
                restore()


@contextlib.asynccontextmanager
async def _pipes(stdin: BinaryIO, stdout: BinaryIO) -> AsyncIterator[tuple[_Lines, _Writer]]:
    loop = asyncio.get_running_loop()
    fds = (stdin.fileno(), stdout.fileno())
    # closefd=False: closing a transport must never close the descriptor it was given
    # (in the SDK's in-place fallback that is the process's own stdin or stdout).
    read_transport, lines = await loop.connect_read_pipe(
        _Lines, os.fdopen(fds[0], "rb", buffering=0, closefd=False))
    try:
        write_transport, writer = await loop.connect_write_pipe(
            _Writer, os.fdopen(fds[1], "wb", buffering=0, closefd=False))
        # Paused whenever anything is left unwritten: flush then means "all written".
        write_transport.set_write_buffer_limits(high=0)
        try:
            yield lines, writer
        finally:
            write_transport.close()
    finally:
        read_transport.close()
        for fd in fds:  # asyncio made them non-blocking; whoever holds them next expects not
            with contextlib.suppress(OSError):
                os.set_blocking(fd, True)
