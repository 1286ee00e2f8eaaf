"""Connection hygiene against a real server: slowloris, the per-address cap, EMFILE logs.

The guards are checked on each HTTP parser's protocol (httptools', h11's).

Attackers connect from 127.0.0.2 (all of 127.0.0.0/8 is loopback on Linux), the
legitimate client from 127.0.0.1, so the per-address cap is seen doing its job.
Counts and times are bounded: at most 150 sockets, deadlines of seconds.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest

from smartcolab.shared.env import HTTP as HTTP_ENV
from support.runtime_proc import RuntimeProc, start_runtime, subprocess_env

HEADER_TIMEOUT_S = 1.0
CAP = 5
ATTACKER = "127.0.0.2"


def connect_from(source: str, port: int) -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


@pytest.fixture(scope="module", params=["httptools", "h11"])
def hygienic(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             ) -> Iterator[RuntimeProc]:
    """A server on each HTTP parser: httptools' protocol (the default) and h11's (the
    fallback), the same guards."""
    parser = str(request.param)
    if parser == "httptools":
        pytest.importorskip("httptools")
    proc = start_runtime(Path(tmp_path_factory.mktemp("conn")),
                         "--header-timeout", str(HEADER_TIMEOUT_S),
                         "--max-connections-per-client", str(CAP), env={HTTP_ENV: parser})
    try:
        assert f"HTTP/1.1 parser: {parser}" in proc.log()
        yield proc
    finally:
        proc.stop()


def received_until_closed(s: socket.socket, timeout: float) -> bytes | None:
    """All the server sent before closing this connection; None if still open."""
    s.settimeout(timeout)
    data = b""
    try:
        while chunk := s.recv(4096):
            data += chunk
    except TimeoutError:
        return None
    except OSError:
        pass
    return data


def test_slowloris_is_cut_off_and_capped(hygienic: RuntimeProc) -> None:
    """12 connections trickling a header from one address: 7 refused at once (a 429), the
    other 5 closed without an answer after the header deadline; the real client is
    served meanwhile.  Told apart by what they receive, not by when (a loaded machine
    may pass the 1 s deadline before the test looks)."""
    socks = [connect_from(ATTACKER, hygienic.port) for _ in range(12)]
    try:
        started = time.monotonic()
        for s in socks:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        for s in socks:
            with contextlib.suppress(OSError):  # a refused one may be closed already
                s.sendall(b"x")  # still trickling: does not extend the deadline
        r = httpx2.get(f"{hygienic.url}/probe", headers=hygienic.headers, timeout=10)
        assert r.status_code == 200
        got = [received_until_closed(s, HEADER_TIMEOUT_S + 10) for s in socks]
        assert None not in got, "a connection outlived the header deadline"
        refused = [g for g in got if g and g.startswith(b"HTTP/1.1 429 ")]
        assert len(refused) == 12 - CAP, got
        assert got.count(b"") == CAP, got  # cut off, no answer
        assert time.monotonic() - started < HEADER_TIMEOUT_S + 10
    finally:
        for s in socks:
            s.close()
    # The attacker's address is free again once its connections are gone.
    s = connect_from(ATTACKER, hygienic.port)
    with s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200")


def test_over_cap_answer_is_a_json_429(hygienic: RuntimeProc) -> None:
    socks = [connect_from(ATTACKER, hygienic.port) for _ in range(CAP + 1)]
    try:
        last = socks[-1]
        last.settimeout(5)
        data = last.recv(4096)
        assert data.startswith(b"HTTP/1.1 429") and b"connection_cap" in data
    finally:
        for s in socks:
            s.close()


def test_a_refused_request_whose_body_never_comes_is_closed(hygienic: RuntimeProc) -> None:
    """Answered 401 before its declared body: the connection waits the header deadline for
    the rest, not the 75 s keep-alive of an idle connection."""
    with connect_from("127.0.0.1", hygienic.port) as s:
        s.sendall(b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                  b"\r\nContent-Length: 8000000\r\n\r\n{")
        got = received_until_closed(s, HEADER_TIMEOUT_S + 20)
    assert got is not None, "the connection outlived the header deadline"
    assert got.startswith(b"HTTP/1.1 401 "), got[:200]


def test_keepalive_requests_are_not_cut(hygienic: RuntimeProc) -> None:
    """The header deadline applies to each request's headers, not to a whole connection."""
    with httpx2.Client(base_url=hygienic.url, headers=hygienic.headers, timeout=10) as http:
        for _ in range(3):
            assert http.get("/health").status_code == 200
            time.sleep(HEADER_TIMEOUT_S * 0.6)
        assert http.get("/probe").status_code == 200


def _limit_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))


def test_descriptor_exhaustion_logs_quietly_and_recovers(tmp_path: Path) -> None:
    """150 connections, each asking for a directory listing, against a server allowed 96
    descriptors: it keeps running, logs a few lines (no traceback per failed accept or
    request), and serves again afterwards."""
    root = tmp_path / "root"
    root.mkdir()
    port_file = root / "port"
    log_path = tmp_path / "serve.log"
    secret = "fd-limit-secret-0123456789"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "smartcolab", "serve", "--port", "0", "--root", str(root),
             "--port-file", str(port_file), "--max-connections-per-client", "0",
             "--header-timeout", "30", "--max-sessions", "1"],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=_limit_fds,
            env=subprocess_env({"SMARTCOLAB_SECRET": secret}))
    socks: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        port = int(port_file.read_text())
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                if httpx2.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx2.HTTPError:
                assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        size_before = log_path.stat().st_size
        request = (b"GET /files?path=. HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   b"Authorization: Bearer " + secret.encode() + b"\r\n\r\n")
        for _ in range(150):
            try:
                s = connect_from(ATTACKER, port)
                # A request that needs a descriptor of its own (a directory listing):
                # once none are left, each one fails inside the server.
                s.sendall(request)
                socks.append(s)
            except OSError:
                break
        time.sleep(3)  # the accept loop retries once a second meanwhile
        grown = log_path.stat().st_size - size_before
        assert proc.poll() is None, "the server died"
        assert grown < 20_000, f"{grown} bytes of log in 3 s"
        assert "Traceback" not in log_path.read_text()[size_before:]
        for s in socks:
            s.close()
        socks.clear()
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx2.get(f"{url}/probe", headers={"Authorization": f"Bearer {secret}"},
                               timeout=5)
                if r.status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not recover"
            time.sleep(0.2)
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["lane", "httpx2"])
async def test_an_idle_connection_is_kept_past_a_pause(runtime: RuntimeProc, path: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # A model calls its next tool seconds later; with uvicorn's and httpx's 5 s default
    # that call paid a new TCP (and, through a tunnel, TLS) handshake: extra round trips.
    # Both client paths: the loopback lane (client/http/lane.py) and httpx2.
    from smartcolab.client.http.client import RuntimeClient
    from smartcolab.shared import env as env_names

    if path == "httpx2":
        monkeypatch.setenv(env_names.LOOPBACK_LANE, "0")

    def local_port(client: RuntimeClient, response: httpx2.Response) -> int:
        if client._lane is not None:
            [conn] = client._lane._idle  # the connection the answer came on, kept
            assert conn.transport is not None
            return int(conn.transport.get_extra_info("sockname")[1])
        return int(response.extensions["network_stream"].get_extra_info("client_addr")[1])

    async with RuntimeClient(runtime.url, runtime.secret) as client:
        assert (client._lane is not None) == (path == "lane")
        first = local_port(client, await client.request("GET", "/probe"))
        await anyio.sleep(6.5)  # past the old 5 s on both sides
        second = local_port(client, await client.request("GET", "/probe"))
    assert second == first
