"""Public tunnels in front of a runtime server: ngrok (through pyngrok) or cloudflared.

A tunnel is opened after the server is listening and closed before it stops.  Every
failure becomes a ``TunnelFailed`` whose message names the fix (missing token, binary
not found, pyngrok not installed, domain not reserved, agent limit reached).  Nothing
here reads the environment: the CLI and the notebook helper pass tokens in.

The code that talks to the real ngrok agent or cloudflared binary is kept small on
purpose (``_ngrok_connect``, ``_spawn_cloudflared``): tests cannot reach the internet
and drive it against stand-ins.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from smartcolab.shared.env import CLOUDFLARED_TOKEN
from smartcolab.shared.errors import TunnelFailed

log = logging.getLogger("smartcolab.runtime")

TunnelKind = Literal["none", "ngrok", "cloudflared"]
TUNNEL_KINDS: tuple[str, ...] = get_args(TunnelKind)
DEFAULT_TUNNEL_TIMEOUT_S = 30.0
NGROK_TOKEN_URL = "https://dashboard.ngrok.com/get-started/your-authtoken"
CLOUDFLARED_DOWNLOAD_URL = (
    "https://developers.cloudflare.com/cloudflare-one/connections/connect-networks/downloads/")
QUICK_URL = re.compile(r"https://[-a-z0-9]+\.trycloudflare\.com")
REGISTERED = re.compile(r"Registered tunnel connection|Connection [-0-9a-f]+ registered")
LOG_TAIL_LINES = 40

# ngrok error codes people meet most, with what to do about each.
NGROK_HINTS: dict[str, str] = {
    "ERR_NGROK_105": "the ngrok auth token was rejected: copy it again from " + NGROK_TOKEN_URL,
    "ERR_NGROK_4018": "the ngrok auth token was rejected: copy it again from " + NGROK_TOKEN_URL,
    "ERR_NGROK_108": "your ngrok plan allows one agent at a time: stop the other one (an older "
                     "notebook, another machine; see https://dashboard.ngrok.com/agents) and retry",
    "ERR_NGROK_334": "this domain is already served by another ngrok agent: stop it or use "
                     "another domain",
    "ERR_NGROK_313": "this domain is not reserved on your ngrok account: reserve it at "
                     "https://dashboard.ngrok.com/domains (one free static domain per account)",
    "ERR_NGROK_320": "this domain is not reserved on your ngrok account: reserve it at "
                     "https://dashboard.ngrok.com/domains (one free static domain per account)",
}


@dataclass(frozen=True)
class TunnelOptions:
    """How to expose a server publicly.

    ``token`` is the ngrok auth token, or a cloudflared *named* tunnel's token (without
    one, cloudflared opens a quick tunnel on a random trycloudflare.com URL).
    ``domain`` is an ngrok reserved domain (the URL stays the same between sessions)
    or the public hostname routed to a named cloudflared tunnel.
    """

    kind: TunnelKind = "none"
    token: str | None = field(default=None, repr=False)
    domain: str | None = None
    binary: str | None = None
    timeout_s: float = DEFAULT_TUNNEL_TIMEOUT_S


@dataclass
class Tunnel:
    """An open tunnel: its public URL, and ``close()`` (idempotent)."""

    kind: TunnelKind
    public_url: str
    _closer: Callable[[], None] = field(repr=False)
    _closed: bool = field(default=False, repr=False)
    # The local agent process: the runtime believes X-Forwarded-For from it only.
    agent_pid: int | None = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._closer()
        except Exception:  # closing must never mask the real shutdown
            log.warning("closing the %s tunnel failed", self.kind, exc_info=True)


def check_kind(kind: str) -> TunnelKind:
    """Validate a tunnel name given by a person (CLI flag, notebook parameter)."""
    if kind not in TUNNEL_KINDS:
        raise TunnelFailed(f"unknown tunnel {kind!r}: use one of {', '.join(TUNNEL_KINDS)}")
    return kind  # type: ignore[return-value]


def open_tunnel(options: TunnelOptions, port: int) -> Tunnel | None:
    """Open the tunnel ``options`` describes to ``127.0.0.1:port``; None for ``none``."""
    kind = check_kind(options.kind)
    if kind == "none":
        return None
    if kind == "ngrok":
        return _open_ngrok(options, port)
    return _open_cloudflared(options, port)


# ------------------------------------------------------------------ ngrok
def _open_ngrok(options: TunnelOptions, port: int) -> Tunnel:
    try:
        from pyngrok import conf, ngrok
        from pyngrok.exception import PyngrokError
    except ImportError:
        raise TunnelFailed(
            "ngrok tunnels need pyngrok, which is not installed. Fix: "
            "pip install 'smart-colab-mcp[ngrok]' (or pip install pyngrok), then start again; "
            "or use tunnel='cloudflared' or 'none'.") from None
    if not options.token:
        raise TunnelFailed(
            "ngrok needs an auth token and none was given. Fix: copy yours from "
            f"{NGROK_TOKEN_URL} and store it as NGROK_AUTHTOKEN (Colab: the key icon, "
            "'Secrets'; Kaggle: Add-ons > Secrets; elsewhere: an environment variable).")
    settings: dict[str, Any] = {"auth_token": options.token,
                                "startup_timeout": max(1, int(options.timeout_s))}
    if options.binary:
        settings["ngrok_path"] = options.binary
    config = conf.PyngrokConfig(**settings)
    try:
        public_url = _ngrok_connect(ngrok, config, port, options.domain)
    except PyngrokError as exc:
        raise TunnelFailed(_ngrok_message(exc, options.domain), details={"tunnel": "ngrok"}) from None
    if options.domain and options.domain not in public_url:
        log.warning("ngrok gave %s instead of the reserved domain %s", public_url, options.domain)

    def close() -> None:
        with contextlib.suppress(PyngrokError):
            ngrok.disconnect(public_url, pyngrok_config=config)
        ngrok.kill(pyngrok_config=config)

    return Tunnel(kind="ngrok", public_url=public_url, _closer=close,
                  agent_pid=_ngrok_pid(config))


def _ngrok_pid(config: Any) -> int | None:
    """The pid of the ngrok agent pyngrok started (never starts one itself)."""
    try:
        from pyngrok import process

        if not process.is_process_running(config.ngrok_path):
            return None
        pid = process.get_process(config).proc.pid
    except Exception:  # an older pyngrok: forwarded addresses are then not believed
        return None
    return pid if isinstance(pid, int) else None


def _ngrok_connect(ngrok: Any, config: Any, port: int, domain: str | None) -> str:
    """The one real call into pyngrok (v3 endpoints from pyngrok 8, v2 tunnels before)."""
    options: dict[str, Any] = {}
    if getattr(config, "config_version", "2") == "3":
        addr = f"http://127.0.0.1:{port}"
        if domain:
            options["url"] = f"https://{_bare_host(domain)}"
    else:
        addr = f"127.0.0.1:{port}"
        if domain:
            options["domain"] = _bare_host(domain)
    tunnel = ngrok.connect(addr=addr, proto="http", pyngrok_config=config, **options)
    url = str(tunnel.public_url)
    return "https://" + url.removeprefix("http://") if url.startswith("http://") else url


def _ngrok_message(exc: Exception, domain: str | None) -> str:
    parts = (exc, getattr(exc, "ngrok_error", None), getattr(exc, "body", None))
    text = " ".join(str(part) for part in parts if part)
    for code, hint in NGROK_HINTS.items():
        if code in text:
            return f"the ngrok tunnel failed ({code}): {hint}."
    if type(exc).__name__ == "PyngrokNgrokInstallError":
        return ("pyngrok could not download the ngrok agent (no internet, or a proxy). Fix: "
                "install ngrok yourself and pass its path (--tunnel-binary, or tunnel_binary= in serve()).")
    if domain and "domain" in text.lower():
        return (f"the ngrok tunnel failed for domain {domain}: {_short(text)}. Check that the "
                "domain is reserved on this account at https://dashboard.ngrok.com/domains.")
    return (f"the ngrok tunnel failed: {_short(text)}. Check the auth token ({NGROK_TOKEN_URL}) "
            "and that no other ngrok agent of yours is running.")


# ------------------------------------------------------------------ cloudflared
def _open_cloudflared(options: TunnelOptions, port: int) -> Tunnel:
    binary = options.binary or shutil.which("cloudflared")
    if not binary or not os.access(binary, os.X_OK):
        raise TunnelFailed(
            "cloudflared tunnels need the cloudflared binary, which was not found"
            + (f" at {options.binary}" if options.binary else " on PATH")
            + f". Fix: install it ({CLOUDFLARED_DOWNLOAD_URL}), or use tunnel='ngrok' or 'none'.")
    named = bool(options.token)
    if named and not options.domain:
        raise TunnelFailed(
            "a named cloudflared tunnel needs the public hostname routed to it "
            "(--cloudflared-hostname, or tunnel_domain= in serve()), e.g. colab.example.com; drop the token for "
            "a quick tunnel on a random trycloudflare.com URL.")
    env = dict(os.environ)
    if named:
        # The token goes through cloudflared's own variable, not argv, so ps does not show it.
        env[CLOUDFLARED_TOKEN] = options.token or ""
        args = [binary, "tunnel", "--no-autoupdate", "run"]
    else:
        args = [binary, "tunnel", "--no-autoupdate", "--url", f"http://127.0.0.1:{port}"]
    proc = _spawn_cloudflared(args, env)
    watcher = _LogWatcher(proc)
    try:
        found = watcher.wait_for(None if named else QUICK_URL, options.timeout_s)
    except TunnelFailed:
        _stop_process(proc)
        raise
    public_url = f"https://{_bare_host(options.domain or '')}" if named else found

    def close() -> None:
        _stop_process(proc)

    return Tunnel(kind="cloudflared", public_url=public_url, _closer=close, agent_pid=proc.pid)


def _spawn_cloudflared(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """The one real call: cloudflared logs to stderr, which we read line by line."""
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env, bufsize=1)


class _LogWatcher:
    """Drains a child's stderr for ever (a full pipe would block it), keeping a tail."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self.url: str | None = None
        self.registered = False
        self._changed = threading.Condition()
        threading.Thread(target=self._drain, name="cloudflared-log", daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.tail.append(line.rstrip())
                match = QUICK_URL.search(line)
                if match and self.url is None:
                    self.url = match.group(0)
                if REGISTERED.search(line):
                    self.registered = True
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, url_pattern: re.Pattern[str] | None, timeout: float) -> str:
        """Wait until the URL (quick tunnel) is known and a connection is registered."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not ((url_pattern is None or self.url) and self.registered):
                if self.proc.poll() is not None:
                    raise TunnelFailed(
                        f"cloudflared exited (code {self.proc.returncode}) before the tunnel was "
                        f"up. Its last lines:\n{self._tail()}\nFix what they say (a bad token, "
                        "or a ~/.cloudflared/config.yml that quick tunnels refuse), then retry.")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TunnelFailed(
                        f"cloudflared did not bring the tunnel up within {timeout:.0f} s. Its "
                        f"last lines:\n{self._tail()}\nCheck this machine's outbound network, "
                        "then retry, or use tunnel='ngrok'.")
                self._changed.wait(min(left, 0.5))
            return self.url or ""

    def _tail(self) -> str:
        return "\n".join(f"  {line}" for line in list(self.tail)[-10:]) or "  (nothing)"


def _stop_process(proc: subprocess.Popen[str], grace: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)


def _bare_host(domain: str) -> str:
    return domain.removeprefix("https://").removeprefix("http://").strip("/")


def _short(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
