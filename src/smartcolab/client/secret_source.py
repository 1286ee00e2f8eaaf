"""Where ``connect_runtime`` finds a runtime's secret, so that the secret never passes the model.

A tool argument goes through the model and stays in the transcript; a secret there
is a leaked secret.  So ``connect_runtime`` takes a *reference*:

* ``secret_name``: a runtime whose secret the user stored with
  ``smartcolab runtimes add NAME URL --ask-secret`` (the runtimes file is read again,
  so a secret stored after the bridge started is found);
* ``secret_env``: an environment variable of the bridge, but only one the user meant
  for this (``COLAB_TOKEN``, ``JUPYTER_TOKEN``, a ``SMARTCOLAB_SECRET*`` name, or one
  that the runtimes file names in ``secret_env``): a model must not be able to send,
  say, a cloud key to a URL of its choosing;
* nothing: the name's current secret, else the one stored under the same name.

A raw ``secret`` is accepted only with ``secret_in_transcript=true``, for a user who
insists.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from smartcolab.client.registry import RuntimeSpec, load_runtimes_file
from smartcolab.shared.errors import InvalidInput

ENV_RUNTIMES = "SMARTCOLAB_RUNTIMES"  # the same rule as cli/common.runtimes_path

ALLOWED_ENV = ("COLAB_TOKEN", "JUPYTER_TOKEN")
ALLOWED_ENV_PREFIX = "SMARTCOLAB_SECRET"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
STORE_HINT = ("store it with 'smartcolab runtimes add NAME URL --ask-secret' in a terminal "
              "(the bridge reads it from there)")


def runtimes_file(env: Mapping[str, str]) -> Path:
    value = env.get(ENV_RUNTIMES)
    return Path(value).expanduser() if value else Path.home() / ".smartcolab" / "runtimes.toml"


def _file_entries(env: Mapping[str, str]) -> tuple[list[RuntimeSpec], set[str]]:
    """The runtimes file's specs (secrets resolved) and the env names it refers to."""
    path = runtimes_file(env)
    if not path.is_file():
        return [], set()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        raw = {}
    names = {str(e.get("secret_env", e.get("token_env")))
             for e in (raw.get("runtimes") or {}).values()
             if isinstance(e, dict) and e.get("secret_env", e.get("token_env"))}
    specs, _ = load_runtimes_file(path, env)
    return specs, names


def env_allowed(name: str, file_names: Iterable[str]) -> bool:
    return name in ALLOWED_ENV or name.startswith(ALLOWED_ENV_PREFIX) or name in set(file_names)


def resolve_secret(name: str, *, secret: str | None = None, secret_in_transcript: bool = False,
                   secret_env: str | None = None, secret_name: str | None = None,
                   known: Iterable[RuntimeSpec] = (),
                   env: Mapping[str, str] | None = None) -> str | None:
    """The secret ``connect_runtime`` uses for ``name``; ``None`` when there is none."""
    env = os.environ if env is None else env
    given = [x for x in (secret, secret_env, secret_name) if x]
    if len(given) > 1:
        raise InvalidInput("give one of secret_name, secret_env or secret, not several")
    if secret:
        if not secret_in_transcript:
            raise InvalidInput(
                "a raw secret passes through the model and stays in the transcript; "
                f"{STORE_HINT} and pass secret_name, or pass secret_env; only if the user "
                "insists, call again with secret_in_transcript=true")
        return secret
    stored, file_env_names = _file_entries(env)
    if secret_env:
        if not _ENV_NAME.fullmatch(secret_env):
            raise InvalidInput(f"{secret_env[:80]!r} is not an environment variable name")
        if not env_allowed(secret_env, file_env_names):
            raise InvalidInput(
                f"the environment variable {secret_env!r} is not one meant for runtime secrets: "
                f"use {', '.join(ALLOWED_ENV)}, a name starting with {ALLOWED_ENV_PREFIX}, or "
                "one named by secret_env in the runtimes file")
        value = env.get(secret_env, "").strip()
        if not value:
            raise InvalidInput(f"the environment variable {secret_env!r} is not set (or empty) "
                               "in the bridge's environment; set it in the MCP client's config "
                               f"and restart the bridge, or {STORE_HINT}")
        return value
    lookup = secret_name or name
    for spec in (*stored, *known) if secret_name else (*known, *stored):
        if spec.name == lookup and spec.secret:
            return spec.secret
    if secret_name:
        raise InvalidInput(f"no secret is stored for {secret_name!r}; {STORE_HINT}")
    return None
