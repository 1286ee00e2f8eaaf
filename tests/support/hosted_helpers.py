"""Stand-ins for what cannot exist on this machine: the ngrok agent, cloudflared.

Both are deliberately tiny.  ``FakeNgrok`` replaces only pyngrok's three network
calls (``connect``, ``disconnect``, ``kill``) and records what it was asked;
``fake_cloudflared`` writes an executable script that prints the log lines real
cloudflared prints (a quick-tunnel URL, "Registered tunnel connection") and records
its argv, its TUNNEL_TOKEN and its pid.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

FAKE_NGROK_URL = "https://fake-abc123.ngrok-free.app"
FAKE_QUICK_URL = "https://tiny-fake-words-here.trycloudflare.com"


@dataclass
class _FakeNgrokTunnel:
    public_url: str


@dataclass
class FakeNgrok:
    connects: list[dict[str, Any]] = field(default_factory=list)
    disconnected: list[str] = field(default_factory=list)
    kills: int = 0
    error: Exception | None = None

    def connect(self, addr: str | None = None, proto: str | None = None,
                pyngrok_config: Any = None, **options: Any) -> _FakeNgrokTunnel:
        self.connects.append({"addr": addr, "proto": proto, "token": pyngrok_config.auth_token,
                              **options})
        if self.error is not None:
            raise self.error
        url = options.get("url") or FAKE_NGROK_URL
        return _FakeNgrokTunnel(public_url=url)

    def disconnect(self, public_url: str, pyngrok_config: Any = None) -> None:
        self.disconnected.append(public_url)

    def kill(self, pyngrok_config: Any = None) -> None:
        self.kills += 1


def install_fake_ngrok(monkeypatch: pytest.MonkeyPatch) -> FakeNgrok:
    """Replace pyngrok's network calls with a recording ``FakeNgrok``."""
    from pyngrok import ngrok

    fake = FakeNgrok()
    monkeypatch.setattr(ngrok, "connect", fake.connect)
    monkeypatch.setattr(ngrok, "disconnect", fake.disconnect)
    monkeypatch.setattr(ngrok, "kill", fake.kill)
    return fake


_CLOUDFLARED = '''\
import json, os, sys, time
record = {{"argv": sys.argv[1:], "token": os.environ.get("TUNNEL_TOKEN"), "pid": os.getpid()}}
with open({record!r}, "w") as f:
    json.dump(record, f)
mode = {mode!r}
if mode == "fail":
    print("ERR  failed to unmarshal quick Tunnel: bad config", file=sys.stderr, flush=True)
    sys.exit(1)
if mode != "silent":
    if "run" not in sys.argv:
        print("INF |  {url}  |", file=sys.stderr, flush=True)
    print("INF Registered tunnel connection connIndex=0 location=fake", file=sys.stderr, flush=True)
time.sleep(120)
'''


def fake_cloudflared(tmp_path: Path, mode: str = "ok") -> tuple[Path, Path]:
    """Write a fake ``cloudflared``; returns (executable, record file)."""
    record = tmp_path / f"cloudflared-{mode}.json"
    script = tmp_path / "bin" / "cloudflared"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(f"#!{sys.executable}\n"
                      + _CLOUDFLARED.format(record=str(record), mode=mode, url=FAKE_QUICK_URL))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, record


def read_record(record: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(record.read_text())
    return data


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); /proc tells the truth.
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
