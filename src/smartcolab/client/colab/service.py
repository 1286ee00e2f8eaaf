"""Colab's sign-in and assignment service, reached through the official package.

``official.py`` (the only module that touches ``google-colab-cli``) runs in a child
process under a Python that has the package: the bridge's own when it is 3.12+ with
the ``colab`` extra, else the interpreter named in the runtime's entry (``python``) or
in ``$SMARTCOLAB_COLAB_PYTHON``.  A child process also keeps the package's blocking
HTTP, its retries with sleeps and its module-level token path out of the bridge.

What this side keeps, under ``state_dir`` (default ``~/.smartcolab/colab``, mode 0700):
``oauth-token.json`` (written by the package, kept 0600) and one ``NAME.json`` per
runtime name: the assignment it holds (endpoint, proxy URL and token, expiry), so a
bridge that restarts finds its runtime again.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from smartcolab.shared import env as env_names
from smartcolab.shared.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    RuntimeUnreachable,
    SmartColabError,
    StateLost,
    Unauthorized,
    Unsupported,
)

COLAB_DOMAIN = "https://colab.research.google.com"
ACCELERATORS = ("CPU", "T4", "L4", "G4", "A100", "H100", "V5E1", "V6E1")
OFFICIAL = Path(__file__).with_name("official.py")
CALL_TIMEOUT_S = 300.0  # an assignment may wait for capacity (the package retries 502-504)
SIGNIN_HINT = "smartcolab runtimes add NAME --kind colab"


def normalise_accelerator(value: str | None) -> str:
    acc = (value or "CPU").strip().upper()
    if acc in ("NONE", ""):
        acc = "CPU"
    if acc not in ACCELERATORS:
        raise InvalidInput(f"accelerator {value!r} is unknown: use one of {', '.join(ACCELERATORS)}")
    return acc


@dataclass(frozen=True)
class ColabSettings:
    """Where Colab is and how this runtime name uses it (from the runtime's entry)."""

    domain: str = COLAB_DOMAIN
    accelerator: str = "CPU"
    state_dir: Path = Path.home() / ".smartcolab" / "colab"
    python: str | None = None
    client_config: str | None = None  # an OAuth client file; default: the package's own
    idle_release_s: float = 30 * 60.0  # 0: never release for idleness while a bridge runs
    keepalive_s: float = 5 * 60.0
    refresh_margin_s: float = 5 * 60.0
    max_lifetime_s: float = 12 * 3600.0  # Colab's stated upper bound for a runtime's life

    @property
    def token_path(self) -> Path:
        return self.state_dir / "oauth-token.json"


@dataclass
class Lease:
    """An assignment held for one runtime name."""

    endpoint: str
    accelerator: str
    url: str
    token: str
    expires_at: float  # epoch seconds
    assigned_at: float

    def renew(self, info: dict[str, Any]) -> None:
        self.url, self.token = str(info["url"]), str(info["token"])
        self.expires_at = time.time() + float(info["expires_in"])


def colab_settings(url: str, options: Mapping[str, Any]) -> ColabSettings:
    """Settings from a runtime entry's keys (``url`` is Colab's address, or a fake's)."""
    known = {"accelerator", "idle_release_minutes", "python", "state_dir", "oauth_client",
             "keepalive_minutes"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidInput(f"a colab runtime entry does not take {', '.join(unknown)}; it takes "
                           f"{', '.join(sorted(known))}")
    try:
        idle = float(options.get("idle_release_minutes", 30)) * 60
        keep = float(options.get("keepalive_minutes", 5)) * 60
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"colab runtime entry: minutes must be numbers ({exc})") from exc
    if idle < 0 or keep <= 0:
        raise InvalidInput("colab runtime entry: idle_release_minutes >= 0, keepalive_minutes > 0")
    state = options.get("state_dir")
    return ColabSettings(
        domain=url.rstrip("/"), accelerator=normalise_accelerator(options.get("accelerator")),
        state_dir=Path(str(state)).expanduser() if state else ColabSettings.state_dir,
        python=str(options["python"]) if options.get("python") else None,
        client_config=str(options["oauth_client"]) if options.get("oauth_client") else None,
        idle_release_s=idle, keepalive_s=keep)


def find_python(settings: ColabSettings, environ: dict[str, str] | None = None) -> str:
    """A Python that can run the official package, or an error that says how to get one."""
    env = os.environ if environ is None else environ
    chosen = settings.python or env.get(env_names.COLAB_PYTHON)
    if chosen:
        return chosen
    if sys.version_info >= (3, 12) and importlib.util.find_spec("colab_cli") is not None:
        return sys.executable
    why = (f"this bridge runs Python {sys.version_info.major}.{sys.version_info.minor}, and the "
           "package needs 3.12 or later" if sys.version_info < (3, 12)
           else "the package is not installed")
    raise Unsupported(
        f"the colab kind signs in and assigns runtimes through Google's google-colab-cli, but "
        f"{why}. Either install smartcolab under Python 3.12+ with its extra "
        f"(pip install 'smart-colab-mcp[colab]'), or make a Python 3.12 environment for the "
        f"package (python3.12 -m venv ~/.smartcolab/colab-venv && ~/.smartcolab/colab-venv/bin/pip "
        f"install google-colab-cli==0.7.5) and name its python in the runtime's entry "
        f"(python = \"...\") or in ${env_names.COLAB_PYTHON}.")


_ERRORS: dict[str, tuple[type[SmartColabError], str]] = {
    "signin_required": (Unauthorized, f"sign in first: {SIGNIN_HINT} (it opens Google's sign-in once)"),
    "too_many": (Conflict, "Colab refused another runtime (too many active, or a usage or "
                 "capacity limit): release one (smartcolab runtimes release NAME), wait, or ask "
                 "for another accelerator"),
    "not_entitled": (Forbidden, "this Google account has no quota or entitlement for that "
                     "accelerator: ask for another (e.g. T4) or CPU"),
    "gone": (StateLost, "the runtime is no longer assigned"),
    "missing_package": (Unsupported, "install google-colab-cli==0.7.5 for that Python"),
    "wrong_version": (Unsupported, "install google-colab-cli==0.7.5 for that Python"),
}


class ColabService:
    """The five calls of the official package, each in a child process."""

    def __init__(self, settings: ColabSettings) -> None:
        self.settings = settings

    def _request(self, **extra: Any) -> dict[str, Any]:
        return {"domain": self.settings.domain, "token_path": str(self.settings.token_path),
                "client_config": self.settings.client_config, **extra}

    async def call(self, command: str, *, interactive: bool = False, stdin: bytes | None = None,
                   **extra: Any) -> dict[str, Any]:
        """Run one command; interactive: the user's terminal answers the package's prompts."""
        python = find_python(self.settings)
        self.settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        inherit = interactive and stdin is None
        try:
            proc = await asyncio.create_subprocess_exec(
                python, str(OFFICIAL), command, json.dumps(self._request(**extra)),
                stdin=None if inherit else asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=None if interactive else asyncio.subprocess.PIPE)
        except OSError as exc:
            raise Unsupported(f"cannot run {python} for the colab kind ({exc}); name a Python "
                              f"3.12+ with google-colab-cli in ${env_names.COLAB_PYTHON}") from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(None if inherit else (stdin or b"")),
                                              None if interactive else CALL_TIMEOUT_S)
        except asyncio.CancelledError:
            proc.kill()  # no orphan: the child dies with the call that wanted it
            await asyncio.shield(proc.wait())
            raise
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeUnreachable(f"Colab did not answer {command} within "
                                     f"{CALL_TIMEOUT_S:.0f} s") from None
        lines = out.decode(errors="replace").strip().splitlines()
        try:
            answer: dict[str, Any] = json.loads(lines[-1]) if lines else {}
        except ValueError:
            answer = {}
        if proc.returncode == 0 and "error" not in answer:
            return answer
        error = answer.get("error") or {"kind": "crashed", "message": (err or b"").decode(
            errors="replace")[-2000:] or f"exit status {proc.returncode}"}
        cls, hint = _ERRORS.get(str(error.get("kind")), (RuntimeUnreachable, "try again later"))
        raise cls(f"Colab {command} failed: {error.get('message')}; {hint}",
                  details={"colab_error": error.get("kind"), "status": error.get("status")})

    async def signin(self, *, code: str | None = None) -> None:
        await self.call("signin", interactive=True,
                        stdin=None if code is None else (code + "\n").encode())

    async def list(self) -> list[dict[str, Any]]:
        return list((await self.call("list"))["assignments"])

    async def assign(self, accelerator: str) -> dict[str, Any]:
        acc = normalise_accelerator(accelerator)
        return await self.call("assign", accelerator="NONE" if acc == "CPU" else acc)

    async def unassign(self, endpoint: str) -> None:
        await self.call("unassign", endpoint=endpoint)

    async def keepalive(self, endpoint: str) -> None:
        await self.call("keepalive", endpoint=endpoint)

    # ------------------------------------------------------------ leases on disk
    def _lease_path(self, name: str) -> Path:
        return self.settings.state_dir / f"{name}.json"

    def load(self, name: str) -> Lease | None:
        try:
            return Lease(**json.loads(self._lease_path(name).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def claimed(self) -> set[str]:
        """Endpoints held by any runtime name on this machine."""
        found = set()
        for path in self.settings.state_dir.glob("*.json"):
            if path.name != self.settings.token_path.name:
                try:
                    found.add(str(json.loads(path.read_text(encoding="utf-8"))["endpoint"]))
                except (OSError, ValueError, KeyError, TypeError):
                    continue
        return found

    def save(self, name: str, lease: Lease) -> None:
        path = self._lease_path(name)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(lease), f)
        os.replace(tmp, path)

    def forget(self, name: str) -> None:
        self._lease_path(name).unlink(missing_ok=True)
