"""`smartcolab runtimes` (the bridge's runtimes file) and `smartcolab doctor`.

Doctor runs against the real runtime; what cannot exist here (an ngrok page, a server
whose clock is ten minutes off) is a few-line stand-in HTTP server on loopback.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from time import time

import pytest
from typer.testing import CliRunner

from smartcolab.cli.app import app
from smartcolab.cli.commands.doctor import clock_skew
from smartcolab.client.registry import load_runtimes_file
from support.runtime_proc import RuntimeProc

runner = CliRunner()
NO_ENV = {"COLAB_URL": "", "COLAB_TOKEN": ""}


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args), env={**NO_ENV, **(env or {})})
    return r.exit_code, r.stdout, r.stderr


# ---------------------------------------------------------------- runtimes
def test_runtimes_add_list_use_remove(runtime: RuntimeProc, tmp_path: Path) -> None:
    file = tmp_path / "cfg" / "runtimes.toml"
    env = {"SMARTCOLAB_RUNTIMES": str(file), "MY_TOKEN": runtime.secret}
    code, out, err = invoke("runtimes", "add", "box", runtime.url, "--secret-env", "MY_TOKEN",
                            "--description", 'a "quoted" box', "--default", env=env)
    assert code == 0, err
    assert file.stat().st_mode & 0o777 == 0o600
    specs, default = load_runtimes_file(file, env)  # the bridge reads what we wrote
    assert default == "box" and specs[0].secret == runtime.secret
    assert specs[0].description == 'a "quoted" box'
    code, out, _ = invoke("runtimes", "list", "--json", env=env)
    listed = json.loads(out)
    assert listed["default"] == "box"
    assert {r["name"] for r in listed["runtimes"]} == {"box", "local"}
    assert runtime.secret not in out
    # The default runtime is used with no flag at all; --runtime names it explicitly.
    code, out, err = invoke("exec", "print('on box')", env=env)
    assert (code, out) == (0, "on box\n"), err
    code, out, err = invoke("probe", "--runtime", "box", "--json", env=env)
    assert code == 0, err
    code, _, err = invoke("runtimes", "add", "box", runtime.url, env=env)
    assert code == 2 and "--replace" in err
    code, _, err = invoke("runtimes", "add", "bad name", runtime.url, env=env)
    assert code == 2 and "invalid" in err
    code, _, err = invoke("runtimes", "add", "x", "ftp://nope", env=env)
    assert code == 2 and "URL" in err
    assert invoke("runtimes", "remove", "box", env=env)[0] == 0
    specs, default = load_runtimes_file(file, env)
    assert (specs, default) == ([], None)
    code, _, err = invoke("probe", "--runtime", "box", env=env)
    assert code == 2 and "runtimes add" in err
    code, _, err = invoke("runtimes", "remove", "box", env=env)
    assert code == 2


def test_runtimes_file_unreadable_is_one_line(tmp_path: Path) -> None:
    file = tmp_path / "runtimes.toml"
    file.write_text("this is = = not toml")
    code, _, err = invoke("runtimes", "list", "--file", str(file))
    assert code == 2 and "cannot read the runtimes file" in err
    assert len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- doctor
def test_doctor_passes_on_a_healthy_runtime(runtime: RuntimeProc) -> None:
    code, out, _ = invoke("doctor", "--url", runtime.url, "--json", env={"COLAB_TOKEN": runtime.secret})
    report = json.loads(out)
    assert code == 0 and report["ok"]
    levels = {c["name"]: c["level"] for c in report["checks"]}
    assert levels == {"reachable": "ok", "runtime answers": "ok", "tunnel headers": "ok",
                      "clock": "ok", "auth": "ok", "version": "ok", "kernel": "ok"}


def test_doctor_names_a_wrong_or_missing_token(runtime: RuntimeProc) -> None:
    code, out, _ = invoke("doctor", "--url", runtime.url, env={"COLAB_TOKEN": "wrong"})
    assert code == 1
    assert "problem: auth" in out and "signature" in out
    code, out, _ = invoke("doctor", "--url", runtime.url)
    assert code == 1 and "no secret given" in out


def test_doctor_unreachable(tmp_path: Path) -> None:
    code, out, _ = invoke("doctor", "--url", "http://127.0.0.1:9", "--json", env={"COLAB_TOKEN": "x"})
    report = json.loads(out)
    assert code == 1 and report["checks"][0]["name"] == "reachable"
    assert report["checks"][0]["level"] == "fail" and "cannot connect" in report["checks"][0]["detail"]


class _StandIn(BaseHTTPRequestHandler):
    mode = "ngrok-offline"

    def do_GET(self) -> None:
        if self.mode == "ngrok-offline":
            body = b"<html><body>Tunnel abc.ngrok-free.app not found ERR_NGROK_3200</body></html>"
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
        elif self.mode == "ngrok-warning" and not self.headers.get("ngrok-skip-browser-warning"):
            body = b"<html>You are about to visit... ERR_NGROK_6024 Visit Site</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
        else:  # a runtime whose clock is 10 minutes ahead
            body = json.dumps({"status": "ok", "version": "0.1.0", "epoch": "e"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_response(self, code: int, message: str | None = None) -> None:
        self.send_response_only(code, message)
        self.send_header("Server", "stand-in")
        self.send_header("Date", formatdate(time() + (600 if self.mode == "skewed" else 0),
                                            usegmt=True))

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[tuple[str, type[_StandIn]]]:
    handler = type("Handler", (_StandIn,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("mode", "check", "level", "phrase"), [
    ("ngrok-offline", "runtime answers", "fail", "tunnel is offline"),
    ("ngrok-warning", "tunnel headers", "warn", "ngrok-skip-browser-warning"),
    ("skewed", "clock", "fail", "+600 s off"),
])
def test_doctor_recognises_tunnel_pages_and_clock_skew(
        stand_in: tuple[str, type[_StandIn]], mode: str, check: str, level: str, phrase: str) -> None:
    url, handler = stand_in
    handler.mode = mode
    code, out, _ = invoke("doctor", "--url", url, "--json", env={"COLAB_TOKEN": "x"})
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks[check]["level"] == level, checks
    assert phrase in checks[check]["detail"]
    assert code == 1  # every stand-in fails somewhere (no real runtime behind it)


def test_clock_skew_arithmetic() -> None:
    now = 1_700_000_000.0
    assert clock_skew(formatdate(now, usegmt=True), now - 0.1, now + 0.1) == pytest.approx(0.5)
    assert clock_skew(formatdate(now + 400, usegmt=True), now, now) == pytest.approx(400.5)
    assert clock_skew(None, now, now) is None
    assert clock_skew("not a date", now, now) is None
