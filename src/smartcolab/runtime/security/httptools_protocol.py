"""The guarded protocol on uvicorn's httptools implementation (llhttp, in C).

h11 parses in pure Python: on a short job, parsing the request and building the
response's head is a good part of the runtime's own CPU.  httptools does it in C; the
guards of ``connections.py`` (header deadline, per-address cap, one-segment responses)
are the same mixin.  One thing h11 gave for free is added here: a bound on a request's
head.  llhttp keeps no limit (a header may grow without end), so a head still incomplete
past ``h11_max_incomplete_event_size`` bytes (the bound uvicorn gives h11, which
``server.py`` sets above our own header and query limits) is answered 400 and the
connection closed, as h11 does.  The read in which a head begins is not counted (it may
hold the end of the previous request): the bound is that size plus one read.

Imported only when httptools is: ``connections.protocol_class`` chooses.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from smartcolab.runtime.security.connections import GuardedProtocol

# h11's default, for a Config that names none.
DEFAULT_MAX_HEAD_BYTES = 16 * 1024
# What uvicorn's h11 protocol answers to a head past the bound.
_TOO_LARGE = "Invalid HTTP request received."


class GuardedHttpToolsProtocol(GuardedProtocol, HttpToolsProtocol):
    """uvicorn's httptools protocol, guarded; the default where httptools is installed."""

    _in_head = False
    _head_bytes = 0

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.max_head_bytes = config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD_BYTES

    def _body_pending(self) -> bool:
        # uvicorn's on_message_complete sets it, unless the response was already complete.
        return self.cycle is not None and bool(self.cycle.more_body)

    def data_received(self, data: bytes) -> None:
        continued = self._in_head
        super().data_received(data)
        if continued and self._in_head:  # all of this read is the same unfinished head
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes and not self.transport.is_closing():
                self.logger.warning(_TOO_LARGE)
                self.send_400_response(_TOO_LARGE)

    # Parser callbacks: where a request's head begins and ends.
    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()
