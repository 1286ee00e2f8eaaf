"""Issue 16's low items at the level of their modules, plus two real-server checks
(the tunnel agent's forwarded addresses, a corrupt job store)."""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2
import pytest

from smartcolab.runtime.engine.store import JobStore
from smartcolab.runtime.files.service import UPLOAD_TMP_MARK, open_regular
from smartcolab.runtime.files.uploads import UploadLedger
from smartcolab.runtime.security import peerproc
from smartcolab.runtime.security.connections import QuietErrors, QuietFilter
from smartcolab.runtime.security.hosts import HostPolicy
from smartcolab.runtime.security.peerproc import peer_is_process
from smartcolab.runtime.server import serve_in_thread
from smartcolab.shared.errors import BadRequest
from support.runtime_proc import start_runtime


# ------------------------------------------------------------------ hosts.py
def test_host_policy() -> None:
    policy = HostPolicy(bind_host="0.0.0.0", allowed_hosts=["*.corp.example", "vm.example"])
    for ok in ("127.0.0.1:8765", "localhost", "LOCALHOST.", "[::1]:1", "203.0.113.5",
               "x.corp.example", "corp.example", "vm.example:80", "app.localhost"):
        assert policy.host_ok(ok), ok
    for bad in ("evil.example", "vm.example.evil", "corp.example.evil", "xcorp.example", ""):
        assert not policy.host_ok(bad), bad
    policy.allow_url("https://tiny-words.trycloudflare.com")
    assert policy.host_ok("tiny-words.trycloudflare.com")
    assert HostPolicy(bind_host="my-vm.internal").host_ok("my-vm.internal:8765")


def test_origin_policy() -> None:
    policy = HostPolicy(allowed_origins=["https://tools.example"])
    host = "127.0.0.1:8765"
    assert policy.origin_ok("http://127.0.0.1:8765", host, "http")
    assert policy.origin_ok("http://localhost:3000", host, "http")
    assert policy.origin_ok("https://tools.example/", host, "http")
    for bad in ("null", "https://evil.example", "http://203.0.113.5", "ftp://localhost",
                "https://tools.example.evil", "javascript:alert(1)"):
        assert not policy.origin_ok(bad, host, "http"), bad


# ------------------------------------------------------------------ connections.py
def test_repeated_errors_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    quiet = QuietErrors(interval_s=30, clock=lambda: now[0])
    loop = None
    exc = OSError(24, "Too many open files")
    with caplog.at_level(logging.ERROR, logger="smartcolab.runtime"):
        for i in range(1000):
            now[0] = i * 0.01  # 1,000 accept failures in 10 s
            quiet.handler(loop, {"message": "socket.accept() out of system resource",  # type: ignore[arg-type]
                                 "exception": exc})
        now[0] = 31.0
        quiet.handler(loop, {"message": "socket.accept() out of system resource",  # type: ignore[arg-type]
                             "exception": exc})
    lines = [r for r in caplog.records if "accept" in r.getMessage()]
    assert len(lines) == 2
    assert "999 more like it" in lines[1].getMessage()
    assert all(r.exc_info is None for r in lines)


def test_quiet_filter_drops_tracebacks_of_descriptor_exhaustion() -> None:
    flt = QuietFilter(QuietErrors(interval_s=60))
    kept = 0
    for _ in range(50):
        try:
            raise OSError(24, "Too many open files")
        except OSError:
            record = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1,
                                       "Exception in ASGI application", None, sys.exc_info())
        if flt.filter(record):
            kept += 1
            assert record.exc_info is None
    assert kept == 1


# ------------------------------------------------------------------ files (item 9)
def test_open_regular_refuses_fifos_links_and_dirs(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(BadRequest, match="not a regular file"):
        open_regular(fifo)  # with a plain open() this would block until a writer came
    assert time.monotonic() - started < 5
    target = tmp_path / "t.txt"
    target.write_text("x")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(BadRequest, match="symbolic link"):
        open_regular(link)
    with pytest.raises(BadRequest):
        open_regular(tmp_path)
    with open_regular(target) as f:
        assert f.read() == b"x"


def test_fifo_in_an_archive_or_download_does_not_hang(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "a.txt").write_text("a")
    os.mkfifo(root / "d" / "pipe")
    handle = serve_in_thread(root=root, port=0, secret="fifo-secret-0123456789", banner=False)
    try:
        headers = {"Authorization": "Bearer fifo-secret-0123456789"}
        r = httpx2.get(f"{handle.url}/files/content", params={"path": "d/pipe"},
                       headers=headers, timeout=10)
        assert r.status_code == 400
        r = httpx2.get(f"{handle.url}/files/archive", params={"path": "d"}, headers=headers,
                       timeout=10)
        assert r.status_code == 200 and b"a.txt" in r.content and b"pipe" not in r.content
        assert httpx2.get(f"{handle.url}/probe", headers=headers, timeout=10).status_code == 200
    finally:
        handle.stop()


# ------------------------------------------------------------------ upload ledger (item 12)
def test_orphaned_upload_temp_files_are_swept_at_start(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "deep" / "er").mkdir(parents=True)
    state = root / ".smartcolab"
    ledger = UploadLedger(state)
    orphan = root / "deep" / "er" / f"{UPLOAD_TMP_MARK}dead.tmp"
    ledger.begin(orphan)
    orphan.write_bytes(b"o" * 100_000)
    ledger.active.clear()  # as after a crash: no process holds it any more
    keep = root / "deep" / "keep.txt"  # an entry naming anything else is never followed
    (state / "uploads" / "evil").write_text(str(keep))
    keep.write_text("mine")
    handle = serve_in_thread(root=root, port=0, secret="ledger-secret-0123456789",
                             banner=False)
    try:
        assert not orphan.exists()
        assert keep.read_text() == "mine"
        assert list((state / "uploads").iterdir()) == []
    finally:
        handle.stop()


# ------------------------------------------------------------------ corrupt store (item 17)
def test_corrupt_job_store_is_moved_aside(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "jobs.sqlite3").write_bytes(b"this is not a database" * 100)
    store = JobStore(state / "jobs.sqlite3")
    try:
        assert store.quarantined is not None and store.quarantined.exists()
        assert store.list() == []
    finally:
        store.close()
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(str(store.quarantined)).execute("SELECT * FROM jobs").fetchall()


def test_server_starts_on_a_corrupt_store_and_says_so(tmp_path: Path) -> None:
    state = tmp_path / "root" / ".smartcolab"
    state.mkdir(parents=True)
    (state / "jobs.sqlite3").write_bytes(b"\x00garbage" * 1000)
    proc = start_runtime(tmp_path / "root")
    try:
        assert httpx2.get(f"{proc.url}/probe", headers=proc.headers, timeout=30).status_code == 200
        log = proc.log()
        assert "could not be read" in log and "corrupt-" in log and "Traceback" not in log
    finally:
        proc.stop()


# ------------------------------------------------------------------ X-Forwarded-For (item 11)
def _forwarder(listen: socket.socket, upstream_port: int, stop: threading.Event) -> None:
    """A tiny 'tunnel agent': adds X-Forwarded-For to each request it relays."""
    listen.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = listen.accept()
        except TimeoutError:
            continue
        with conn, socket.create_connection(("127.0.0.1", upstream_port)) as up:
            data = conn.recv(65536)
            head, sep, rest = data.partition(b"\r\n")
            up.sendall(head + b"\r\nX-Forwarded-For: 192.0.2.7" + sep + rest)
            while chunk := up.recv(65536):
                conn.sendall(chunk)


AGENT = """
import socket, sys, threading
sys.path.insert(0, {tests!r})
from runtime.test_security_units import _forwarder
listen = socket.create_server(("127.0.0.1", 0))
print(listen.getsockname()[1], flush=True)
_forwarder(listen, {port}, threading.Event())
"""


def test_forwarded_for_is_believed_only_from_the_tunnel_agent(tmp_path: Path) -> None:
    secret = "xff-secret-0123456789"
    handle = serve_in_thread(root=tmp_path, port=0, secret=secret, banner=False,
                             allow_cidrs=["127.0.0.0/8"])
    headers = {"Authorization": f"Bearer {secret}", "Connection": "close"}
    tests_dir = str(Path(__file__).resolve().parents[1])
    agent = subprocess.Popen([sys.executable, "-c", AGENT.format(tests=tests_dir,
                                                                 port=handle.config.port)],
                             stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert agent.stdout is not None
        agent_port = int(agent.stdout.readline())
        via_agent = f"http://127.0.0.1:{agent_port}"
        # Any local process: its X-Forwarded-For is ignored (it stays 127.0.0.1, allowed).
        r = httpx2.get(f"{handle.url}/probe", headers={**headers, "X-Forwarded-For": "192.0.2.7"})
        assert r.status_code == 200
        # Not yet the agent either: the relayed header is ignored.
        assert httpx2.get(f"{via_agent}/probe", headers=headers, timeout=10).status_code == 200
        state = handle.server.config.app.state.sc
        state.trust_tunnel("https://agent.example", agent.pid)
        # Now the agent's header is believed: 192.0.2.7 is outside --allow-cidr.
        r = httpx2.get(f"{via_agent}/probe", headers=headers, timeout=10)
        assert r.status_code == 403 and "192.0.2.7" in r.text
        # ... and still not anybody else's.
        r = httpx2.get(f"{handle.url}/probe", headers={**headers, "X-Forwarded-For": "192.0.2.7"})
        assert r.status_code == 200
    finally:
        agent.kill()
        agent.wait(10)
        handle.stop()


def test_peer_lookup_finds_our_own_socket() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    with server, socket.create_connection(server.getsockname()) as client:
        conn, peer = server.accept()
        with conn:
            assert client.getsockname()[:2] == peer[:2]
            assert peer_is_process(peer[0], peer[1], {os.getpid()})
            assert not peer_is_process(peer[0], peer[1], {1})


def test_a_time_wait_entry_of_the_same_port_is_passed_over(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # A whole-suite run failed the lookup above: an earlier connection's TIME_WAIT entry
    # (inode 0) had the same local port and came first in /proc/net/tcp.
    head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    row = "   {n}: 0100007F:DB62 0100007F:1F90 {st} 00000000:00000000 00:00000000 00000000     0        0 {inode} 1\n"
    table = tmp_path / "tcp"
    table.write_text(head + row.format(n=0, st="06", inode=0) + row.format(n=1, st="01", inode=4242))
    monkeypatch.setattr(peerproc, "_TABLES", (str(table), str(tmp_path / "absent")))
    assert peerproc.socket_inode("127.0.0.1", 0xDB62) == 4242
