"""The lean kernel message decoding (engine/wire.py) against jupyter_client's own."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
import zmq
import zmq.asyncio
from jupyter_client.session import Session

from smartcolab.runtime.engine.wire import decode, next_message, recv_now


def _frames(session: Session, msg_type: str = "execute_result") -> list[bytes]:
    parent = session.msg("execute_request", content={"code": "1+1"})
    msg = session.msg(msg_type, content={"data": {"text/plain": "2"}, "metadata": {},
                                         "execution_count": 3}, parent=parent)
    frames: list[bytes] = [b"topic", *session.serialize(msg)]
    return frames


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    for key in ("msg_id", "msg_type", "metadata", "content"):
        assert a[key] == b[key], key
    for key in ("header", "parent_header"):
        plain = {k: v for k, v in b[key].items() if k != "date"}
        assert {k: v for k, v in a[key].items() if k != "date"} == plain
        assert isinstance(a[key]["date"], str)  # left as the ISO text


def test_decode_matches_deserialize_but_dates() -> None:
    key = uuid.uuid4().hex.encode()
    ours, theirs = Session(key=key), Session(key=key)
    frames = _frames(Session(key=key))
    _, parts = theirs.feed_identities(frames)
    _same(decode(ours, frames), theirs.deserialize(parts))


def test_decode_refuses_a_forged_or_replayed_message() -> None:
    key = uuid.uuid4().hex.encode()
    session = Session(key=key)
    frames = _frames(Session(key=key))
    decode(session, frames)
    with pytest.raises(ValueError, match="Duplicate Signature"):
        decode(session, frames)
    forged = _frames(Session(key=b"another key"))
    with pytest.raises(ValueError, match="Invalid Signature"):
        decode(session, forged)
    unsigned = list(forged)
    unsigned[2] = b""  # [topic, DELIM, signature, ...]
    with pytest.raises(ValueError, match="Unsigned"):
        decode(session, unsigned)


def test_decode_falls_back_to_deserialize_without_a_key() -> None:
    session = Session(key=b"")
    msg = decode(session, _frames(Session(key=b"")))
    assert msg["content"]["data"] == {"text/plain": "2"}
    assert not isinstance(msg["header"]["date"], str)  # jupyter_client's own path


@pytest.mark.anyio
async def test_next_message_takes_queued_and_awaited_messages_in_order(tmp_path: Path) -> None:
    """Queued messages are taken straight off the socket, later ones after a poll, none
    lost or reordered; a quiet socket says Empty after its timeout."""
    key = uuid.uuid4().hex.encode()
    sender, ours = Session(key=key), Session(key=key)
    ctx = zmq.asyncio.Context()
    push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    try:
        push.bind(f"ipc://{tmp_path}/wire")
        pull.connect(f"ipc://{tmp_path}/wire")

        def send(n: int) -> None:
            msg = sender.msg("stream", content={"name": "stdout", "text": str(n)})
            push.send_multipart(sender.serialize(msg))

        for n in range(3):
            send(n)
        got = [await next_message(pull, ours, 5.0) for _ in range(3)]
        asyncio.get_running_loop().call_later(0.05, send, 3)
        got.append(await next_message(pull, ours, 5.0))  # arrives during the poll
        assert [m["content"]["text"] for m in got] == ["0", "1", "2", "3"]
        with pytest.raises(Empty):
            await next_message(pull, ours, 0.05)
        with pytest.raises(zmq.Again):
            recv_now(pull)
    finally:
        push.close(0)
        pull.close(0)
        ctx.term()
