"""Hostile web pages against a real runtime, in a real headless chromium.

Two attacks of issue 16, with bounded counts:

* **Lockout from any web page**: a page at ``http://evil.test`` fires 40 ``<img>``
  requests, 20 ``no-cors`` fetches, 10 form posts and 10 fetches carrying a wrong
  bearer at the runtime.  None of them may count towards the lockout (three
  failures would lock an address out here): afterwards the real user's secret works
  and a wrong secret is still answered 401, not 429.
* **DNS rebinding**: the page is served from ``http://attacker.test:PORT`` and that
  name then points at the runtime (a switch hands every later connection on PORT to
  the runtime, exactly what a rebound DNS answer does).  Its same-origin requests
  reach the runtime with ``Host: attacker.test:PORT`` and are refused with 403.

``--host-resolver-rules`` maps the two names to 127.0.0.1; nothing leaves the machine.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest

from support.runtime_proc import RuntimeProc, start_runtime
from support.ui_helpers import browser_paths

WAIT_S = 30.0

LOCKOUT_PAGE = """<!doctype html><html><body><script>
const R = "http://127.0.0.1:%(port)d";
async function run() {
  const imgs = [];
  for (let i = 0; i < 40; i++) {
    imgs.push(new Promise((done) => {
      const img = new Image(); img.onload = img.onerror = done; img.src = R + "/probe?i=" + i;
    }));
  }
  await Promise.all(imgs);
  for (let i = 0; i < 20; i++) {
    try { await fetch(R + "/jobs", {method: "POST", mode: "no-cors", body: "{}"}); } catch (e) {}
  }
  for (let i = 0; i < 10; i++) {
    const f = document.createElement("iframe"); f.name = "sink" + i; document.body.appendChild(f);
    const form = document.createElement("form");
    form.method = "POST"; form.action = R + "/shutdown"; form.target = "sink" + i;
    document.body.appendChild(form); form.submit();
  }
  let refused = 0;
  for (let i = 0; i < 10; i++) {
    try { await fetch(R + "/probe", {headers: {"Authorization": "Bearer wrong-" + i}}); }
    catch (e) { refused++; }
  }
  await new Promise((r) => setTimeout(r, 1500));
  document.title = "done " + refused;
}
run();
</script></body></html>"""

REBIND_PAGE = """<!doctype html><html><body><script>
async function attempt(method, path, headers, body) {
  try {
    const r = await fetch(path, {method, headers, body, cache: "no-store"});
    return r.status;
  } catch (e) { return "error"; }
}
async function run() {
  const out = [];
  for (let i = 0; i < 5; i++) {
    out.push(await attempt("GET", "/health", {}));
    out.push(await attempt("GET", "/probe", {"Authorization": "Bearer guess-" + i}));
    out.push(await attempt("POST", "/jobs", {"Content-Type": "application/json"},
                           JSON.stringify({job_id: "rebound-" + i, code: "print(1)"})));
    out.push(await attempt("GET", "/ui", {}));
  }
  document.title = "done " + JSON.stringify(out);
}
run();
</script></body></html>"""


@pytest.fixture(scope="module")
def guarded_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProc]:
    proc = start_runtime(Path(tmp_path_factory.mktemp("browser-attacks")),
                         "--lockout-failures", "3", "--lockout-seconds", "300")
    try:
        yield proc
    finally:
        proc.stop()


@contextmanager
def page_server(html: str) -> Iterator[int]:
    """A plain HTTP server on loopback that serves one page at any path."""
    body = html.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def rebinding_switch(html: str, runtime_port: int) -> Iterator[int]:
    """Port S: the first request for /attack.html gets the page, every other connection
    is piped to the runtime, as if attacker.test had been rebound to 127.0.0.1."""
    body = html.encode()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def handle(conn: socket.socket) -> None:
        first = conn.recv(65536, socket.MSG_PEEK)
        if first.startswith(b"GET /attack.html"):
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            conn.close()
            return
        upstream = socket.create_connection(("127.0.0.1", runtime_port))
        threading.Thread(target=pipe, args=(conn, upstream), daemon=True).start()
        threading.Thread(target=pipe, args=(upstream, conn), daemon=True).start()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@contextmanager
def attacker_browser() -> Iterator[Any]:
    """Headless chromium where attacker.test and evil.test resolve to 127.0.0.1."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = browser_paths()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-extensions",
                 "--no-proxy-server",
                 "--host-resolver-rules=MAP attacker.test 127.0.0.1, MAP evil.test 127.0.0.1, "
                 "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def wait_title(driver: Any, prefix: str) -> str:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        title = str(driver.title)
        if title.startswith(prefix):
            return title
        time.sleep(0.1)
    raise AssertionError(f"the attack page did not finish within {WAIT_S:.0f} s")


def test_a_web_page_cannot_lock_the_user_out(guarded_runtime: RuntimeProc) -> None:
    rt = guarded_runtime
    before = len([e for e in rt.audit() if e["event"] == "auth_failed"])
    with page_server(LOCKOUT_PAGE % {"port": rt.port}) as port, attacker_browser() as browser:
        browser.get(f"http://evil.test:{port}/lockout.html")
        title = wait_title(browser, "done")
    # The fetches with a wrong bearer never left the browser: their preflight was refused.
    assert title == "done 10"
    failed = [e for e in rt.audit() if e["event"] == "auth_failed"][before:]
    assert len(failed) >= 40, "the page's requests did not reach the runtime"
    assert not [e for e in rt.audit() if e["event"] == "lockout"]
    assert httpx2.get(f"{rt.url}/probe", headers=rt.headers, timeout=30).status_code == 200
    wrong = httpx2.get(f"{rt.url}/probe", headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert wrong.status_code == 401, "a page's credential-less requests were counted"
    # No job was submitted and the server did not shut down.
    assert httpx2.get(f"{rt.url}/jobs", headers=rt.headers, timeout=10).json()["jobs"] == []


def test_a_rebound_name_cannot_reach_the_api(guarded_runtime: RuntimeProc) -> None:
    rt = guarded_runtime
    with rebinding_switch(REBIND_PAGE, rt.port) as port, attacker_browser() as browser:
        browser.get(f"http://attacker.test:{port}/attack.html")
        title = wait_title(browser, "done ")
    statuses = json.loads(title.removeprefix("done "))
    assert len(statuses) == 20
    assert set(statuses) == {403}, statuses
    jobs = httpx2.get(f"{rt.url}/jobs", headers=rt.headers, timeout=10).json()["jobs"]
    assert not [j for j in jobs if j["job_id"].startswith("rebound-")]
