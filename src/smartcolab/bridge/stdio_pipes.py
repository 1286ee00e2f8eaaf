"""Serve MCP over stdin/stdout with event-loop pipes instead of worker threads.

The SDK's ``stdio_server`` reads and writes through ``anyio.wrap_file``: every
line read, every write and every flush is a round trip to a worker thread, three
per tool call, each a few context switches on a busy machine.  Here stdin and
stdout are asyncio pipe transports on private duplicates of fds 0 and 1, so a
message costs no thread at all.  As in the SDK, fd 0 then reads the null device
and fd 1 points at stderr while serving, so stray prints and children never touch
the JSON-RPC channel; both are restored on exit.

Used only where it can work (POSIX, stdin and stdout are pipes, sockets or
terminals); everywhere else, or with ``SMARTCOLAB_STDIO=threads``, the SDK's
transport serves.  The framing (one JSON message per line, UTF-8) is the SDK's,
which parses and writes the messages itself: only the byte transport differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import AsyncIterator
from typing import Any, cast

from mcp.server import MCPServer
from mcp.server.stdio import stdio_server

ENV_SWITCH = "SMARTCOLAB_STDIO"
# A JSON-RPC line may carry a large argument (code, file names); the SDK has no cap.
MAX_LINE_BYTES = 256 * 1024 * 1024


class PipeLines:
    """``async for line in ...`` over a pipe, like the SDK's wrapped text file."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    def __aiter__(self) -> PipeLines:
        return self

    async def __anext__(self) -> str:
        line = await self._reader.readline()
        if not line:
            raise StopAsyncIteration
        return line.decode("utf-8", errors="replace")


class PipeWriter:
    """``write`` + ``flush`` onto a pipe transport; ``flush`` waits while the pipe is full."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def write(self, text: str) -> None:
        self._writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self._writer.drain()


def usable(server: MCPServer, env: dict[str, str] | None = None) -> bool:
    """Whether the pipe transport applies here (else the SDK's threaded one serves)."""
    env = dict(os.environ) if env is None else env
    if sys.platform == "win32" or env.get(ENV_SWITCH, "").lower() == "threads":
        return False
    if not hasattr(server, "_lowlevel_server"):  # an SDK that moved its runner: use its own
        return False
    try:
        return all(_pipe_like(os.fstat(fd).st_mode) for fd in (0, 1))
    except OSError:
        return False


def _pipe_like(mode: int) -> bool:
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


@contextlib.asynccontextmanager
async def _claimed_pipes() -> AsyncIterator[tuple[PipeLines, PipeWriter]]:
    import fcntl

    loop = asyncio.get_running_loop()
    wire_in = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    wire_out = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
    transports: list[asyncio.BaseTransport] = []
    try:
        sys.stdout.flush()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(2, 1)
        reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
        read_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader),
            os.fdopen(fcntl.fcntl(wire_in, fcntl.F_DUPFD_CLOEXEC, 3), "rb", buffering=0))
        transports.append(read_transport)
        write_transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin,
            os.fdopen(fcntl.fcntl(wire_out, fcntl.F_DUPFD_CLOEXEC, 3), "wb", buffering=0))
        transports.append(write_transport)
        writer = asyncio.StreamWriter(write_transport, protocol, None, loop)
        yield PipeLines(reader), PipeWriter(writer)
    finally:
        for transport in transports:
            transport.close()
        # The transports made the wire non-blocking; give it back to fds 0 and 1 as it was.
        for wire, fd in ((wire_in, 0), (wire_out, 1)):
            with contextlib.suppress(OSError):
                os.set_blocking(wire, True)
                os.dup2(wire, fd)
            os.close(wire)


async def serve(server: MCPServer) -> None:
    """Run ``server`` over stdio: event-loop pipes where usable, else the SDK's transport."""
    if not usable(server):
        await server.run_stdio_async()
        return
    lowlevel: Any = getattr(server, "_lowlevel_server")  # noqa: B009 - the SDK's own runner
    async with _claimed_pipes() as (lines, writer), stdio_server(
            stdin=cast(Any, lines), stdout=cast(Any, writer)) as (read_stream, write_stream):
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
