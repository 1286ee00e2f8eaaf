"""The official MCP conformance suite against ``smartcolab mcp --transport http``.

``@modelcontextprotocol/conformance`` (pinned in package.json) needs Node >= 22; the
npm package ``node`` (pinned too) brings that binary, so ``npm ci`` (scripts/test.sh)
sets both up on a fresh machine and the suite runs with ``node_modules/node/bin/node``
whatever Node the machine has.  The suite cannot send a bearer token: a small proxy
in this test adds it, and passes Host and Origin on untouched (the DNS-rebinding
scenario sends bad ones and must see them refused by the bridge).

The generic scenarios must pass.  The others drive the reference server's test
fixtures (tools such as ``test_simple_text``, resources under ``test://``, prompts),
which this server does not have: they are listed in ``NOT_APPLICABLE`` with the
reason, and a scenario in neither list fails the test (a new suite version is read,
not ignored).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn

from support.runtime_proc import subprocess_env

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "conformance-bearer-token-0123456789"

REQUIRED = {
    "server-initialize": "lifecycle",
    "ping": "ping",
    "tools-list": "tools/list",
    "logging-set-level": "logging/setLevel",
    "dns-rebinding-protection": "Host/Origin checks",
    "server-sse-multiple-streams": "several SSE streams at once",
    "resources-list": "resources/list",
}
_TOOLS = "calls the reference server's test tool"
NOT_APPLICABLE = {
    "completion-complete": "completes the reference server's prompt/resource arguments; "
                           "this server offers no completions",
    "tools-call-simple-text": _TOOLS + " test_simple_text",
    "tools-call-image": _TOOLS + " test_image_content",
    "tools-call-audio": _TOOLS + " test_audio_content",
    "tools-call-embedded-resource": _TOOLS + " test_embedded_resource",
    "tools-call-mixed-content": _TOOLS + " test_multiple_content_types",
    "tools-call-with-logging": _TOOLS + " test_tool_with_logging",
    "tools-call-error": _TOOLS + " test_error_handling",
    "tools-call-with-progress": _TOOLS + " test_tool_with_progress",
    "tools-call-sampling": _TOOLS + " test_sampling",
    "tools-call-elicitation": _TOOLS + " test_elicitation",
    "json-schema-2020-12": _TOOLS + " json_schema_2020_12_tool",
    "elicitation-sep1034-defaults": _TOOLS + " test_elicitation_sep1034_defaults",
    "elicitation-sep1330-enums": _TOOLS + " test_elicitation_sep1330_enums",
    "server-sse-polling": _TOOLS + " test_reconnection (it closes the stream mid-call); "
                          "the suite also sends protocol version 2025-03-26 there, for "
                          "which no priming event is sent",
    "resources-read-text": "reads the reference resource test://static-text",
    "resources-read-binary": "reads the reference resource test://static-binary",
    "resources-templates-read": "reads the reference template test://template/{id}/data",
    "resources-subscribe": "subscribes to a reference resource; no subscriptions here",
    "resources-unsubscribe": "unsubscribes from a reference resource; no subscriptions here",
    "prompts-list": "this server has no prompts and does not advertise the capability",
    "prompts-get-simple": "gets the reference prompt test_simple_prompt",
    "prompts-get-with-args": "gets the reference prompt test_prompt_with_arguments",
    "prompts-get-embedded-resource": "gets the reference prompt test_prompt_with_embedded_resource",
    "prompts-get-with-image": "gets the reference prompt test_prompt_with_image",
}


def node_tools() -> tuple[Path, Path]:
    """Node 22 and the suite's entry point, from npm ci (or $SMARTCOLAB_CONFORMANCE_DIR)."""
    base = Path(os.environ.get("SMARTCOLAB_CONFORMANCE_DIR", ROOT)) / "node_modules"
    node = base / "node" / "bin" / "node"
    suite = base / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
    if not (node.exists() and suite.exists()):
        pytest.skip(f"the conformance suite and Node 22 are not installed under {base}: "
                    "run `npm ci` (scripts/test.sh does)")
    return node, suite


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the bridge exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


class BearerProxy:
    """Forward every request to ``upstream`` with the bearer token added (streams too)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.client = httpx2.AsyncClient(timeout=None)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"]
                   if k.lower() not in (b"authorization", b"content-length")]
        headers.append((b"authorization", f"Bearer {TOKEN}".encode()))
        query = scope["query_string"].decode()
        url = self.upstream + scope["path"] + (f"?{query}" if query else "")
        request = self.client.build_request(scope["method"], url, headers=headers, content=body)
        response = await self.client.send(request, stream=True)
        try:
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": [(k, v) for k, v in response.headers.raw
                                    if k.lower() not in (b"content-length",
                                                         b"transfer-encoding")]})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx2.TransportError:
            pass  # the bridge ended a stream (or stopped): end ours too
        finally:
            await response.aclose()
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def bridge_url(tmp_path: Path) -> Iterator[str]:
    port, proxy_port = free_port(), free_port()
    env = subprocess_env({"SMARTCOLAB_MCP_TOKEN": TOKEN, "CHECKPOINT_DIR": str(tmp_path / "ckpt"),
                          "LOCAL_SAVE_DIR": str(tmp_path / "saved"),
                          "SMARTCOLAB_RUNTIMES": str(tmp_path / "none.toml")})
    env.pop("COLAB_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "smartcolab", "mcp", "--transport", "http",
                             "--port", str(port), "--log-level", "WARNING"],
                            env=env, cwd=tmp_path, stdin=subprocess.DEVNULL)
    server = uvicorn.Server(uvicorn.Config(BearerProxy(f"http://127.0.0.1:{port}"),
                                           host="127.0.0.1", port=proxy_port,
                                           log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    try:
        wait_listening(port, proc)
        thread.start()
        wait_listening(proxy_port)
        yield f"http://127.0.0.1:{proxy_port}/mcp"
    finally:
        proc.terminate()  # first: the proxy's open streams then end at once
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        server.should_exit = True
        thread.join(timeout=10)


def results(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Scenario name -> its checks (from ``server-<scenario>-<timestamp>/checks.json``)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for checks in sorted(out.glob("server-*/checks.json")):
        name = checks.parent.name.removeprefix("server-").rsplit("-", 6)[0]
        found[name] = json.loads(checks.read_text())
    return found


def test_conformance_suite_generic_scenarios_pass(bridge_url: str, tmp_path: Path) -> None:
    node, suite = node_tools()
    out = tmp_path / "conformance"
    run = subprocess.run([str(node), str(suite), "server", "--url", bridge_url, "--suite", "all",
                          "-o", str(out)], capture_output=True, text=True, timeout=300,
                         check=False)
    found = results(out)
    assert set(found) == set(REQUIRED) | set(NOT_APPLICABLE), (
        f"scenarios changed: new {sorted(set(found) - set(REQUIRED) - set(NOT_APPLICABLE))}, "
        f"gone {sorted(set(REQUIRED) | set(NOT_APPLICABLE) - set(found))}\n{run.stdout[-3000:]}")
    failing = {name: [f"{c['id']}: {c.get('errorMessage')}" for c in checks
                      if c["status"] == "FAILURE"]
               for name, checks in found.items() if name in REQUIRED}
    assert not any(failing.values()), failing
    for name in REQUIRED:
        assert any(c["status"] == "SUCCESS" for c in found[name]), (name, found[name])
