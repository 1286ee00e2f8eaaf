"""The helper a Colab or Kaggle notebook calls: secrets, Drive, serve, tunnel, stop.

Like the CLI, this is a place that reads the environment: secrets come from Colab
Secrets (``google.colab.userdata``), Kaggle Secrets (``kaggle_secrets``) or an
environment variable, in that order.  The runtime library itself reads none.

    from smartcolab.runtime import notebook
    rt = notebook.start(tunnel="ngrok")      # prints URL, secret, client config
    ...                                      # other cells keep working
    notebook.stop()                          # POST /shutdown, tunnel closed
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx2

from smartcolab.runtime.config import DEFAULT_HOST
from smartcolab.runtime.host.platform import detect_platform
from smartcolab.runtime.server import ServerHandle, serve_in_thread
from smartcolab.shared import env

__all__ = ["NotebookRuntime", "client_instructions", "mount_drive", "read_secret", "start",
           "stop"]

DRIVE_MOUNTPOINT = Path("/content/drive")
DRIVE_PERSIST_SUBDIR = Path("MyDrive") / "smartcolab"
KAGGLE_PERSIST_DIR = Path("/kaggle/working/smartcolab-saved")
STOP_TIMEOUT_S = 30.0

_current: NotebookRuntime | None = None


def read_secret(name: str) -> str | None:
    """A secret from Colab Secrets, then Kaggle Secrets, then the environment; None if absent.

    Colab asks the user once to grant the notebook access to each secret; a refusal
    or a missing secret falls through to the next source.
    """
    with contextlib.suppress(Exception):
        from google.colab import userdata

        value = userdata.get(name)
        if value:
            return str(value)
    with contextlib.suppress(Exception):
        from kaggle_secrets import UserSecretsClient

        value = UserSecretsClient().get_secret(name)
        if value:
            return str(value)
    return os.environ.get(name) or None


def mount_drive(mountpoint: Path = DRIVE_MOUNTPOINT) -> Path:
    """Mount Google Drive (Colab only; asks for consent in the browser) and return the
    directory where saved variables go: ``MyDrive/smartcolab``."""
    try:
        from google.colab import drive
    except ImportError:
        raise RuntimeError("Google Drive can only be mounted in Colab; on Kaggle saved "
                           "variables go to /kaggle/working, elsewhere pass persist_dir=") from None
    drive.mount(str(mountpoint))
    target = mountpoint / DRIVE_PERSIST_SUBDIR
    target.mkdir(parents=True, exist_ok=True)
    return target


@dataclass
class NotebookRuntime:
    """A runtime started from a notebook: its handle, public URL, secret and name."""

    handle: ServerHandle
    name: str
    tunnel: str

    @property
    def url(self) -> str:
        return self.handle.public_url

    @property
    def secret(self) -> str:
        return self.handle.secret

    @property
    def running(self) -> bool:
        return self.handle.running

    def client_config(self) -> str:
        return client_instructions(self.name, self.url, self.secret)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Ask the server to shut down (jobs stopped, kernels closed), then close the tunnel."""
        if self.handle.running:
            with contextlib.suppress(httpx2.HTTPError):
                # Straight to the local port: the tunnel may already be gone.
                httpx2.post(f"{self.handle.url}/shutdown", timeout=10, verify=False,
                            headers={"Authorization": f"Bearer {self.secret}"})
            self.handle.thread.join(timeout)
        self.handle.stop(timeout)


def client_instructions(name: str, url: str, secret: str) -> str:
    """What to paste where: MCP client config, environment, and ``connect_runtime``."""
    entry = {"mcpServers": {"smart-colab": {
        "command": "python", "args": ["-m", "smartcolab", "mcp"],
        "env": {env.COLAB_URL: url, env.COLAB_TOKEN: secret}}}}
    # No secret in the call: a tool argument passes through the model and the transcript.
    call = json.dumps({"name": name, "url": url, "secret_name": name})
    return "\n".join([
        "On your computer (pip install smart-colab-mcp), register the bridge with your MCP "
        "client once:",
        f"  smartcolab config claude-desktop --url {url}",
        "  then put the secret in COLAB_TOKEN. Or paste this whole entry (use the full path "
        "to your python):",
        *("  " + line for line in json.dumps(entry, indent=2).splitlines()),
        "Already in a chat? After a restart, store the secret on your computer (a hidden "
        "prompt; never paste it into the chat):",
        f"  smartcolab runtimes add {name} {url} --ask-secret --replace",
        "  then ask the assistant to call the tool",
        f"  connect_runtime {call}",
        "From a terminal:",
        f"  curl -H 'Authorization: Bearer {secret}' {url}/probe",
    ])


def start(*, tunnel: str = "ngrok", name: str = "colab", root: str | Path | None = None,
          host: str = DEFAULT_HOST, port: int = 0, drive: bool = False, drive_mountpoint: str | Path = DRIVE_MOUNTPOINT,
          persist_dir: str | Path | None = None,
          ngrok_domain: str | None = None, cloudflared_hostname: str | None = None,
          secret: str | None = None, quiet: bool = False, out: TextIO | None = None,
          **options: Any) -> NotebookRuntime:
    """Start a runtime server in the background of this notebook and print how to connect.

    ``tunnel``: "ngrok" (token from the NGROK_AUTHTOKEN secret; a reserved domain from
    ``ngrok_domain`` or the NGROK_DOMAIN secret keeps the URL fixed), "cloudflared"
    (quick tunnel, or a named one with the TUNNEL_TOKEN secret and
    ``cloudflared_hostname``), or "none" (with ``host`` = a tailnet address for
    Tailscale, or for a test).  The runtime's
    secret comes from ``secret``, else the SMARTCOLAB_SECRET secret, else is generated:
    with a fixed secret and a reserved domain, clients need no change after a restart.
    ``drive=True`` mounts Google Drive and saves variables there.  A runtime started
    earlier from this notebook is stopped first.
    """
    global _current
    if _current is not None:
        _current.stop()
        _current = None
    token = domain = None
    if tunnel == "ngrok":
        token = read_secret(env.NGROK_TOKEN)
        domain = ngrok_domain or read_secret(env.NGROK_DOMAIN)
    elif tunnel == "cloudflared":
        token = read_secret(env.CLOUDFLARED_TOKEN)
        domain = cloudflared_hostname or read_secret(env.CLOUDFLARED_HOSTNAME)
    persist = Path(persist_dir) if persist_dir else None
    if persist is None and drive:
        persist = mount_drive(Path(drive_mountpoint))
    if persist is None and detect_platform() == "kaggle":
        persist = KAGGLE_PERSIST_DIR
    if persist is not None:
        options["persist_dir"] = persist
    handle = serve_in_thread(
        host=host, port=port, root=root,
        secret=secret or read_secret(env.SECRET), banner=False, tunnel=tunnel,
        tunnel_token=token, tunnel_domain=domain, **options)
    _current = NotebookRuntime(handle=handle, name=name, tunnel=tunnel)
    if not quiet:
        _print_ready(_current, out or sys.stdout)
    return _current


def stop() -> None:
    """Stop the runtime this notebook started (``/shutdown``, then the tunnel); idempotent."""
    global _current
    if _current is not None:
        _current.stop()
        _current = None


def _print_ready(rt: NotebookRuntime, out: TextIO) -> None:
    lines = [
        f"smartcolab runtime is serving ({detect_platform()}, tunnel: {rt.tunnel}) at "
        f"{time.strftime('%H:%M:%S')}",
        f"  URL:    {rt.url}",
        f"  secret: {rt.secret}",
        f"  saved variables go to: {rt.handle.config.persist_root}",
        "Keep this notebook open; other cells keep working while it serves.",
        "",
        rt.client_config(),
        "",
        "Stop everything: smartcolab.runtime.notebook.stop()",
    ]
    out.write("\n".join(lines) + "\n")
    out.flush()
