"""Tunnels against stand-ins for the ngrok agent and cloudflared (see hosted_helpers)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from pyngrok.exception import PyngrokNgrokError, PyngrokNgrokInstallError

import smartcolab
from smartcolab.runtime.host.tunnel import TunnelOptions, open_tunnel
from smartcolab.shared.errors import TunnelFailed
from support.hosted_helpers import (
    FAKE_NGROK_URL,
    FAKE_QUICK_URL,
    FakeNgrok,
    fake_cloudflared,
    install_fake_ngrok,
    pid_alive,
    read_record,
)
from support.runtime_proc import PROCESS_TIMEOUT_S, start_runtime, subprocess_env


@pytest.fixture
def fake_ngrok(monkeypatch: pytest.MonkeyPatch) -> FakeNgrok:
    return install_fake_ngrok(monkeypatch)


def test_none_opens_nothing_and_unknown_kind_is_refused() -> None:
    assert open_tunnel(TunnelOptions(kind="none"), 1234) is None
    with pytest.raises(TunnelFailed, match="use one of none, ngrok, cloudflared"):
        open_tunnel(TunnelOptions(kind="frp"), 1234)  # type: ignore[arg-type]


def test_ngrok_without_pyngrok_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyngrok", None)
    with pytest.raises(TunnelFailed, match=r"pip install 'smart-colab-mcp\[ngrok\]'"):
        open_tunnel(TunnelOptions(kind="ngrok", token="t"), 1234)


def test_ngrok_without_token_says_where_to_get_one(fake_ngrok: FakeNgrok) -> None:
    with pytest.raises(TunnelFailed, match="NGROK_AUTHTOKEN") as info:
        open_tunnel(TunnelOptions(kind="ngrok"), 1234)
    assert "dashboard.ngrok.com" in info.value.message
    assert fake_ngrok.connects == []


def test_ngrok_tunnel_with_reserved_domain(fake_ngrok: FakeNgrok) -> None:
    tunnel = open_tunnel(TunnelOptions(kind="ngrok", token="tok-1", domain="my-app.ngrok.app"), 4321)
    assert tunnel is not None
    assert tunnel.public_url == "https://my-app.ngrok.app"
    call = fake_ngrok.connects[0]
    assert call["token"] == "tok-1" and call["proto"] == "http"
    assert call["addr"] == "http://127.0.0.1:4321"
    assert call["url"] == "https://my-app.ngrok.app"
    tunnel.close()
    tunnel.close()
    assert fake_ngrok.disconnected == ["https://my-app.ngrok.app"] and fake_ngrok.kills == 1


@pytest.mark.parametrize(("error", "expected"), [
    (PyngrokNgrokError("ngrok process errored", ngrok_error="authentication failed ERR_NGROK_4018"),
     "auth token was rejected"),
    (PyngrokNgrokError("ngrok process errored", ngrok_error="limited to 1 session ERR_NGROK_108"),
     "one agent at a time"),
    (PyngrokNgrokInstallError("download failed"), "install ngrok yourself"),
    (PyngrokNgrokError("boom"), "Check the auth token"),
])
def test_ngrok_failures_name_the_fix(fake_ngrok: FakeNgrok, error: Exception, expected: str) -> None:
    fake_ngrok.error = error
    with pytest.raises(TunnelFailed, match=expected):
        open_tunnel(TunnelOptions(kind="ngrok", token="tok"), 1234)


def test_serve_in_thread_with_ngrok_points_the_tunnel_at_the_server(
        fake_ngrok: FakeNgrok, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    handle = smartcolab.serve(root=tmp_path, tunnel="ngrok", tunnel_token="tok-2",
                              start_main_session=False)
    try:
        assert handle.public_url == FAKE_NGROK_URL
        upstream = fake_ngrok.connects[0]["addr"]
        assert upstream == handle.url
        assert httpx2.get(f"{upstream}/health", timeout=5).json()["status"] == "ok"
        banner = capsys.readouterr().out
        assert FAKE_NGROK_URL in banner and handle.secret in banner
    finally:
        handle.stop()
    assert fake_ngrok.kills == 1 and not handle.running


def test_serve_in_thread_stops_the_server_when_the_tunnel_fails(
        fake_ngrok: FakeNgrok, tmp_path: Path) -> None:
    import threading

    fake_ngrok.error = PyngrokNgrokError("x", ngrok_error="ERR_NGROK_4018")
    with pytest.raises(TunnelFailed, match="auth token was rejected"):
        smartcolab.serve(root=tmp_path, tunnel="ngrok", tunnel_token="bad",
                         start_main_session=False, banner=False)
    assert not any(t.name == "smartcolab-runtime" and t.is_alive() for t in threading.enumerate())


def test_tunnel_and_tls_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="either --tunnel or --tls-cert"):
        smartcolab.serve(root=tmp_path, tunnel="cloudflared", tls_cert="c.pem", tls_key="k.pem")


def test_cloudflared_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(TunnelFailed, match="cloudflared binary, which was not found at"):
        open_tunnel(TunnelOptions(kind="cloudflared", binary=str(tmp_path / "nope")), 1234)


def test_cloudflared_quick_tunnel(tmp_path: Path) -> None:
    binary, record = fake_cloudflared(tmp_path)
    tunnel = open_tunnel(TunnelOptions(kind="cloudflared", binary=str(binary), timeout_s=20), 5555)
    assert tunnel is not None and tunnel.public_url == FAKE_QUICK_URL
    seen = read_record(record)
    assert seen["argv"] == ["tunnel", "--no-autoupdate", "--url", "http://127.0.0.1:5555"]
    assert pid_alive(seen["pid"])
    tunnel.close()
    assert not pid_alive(seen["pid"])


def test_cloudflared_named_tunnel_keeps_the_token_out_of_argv(tmp_path: Path) -> None:
    binary, record = fake_cloudflared(tmp_path)
    with pytest.raises(TunnelFailed, match="needs the public hostname"):
        open_tunnel(TunnelOptions(kind="cloudflared", binary=str(binary), token="s3cret"), 1)
    tunnel = open_tunnel(TunnelOptions(kind="cloudflared", binary=str(binary), token="s3cret",
                                       domain="colab.example.com", timeout_s=20), 5555)
    assert tunnel is not None and tunnel.public_url == "https://colab.example.com"
    seen = read_record(record)
    assert seen["token"] == "s3cret" and "s3cret" not in " ".join(seen["argv"])
    assert seen["argv"][-1] == "run"
    tunnel.close()


@pytest.mark.timing
def test_cloudflared_early_exit_and_silence_are_reported(tmp_path: Path) -> None:
    failing, _ = fake_cloudflared(tmp_path / "a", mode="fail")
    with pytest.raises(TunnelFailed, match=r"exited \(code 1\)[\s\S]*bad config"):
        open_tunnel(TunnelOptions(kind="cloudflared", binary=str(failing), timeout_s=20), 1)
    silent, record = fake_cloudflared(tmp_path / "b", mode="silent")
    started = time.monotonic()
    with pytest.raises(TunnelFailed, match="within 1 s"):
        open_tunnel(TunnelOptions(kind="cloudflared", binary=str(silent), timeout_s=1), 1)
    assert time.monotonic() - started < 10
    assert not pid_alive(read_record(record)["pid"])


def test_cli_serve_with_cloudflared_prints_the_public_url_and_closes_it(tmp_path: Path) -> None:
    binary, record = fake_cloudflared(tmp_path)
    proc = start_runtime(tmp_path / "root", "--tunnel", "cloudflared",
                         "--tunnel-binary", str(binary), "--plain-logs")
    try:
        deadline = time.monotonic() + 20
        while FAKE_QUICK_URL not in proc.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"public URL (tunnel): {FAKE_QUICK_URL}" in proc.log()
        pid = read_record(record)["pid"]
        assert pid_alive(pid)
    finally:
        proc.stop()
    assert proc.proc.returncode is not None and not pid_alive(pid)


def test_cli_serve_ngrok_without_token_exits_with_the_fix(tmp_path: Path) -> None:
    env = subprocess_env()
    env.pop("NGROK_AUTHTOKEN", None)
    result = subprocess.run(
        [sys.executable, "-m", "smartcolab", "serve", "--port", "0", "--root", str(tmp_path),
         "--tunnel", "ngrok"], env=env, capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S)
    assert result.returncode == 2
    assert "NGROK_AUTHTOKEN" in result.stderr and "Traceback" not in result.stderr
