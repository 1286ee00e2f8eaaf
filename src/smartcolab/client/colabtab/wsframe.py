"""MCP JSON-RPC over a WebSocket: one message per text frame, usable on both ends.

The MCP SDK 2.x has no WebSocket transport; the Colab page speaks MCP over one (it is
the MCP *server*, connecting out to our relay; we are the *client*).  ``mcp_streams``
turns an open ``websockets`` connection (server or client side) into the pair of
streams the SDK's ``ClientSession`` and lowlevel ``Server.run`` take, as its stdio
transport does: a frame that is not a JSON-RPC message arrives on the read stream as
an ``Exception`` (the session reports it and goes on), a binary frame likewise, and
the socket's end closes the read stream (the session then sees the connection end).

The caller owns the connection: leaving the context stops the two pumps, not the socket.
The frame size cap is the connection's own (``max_size`` of ``serve``/``connect``):
``MAX_FRAME`` is what both of our ends use.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage
from mcp.types import jsonrpc_message_adapter
from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed

__all__ = ["MAX_FRAME", "SUBPROTOCOL", "ReadStream", "WriteStream", "mcp_streams"]

log = logging.getLogger(__name__)

SUBPROTOCOL = "mcp"
# A get_cells answer carries every cell's outputs (images base64): generous, but bounded.
MAX_FRAME = 32 * 1024 * 1024

ReadStream = MemoryObjectReceiveStream[SessionMessage | Exception]
WriteStream = MemoryObjectSendStream[SessionMessage]


def parse_frame(frame: str | bytes) -> SessionMessage | Exception:
    """One frame as a message, or the reason it is not one (as a value, never raised)."""
    if isinstance(frame, bytes):
        return ValueError(f"a binary WebSocket frame ({len(frame)} bytes) where MCP sends text")
    try:
        return SessionMessage(jsonrpc_message_adapter.validate_json(frame, by_name=False))
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        return exc


def render(message: SessionMessage) -> str:
    return message.message.model_dump_json(by_alias=True, exclude_unset=True)


@asynccontextmanager
async def mcp_streams(ws: Connection) -> AsyncIterator[tuple[ReadStream, WriteStream]]:
    """``(read_stream, write_stream)`` for an MCP session over ``ws`` while inside."""
    # Unbuffered, as the SDK's own transports: a slow session holds the socket back
    # instead of piling frames up in memory.
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)

    async def pump_in() -> None:
        async with read_writer:
            try:
                async for frame in ws:
                    await read_writer.send(parse_frame(frame))
            except ConnectionClosed:
                pass  # an abrupt end is still an end: the read stream closes below
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # the session went away first

    async def pump_out() -> None:
        async with write_reader:
            try:
                async for message in write_reader:
                    await ws.send(render(message))
            except ConnectionClosed:
                # Nothing more can go out: end the read side too, so that a request
                # waiting for its answer learns the connection is gone.
                await read_writer.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(pump_in)
        tg.start_soon(pump_out)
        try:
            yield read_stream, write_stream
        finally:
            tg.cancel_scope.cancel()
            await read_stream.aclose()
            await write_stream.aclose()
