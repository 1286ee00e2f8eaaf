"""Our stdio transport (mcp/transports/stdio.py) under the SDK's server, spoken to line by line:
what the SDK's own transport does must still hold (bad lines, big lines, EOF, stray
output kept off the wire)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from support.runtime_proc import subprocess_env

SERVER = textwrap.dedent("""
    import os, sys
    import anyio
    from mcp.server import MCPServer
    from smartcolab.mcp.transports import stdio

    server = MCPServer("t")

    @server.tool()
    def size(text: str) -> int:
        return len(text)

    @server.tool()
    def stray() -> str:
        os.write(1, b"not json\\n")  # a child's or a library's print must miss the wire
        print("also not json", flush=True)
        return "ok"

    async def main() -> None:
        low = server._lowlevel_server
        async with stdio.stdio_streams() as (r, w):
            assert stdio._is_pipe(0) is False  # fd 0 was diverted while serving
            await low.run(r, w, low.create_initialization_options())
        sys.stderr.write("closed\\n")

    anyio.run(main)
""")
INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "raw", "version": "0"}}}


def line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def call(n: int, tool: str, **args: Any) -> bytes:
    return line({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                 "params": {"name": tool, "arguments": args}})


def converse(tmp_path: Path, payload: bytes, ids: set[int]) -> tuple[list[dict[str, Any]], str,
                                                                     int]:
    """Send everything, read until every id in ``ids`` is answered, then EOF: the server
    must exit by itself (requests still in flight at EOF are cut by the SDK, so wait)."""
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=subprocess_env({}))
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    err: list[bytes] = []
    drain = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    drain.start()
    feed = threading.Thread(target=proc.stdin.write, args=(payload,), daemon=True)
    feed.start()
    replies: list[dict[str, Any]] = []
    watchdog = threading.Timer(90, proc.kill)  # a lost answer fails the test, never hangs it
    watchdog.start()
    try:
        while not ids <= {r.get("id") for r in replies}:
            raw = proc.stdout.readline()
            assert raw, "the server closed stdout before answering"
            replies.append(json.loads(raw))  # every line on the wire is JSON
        feed.join(60)
        proc.stdin.close()
        code = proc.wait(60)
        assert proc.stdout.read() == b""
    finally:
        watchdog.cancel()
        proc.kill()
    drain.join(10)
    return replies, b"".join(err).decode("utf-8", "replace"), code


def by_id(replies: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {r["id"]: r for r in replies if "id" in r}


def test_bad_lines_big_lines_and_stray_output_then_eof_closes(tmp_path: Path) -> None:
    big = "é" * (3 * 1024 * 1024)  # 6 MB of UTF-8 in one line: above the read-ahead cap
    notified = line({"jsonrpc": "2.0", "method": "notifications/initialized"})
    payload = (line(INIT) + notified + b"this is not json\n" + b"\n"
               + call(1, "size", text=big) + call(2, "stray") + call(3, "size", text="ab"))
    replies, err, code = converse(tmp_path, payload, {0, 1, 2, 3})
    got = by_id(replies)
    assert code == 0 and "closed" in err, err[-2000:]
    assert got[0]["result"]["serverInfo"]["name"] == "t"
    assert got[1]["result"]["structuredContent"] == {"result": len(big)}
    assert got[2]["result"]["content"][0]["text"] == "ok"
    assert got[3]["result"]["structuredContent"] == {"result": 2}
    assert "not json" in err  # the stray output went to stderr


@pytest.mark.parametrize("crlf", [False, True])
def test_many_calls_in_one_write_lf_or_crlf(tmp_path: Path, crlf: bool) -> None:
    calls = b"".join(call(i, "size", text="y" * i) for i in range(1, 200))
    payload = line(INIT) + line({"jsonrpc": "2.0", "method": "notifications/initialized"})
    payload += calls.replace(b"\n", b"\r\n") if crlf else calls
    replies, err, code = converse(tmp_path, payload, set(range(200)))
    got = by_id(replies)
    assert code == 0, err[-2000:]
    assert [got[i]["result"]["structuredContent"]["result"] for i in range(1, 200)] == list(
        range(1, 200))
