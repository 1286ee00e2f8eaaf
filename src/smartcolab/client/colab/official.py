"""The one module that touches Google's ``google-colab-cli`` (pinned: ``OFFICIAL_VERSION``).

It runs as a script in a separate process, under a Python that has the package
(>= 3.12; the bridge itself may be older): ``python official.py COMMAND JSON``.  It
imports nothing of ours, so any interpreter with the package can run it.  One JSON
object comes back on the original stdout (the package's prompts go to stderr); on
failure ``{"error": {"kind", "message", "status"}}`` and exit status 1.

Commands (the request is a JSON object in ``argv[2]``; it never holds a secret):

* ``signin``: sign in with the user's Google account (the package's OAuth flow: it
  prints a URL and reads the code from the terminal), store the tokens 0600.
* ``list``: the runtimes assigned to this account, each with a fresh proxy token.
* ``assign``: a new runtime with ``accelerator`` (``NONE`` = CPU).
* ``unassign``: release ``endpoint``.
* ``keepalive``: tell Colab that ``endpoint`` is in use (the call Colab's VS Code
  extension makes; the CLI package has none, so it goes through the package's
  authorised session).

Common keys: ``domain`` (Colab's address; a test points it at a fake), ``token_path``
(where the OAuth tokens live), ``client_config`` (an OAuth client file; default: the
one inside the package).  The package is a CLI, not a library: only the names used
here are relied on, and a new version is a deliberate change of ``OFFICIAL_VERSION``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import json
import os
import sys
import uuid
from typing import Any

OFFICIAL_VERSION = "0.7.5"
GPUS = ("T4", "L4", "G4", "A100", "H100")
TPUS = ("V5E1", "V6E1")
COLAB_TUNNEL_HEADER = ("X-Colab-Tunnel", "Google")


class Failure(Exception):
    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind, self.status = kind, status


def _package(name: str) -> Any:
    try:
        version = importlib.metadata.version("google-colab-cli")
        module = importlib.import_module(f"colab_cli.{name}")
    except ImportError as exc:  # PackageNotFoundError is one
        raise Failure("missing_package", f"google-colab-cli is not installed for {sys.executable} "
                      f"({exc})") from exc
    if version != OFFICIAL_VERSION:
        raise Failure("wrong_version", f"{sys.executable} has google-colab-cli {version}; this "
                      f"smartcolab is built and tested against {OFFICIAL_VERSION} only")
    return module


def _session(req: dict[str, Any], *, interactive: bool) -> Any:
    """The package's authorised session, with our token file (kept 0600)."""
    auth = _package("auth")
    token_path = os.path.expanduser(str(req["token_path"]))
    if not interactive and not os.path.exists(token_path):
        raise Failure("signin_required", "not signed in to Colab")
    # The package keeps its token file path in a module constant; this process is ours alone.
    auth.TOKEN_CONFIG_PATH = token_path
    _token_endpoint_from(req.get("client_config"))
    os.makedirs(os.path.dirname(token_path), mode=0o700, exist_ok=True)
    old = os.umask(0o077)
    try:
        # A missing client file makes the package use the OAuth client it ships.
        session = auth.get_credentials(str(req.get("client_config") or os.devnull + ".none"),
                                       provider=auth.AuthProvider.OAUTH2)
    except EOFError as exc:  # it wanted to ask for a code: the stored tokens are no good
        raise Failure("signin_required", "the stored Colab sign-in is no longer valid") from exc
    finally:
        os.umask(old)
    if os.path.exists(token_path):
        os.chmod(token_path, 0o600)
    return session


def _token_endpoint_from(client_config: Any) -> None:
    """Refresh at the token endpoint of the given OAuth client file.

    google-auth reloads stored tokens with Google's endpoint whatever the file says; a
    client file that names another one (a test's fake) must be used for refreshing too.
    """
    if not client_config or not os.path.exists(str(client_config)):
        return
    with open(str(client_config), encoding="utf-8") as f:
        config = json.load(f)
    token_uri = (config.get("installed") or config.get("web") or {}).get("token_uri")
    if token_uri:
        credentials = importlib.import_module("google.oauth2.credentials")
        setattr(credentials, "_GOOGLE_OAUTH2_TOKEN_ENDPOINT", token_uri)  # noqa: B010


def _client(req: dict[str, Any]) -> Any:
    mod = _package("client")
    domain = str(req.get("domain") or mod.Prod.domain)
    return mod.Client(mod.Prod(domain=domain.rstrip("/")), _session(req, interactive=False))


def _proxy(info: Any) -> dict[str, Any]:
    return {"url": info.url, "token": info.token,
            "expires_in": int(info.token_expires_in_seconds)}


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return int(code) if isinstance(code, int) else None


def cmd_signin(req: dict[str, Any]) -> dict[str, Any]:
    _session(req, interactive=True)
    return {"signed_in": True}


def cmd_list(req: dict[str, Any]) -> dict[str, Any]:
    return {"assignments": [
        {"endpoint": a.endpoint, "accelerator": a.accelerator.value,
         "variant": a.variant.name, "shape": a.machine_shape.name, **_proxy(a.runtime_proxy_info)}
        for a in _client(req).list_assignments()]}


def cmd_assign(req: dict[str, Any]) -> dict[str, Any]:
    mod = _package("client")
    accelerator = str(req.get("accelerator") or "NONE").upper()
    if accelerator in GPUS:
        variant = mod.Variant.GPU
    elif accelerator in TPUS:
        variant = mod.Variant.TPU
    elif accelerator in ("NONE", "CPU"):
        variant, accelerator = mod.Variant.DEFAULT, "NONE"
    else:
        raise Failure("bad_accelerator", f"unknown accelerator {accelerator!r}")
    shape = mod.resolve_assign_shape(mod.Accelerator(accelerator),
                                     high_mem=bool(req.get("high_mem")))
    client = _client(req)
    try:
        res = client.assign(uuid.uuid4(), variant=variant,
                            accelerator=mod.Accelerator(accelerator), shape=shape)
    except mod.TooManyAssignmentsError as exc:
        raise Failure("too_many", str(exc), 412) from exc
    except mod.ColabRequestError as exc:
        status = _status(exc)
        kind = "not_entitled" if status == 400 and accelerator != "NONE" else "request_failed"
        raise Failure(kind, str(exc), status) from exc
    return {"endpoint": res.endpoint, "accelerator": accelerator, **_proxy(res.runtime_proxy_info)}


def cmd_unassign(req: dict[str, Any]) -> dict[str, Any]:
    _client(req).unassign(str(req["endpoint"]))
    return {"released": str(req["endpoint"])}


def cmd_keepalive(req: dict[str, Any]) -> dict[str, Any]:
    client = _client(req)
    url = f"{client.colab_domain}/tun/m/{req['endpoint']}/keep-alive/"
    response = client.session.request("GET", url, params={"authuser": "0"}, headers=dict(
        [COLAB_TUNNEL_HEADER, ("X-Colab-Client-Agent", "colab-cli")]), timeout=30)
    if response.status_code >= 400:
        raise Failure("gone" if response.status_code == 404 else "request_failed",
                      f"keep-alive answered {response.status_code}", response.status_code)
    return {"kept": str(req["endpoint"])}


COMMANDS = {"signin": cmd_signin, "list": cmd_list, "assign": cmd_assign,
            "unassign": cmd_unassign, "keepalive": cmd_keepalive}


def main(argv: list[str]) -> int:
    # Our answer owns the real stdout; the package's prompts and prints go to stderr.
    answer = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        if len(argv) != 3 or argv[1] not in COMMANDS:
            raise Failure("usage", f"usage: official.py {{{'|'.join(COMMANDS)}}} JSON")
        result, status = COMMANDS[argv[1]](json.loads(argv[2])), 0
    except Failure as exc:
        result, status = {"error": {"kind": exc.kind, "message": str(exc),
                                    "status": exc.status}}, 1
    except Exception as exc:  # the package's own errors: report them, never a traceback
        result, status = {"error": {"kind": "request_failed", "status": _status(exc),
                                    "message": f"{type(exc).__name__}: {exc}"}}, 1
    with contextlib.suppress(OSError):
        answer.write(json.dumps(result) + "\n")
        answer.close()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
