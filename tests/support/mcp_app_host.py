"""A test host for the MCP App (tests/e2e/test_mcp_app.py).

* ``start_http_bridge``: a real ``smartcolab mcp --transport http`` subprocess;
* ``AppHost``: a loopback HTTP server that serves a host page built on the real
  ``app-bridge`` of ``@modelcontextprotocol/ext-apps`` (tests/e2e/mcp_app_host/host.js,
  bundled here with esbuild) and relays the page's MCP requests (``POST /relay``)
  to that bridge through the official Python client.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp.client.streamable_http import streamable_http_client

from mcp import Client
from support.runtime_proc import RuntimeProc, subprocess_env

REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO / "node_modules"
HOST_JS = REPO / "tests" / "e2e" / "mcp_app_host" / "host.js"
LISTENING = re.compile(rb"MCP Streamable HTTP on (http://127\.0\.0\.1:\d+/mcp)")
START_TIMEOUT_S = 60.0


def esbuild() -> Path:
    tool = NODE_MODULES / ".bin" / "esbuild"
    if not tool.exists():
        pytest.skip("node_modules lacks esbuild and ext-apps: run `npm ci` (scripts/test.sh does)")
    return tool


def bundle_host_page(out_dir: Path) -> Path:
    """host.js with ext-apps' app-bridge and its dependencies, as one browser module."""
    out = out_dir / "host.bundle.js"
    subprocess.run([str(esbuild()), str(HOST_JS), "--bundle", "--format=esm",
                    "--platform=browser", f"--outfile={out}", "--log-level=warning"],
                   check=True, cwd=REPO, timeout=120)
    return out


@dataclass
class HttpBridge:
    url: str
    token: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def start_http_bridge(tmp: Path, runtime: RuntimeProc, *extra: str) -> Iterator[HttpBridge]:
    """``smartcolab mcp --transport http`` on a free loopback port, for ``runtime``."""
    token = "mcp-app-test-token-0123456789"
    log_path = tmp / "bridge.log"
    args = [sys.executable, "-m", "smartcolab", "mcp", "--transport", "http",
            "--host", "127.0.0.1", "--port", "0", "--no-embedded",
            "--checkpoint-dir", str(tmp / "ckpt"), "--save-dir", str(tmp / "saved"), *extra]
    env = subprocess_env({"COLAB_URL": runtime.url, "COLAB_TOKEN": runtime.secret,
                          "SMARTCOLAB_MCP_TOKEN": token})
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while (found := LISTENING.search(log_path.read_bytes())) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the bridge did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield HttpBridge(found.group(1).decode(), token, proc, log_path)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


class AppHost:
    """The host page's server; ``call`` lets the test use the same MCP client."""

    def __init__(self, portal: BlockingPortal, client: Client, page_js: Path,
                 scenario: dict[str, Any]) -> None:
        self.portal = portal
        self.client = client
        self.relayed: list[str] = []
        self.scenario = scenario  # the tool call the page makes; a test may change it
        files = {"/": ("text/html", b'<!DOCTYPE html><html><head><meta charset="utf-8">'
                                    b'<title>test host</title></head><body>'
                                    b'<script type="module" src="/host.js"></script></body></html>'),
                 "/host.js": ("text/javascript", page_js.read_bytes())}
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/scenario":
                    self._send(200, "application/json", json.dumps(host.scenario).encode())
                    return
                kind, body = files.get(path, ("", b""))
                self._send(200 if body else 404, kind or "text/plain", body or b"not found")

            def do_POST(self) -> None:
                if self.path != "/relay":
                    self._send(404, "text/plain", b"not found")
                    return
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                try:
                    answer = host.call(request["method"], request.get("params") or {})
                    self._send(200, "application/json", json.dumps(answer).encode())
                except Exception as exc:  # the page shows it; the test fails on it
                    self._send(500, "application/json",
                               json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())

            def _send(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def call(self, method: str, params: dict[str, Any]) -> Any:
        """One MCP request through the official client, as JSON."""
        self.relayed.append(method if method != "tools/call" else f"tools/call {params['name']}")
        return self.portal.call(self._call, method, params)

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        if method == "tools/list":
            return _dump(await self.client.list_tools())
        if method == "resources/read":
            return _dump(await self.client.read_resource(params["uri"]))
        if method == "tools/call":
            return _dump(await self.client.call_tool(params["name"], params.get("arguments")))
        raise ValueError(f"this test host relays no {method}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def app_host(bridge: HttpBridge, page_js: Path, scenario: dict[str, Any]) -> Iterator[AppHost]:
    """An ``AppHost`` whose client is connected to ``bridge`` over Streamable HTTP."""
    with start_blocking_portal() as portal:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {bridge.token}"},
                                  timeout=120)
        client = Client(streamable_http_client(bridge.url, http_client=http))
        with portal.wrap_async_context_manager(client):
            host = AppHost(portal, client, page_js, scenario)
            try:
                yield host
            finally:
                host.close()
        portal.call(http.aclose)

