"""Named runtimes: where each one is, its secret, its pooled client, the default.

Sources (read by the CLI, passed here as plain values): ``COLAB_URL`` +
``COLAB_TOKEN`` give a runtime named ``colab``; an optional TOML file lists more::

    default = "kaggle"

    [runtimes.colab]
    url = "https://abc.ngrok-free.app"
    secret_env = "COLAB_TOKEN"        # or: secret = "..."

    [runtimes.kaggle]
    url = "https://example.trycloudflare.com"
    secret = "..."
    description = "Kaggle P100 notebook"

A plain Jupyter Server or JupyterHub user server is an entry of kind ``jupyter``
(its token in ``token``/``token_env``, or ``secret``/``secret_env``)::

    [runtimes.hub]
    kind = "jupyter"
    url = "https://hub.example.org/user/alice"
    token_env = "JUPYTERHUB_API_TOKEN"
    kernel = "python3"                # optional kernel spec name

``JUPYTER_URL`` + ``JUPYTER_TOKEN`` give a runtime named ``jupyter``.

A runtime that Colab assigns to the user's Google account is an entry of kind
``colab`` (no URL or secret: ``smartcolab runtimes add NAME --kind colab`` signs in
once; see client/colab/)::

    [runtimes.gpu]
    kind = "colab"
    accelerator = "T4"                # CPU, T4, L4, G4, A100, H100, V5E1, V6E1
    idle_release_minutes = 30         # optional; 0: keep while a bridge runs

A runtime named ``local`` is always available: the local runtime daemon, started on
first use and shared with other bridges (client/embedded.py). ``connect_runtime`` repoints a name at a new URL and secret in memory
(tunnel URLs change whenever a notebook restarts).

Each kind has one factory (``RuntimeSpec -> RuntimeBackend``); the registry takes them
as a dict, so a test can register a fake backend and a new kind is one entry.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from smartcolab.client.backend import RuntimeBackend
from smartcolab.client.colab.service import COLAB_DOMAIN, colab_settings
from smartcolab.client.embedded import EmbeddedRuntime
from smartcolab.client.http.backend import HttpBackend
from smartcolab.client.jupyter.server import JupyterBackend
from smartcolab.client.retry import RetryPolicy
from smartcolab.shared import env as env_names
from smartcolab.shared.errors import InvalidInput, UnknownRuntime
from smartcolab.shared.protocol import NAME_PATTERN

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LOCAL = "local"
COLAB = "colab"
JUPYTER = "jupyter"
COLAB_KIND = "colab"
TAB_KIND = "colab-tab"
KINDS = ("runtime", "jupyter", COLAB_KIND, TAB_KIND)



@dataclass(frozen=True)
class RuntimeSpec:
    name: str
    url: str
    secret: str | None = field(default=None, repr=False)
    description: str = ""
    embedded: bool = False
    # "runtime": our runtime server; "jupyter": a plain Jupyter Server / JupyterHub server.
    kind: str = "runtime"
    kernel_name: str = "python3"
    # Kind-specific keys of the entry (the colab kind: accelerator, idle_release_minutes, ...).
    options: Mapping[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """What may be shown to a model or a log: never the secret."""
        return {"name": self.name, "url": self.url, "description": self.description,
                "embedded": self.embedded, "has_secret": bool(self.secret), "kind": self.kind}


def check_name(name: str) -> str:
    if not re.match(NAME_PATTERN, name):
        raise InvalidInput(f"runtime name {name[:80]!r} is invalid: use letters, digits, '_', '.', '-'")
    return name


def check_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not re.match(r"^https?://[^\s/]+", url):
        raise InvalidInput(f"runtime URL {url!r} is invalid: expected http(s)://host[:port]")
    return url


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidInput(f"runtime kind {kind[:40]!r} is unknown: use one of {', '.join(KINDS)}")
    return kind


def load_runtimes_file(path: Path, env: Mapping[str, str]) -> tuple[list[RuntimeSpec], str | None]:
    """Read a runtimes TOML file; ``secret_env`` names an environment variable."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"cannot read the runtimes file {path}: {exc}") from exc
    specs: list[RuntimeSpec] = []
    for name, entry in (data.get("runtimes") or {}).items():
        if isinstance(entry, dict) and entry.get("kind") in (COLAB_KIND, TAB_KIND):
            entry = {"url": COLAB_DOMAIN, **entry}  # Colab's own address unless given
        if not isinstance(entry, dict) or "url" not in entry:
            raise InvalidInput(f"runtimes file {path}: [runtimes.{name}] needs a url")
        secret = entry.get("secret", entry.get("token"))
        secret_env = entry.get("secret_env", entry.get("token_env"))
        if secret is None and secret_env:
            secret = env.get(str(secret_env))
        specs.append(RuntimeSpec(check_name(name), check_url(str(entry["url"])),
                                 None if secret is None else str(secret),
                                 str(entry.get("description", "")),
                                 kind=check_kind(str(entry.get("kind", "runtime"))),
                                 kernel_name=str(entry.get("kernel", "python3")),
                                 options={k: v for k, v in entry.items() if k not in _COMMON}))
    default = data.get("default")
    return specs, None if default is None else str(default)


_COMMON = frozenset({"url", "secret", "token", "secret_env", "token_env", "description", "kind",
                     "kernel"})

BackendFactory = Callable[["RuntimeSpec"], RuntimeBackend]


def default_factories(retry: RetryPolicy | None = None, *,
                      open_browser: bool = True) -> dict[str, BackendFactory]:
    """One factory per kind: our runtime server, a plain Jupyter Server, a Colab runtime,
    a Colab tab (``open_browser``: its link is opened in a browser, else only shown)."""
    policy = retry or RetryPolicy()

    def runtime(spec: RuntimeSpec) -> RuntimeBackend:
        return HttpBackend(spec.url, spec.secret, retry=policy, name=spec.name)

    def jupyter(spec: RuntimeSpec) -> RuntimeBackend:
        return JupyterBackend(spec.url, spec.secret, kernel_name=spec.kernel_name,
                              name=spec.name)

    def colab(spec: RuntimeSpec) -> RuntimeBackend:
        from smartcolab.client.colab.backend import ColabBackend

        return ColabBackend(spec.name, colab_settings(spec.url, spec.options),
                            kernel_name=spec.kernel_name)

    def tab(spec: RuntimeSpec) -> RuntimeBackend:
        import webbrowser

        from smartcolab.client.colabtab.backend import TabBackend

        return TabBackend(spec.name, opener=webbrowser.open if open_browser else None)

    return {"runtime": runtime, JUPYTER: jupyter, COLAB_KIND: colab, TAB_KIND: tab}


class RuntimeRegistry:
    """Named runtimes and one pooled backend per name, made by the factory of its kind."""

    def __init__(self, specs: list[RuntimeSpec], *, default: str | None = None,
                 embedded: EmbeddedRuntime | None = None,
                 factories: Mapping[str, BackendFactory] | None = None) -> None:
        self._factories = dict(factories if factories is not None else default_factories())
        self._specs: dict[str, RuntimeSpec] = {}
        for spec in specs:
            self._specs[check_name(spec.name)] = spec
            self._check_kind(spec.kind)
        self._embedded = embedded
        if embedded is not None and LOCAL not in self._specs:
            self._specs[LOCAL] = RuntimeSpec(LOCAL, "(embedded, starts on first use)",
                                             description="this machine (embedded runtime)",
                                             embedded=True)
        self._clients: dict[str, RuntimeBackend] = {}
        if default is None:
            default = COLAB if COLAB in self._specs else next(iter(self._specs), None)
        if default is None:
            raise InvalidInput("no runtime is configured and the embedded runtime is disabled: "
                               "set COLAB_URL and COLAB_TOKEN, or give a runtimes file")
        self.default = self._known(default)

    def names(self) -> list[str]:
        return list(self._specs)

    def specs(self) -> list[RuntimeSpec]:
        return list(self._specs.values())

    def _known(self, name: str) -> str:
        if name not in self._specs:
            known = ", ".join(sorted(self._specs)) or "none"
            raise UnknownRuntime(
                f"there is no runtime named {name!r} (known: {known}). Call list_runtimes, or "
                "connect_runtime to add one with its URL and secret.", details={"runtime": name})
        return name

    def spec(self, name: str | None = None) -> RuntimeSpec:
        return self._specs[self._known(name or self.default)]

    def _check_kind(self, kind: str) -> str:
        if kind not in self._factories:
            raise InvalidInput(f"runtime kind {kind[:40]!r} is unknown: use one of "
                               f"{', '.join(self._factories)}")
        return kind

    async def client(self, name: str | None = None) -> tuple[RuntimeSpec, RuntimeBackend]:
        """The spec and pooled backend of a runtime, starting the embedded one if needed.

        The backend is made by the factory of the spec's kind.
        """
        spec = self.spec(name)
        if spec.embedded and self._embedded is not None:
            was = spec.url
            url = await self._embedded.start()
            if url != was or self._embedded.secret != spec.secret:  # a new daemon
                spec = replace(spec, url=url, secret=self._embedded.secret)
                self._specs[spec.name] = spec
                await self._drop_client(spec.name)
        client = self._clients.get(spec.name)
        if client is None:
            # The local daemon's client maps session "main" to this bridge's own session.
            client = self._clients[spec.name] = (
                self._embedded.client(spec.url, spec.secret)
                if spec.embedded and self._embedded is not None
                else self._factories[spec.kind](spec))
        return spec, client

    async def connect(self, name: str, url: str, secret: str | None, *,
                      description: str | None = None, make_default: bool = False,
                      kind: str | None = None,
                      options: Mapping[str, Any] | None = None) -> RuntimeSpec:
        """Point ``name`` at a new URL and secret (adds the name if new; keeps its kind)."""
        old = self._specs.get(check_name(name))
        spec = RuntimeSpec(name, check_url(url), secret or None,
                           description if description is not None else (old.description if old else ""),
                           kind=self._check_kind(kind or (old.kind if old else "runtime")),
                           kernel_name=old.kernel_name if old else "python3",
                           options=options if options is not None else (old.options if old else {}))
        self._specs[name] = spec
        await self._drop_client(name)
        if make_default:
            self.default = name
        return spec

    async def undo_connect(self, name: str, previous: RuntimeSpec | None,
                           default: str) -> None:
        """Put ``name`` back as it was before ``connect`` (gone if it was new), and the
        default too: a URL that could not be reached is not kept."""
        if previous is None:
            self._specs.pop(name, None)
        else:
            self._specs[name] = previous
        await self._drop_client(name)
        self.default = default if default in self._specs else next(iter(self._specs))

    async def _drop_client(self, name: str) -> None:
        client = self._clients.pop(name, None)
        if client is not None:
            await client.aclose()

    async def aclose(self) -> None:
        for name in list(self._clients):
            await self._drop_client(name)
        if self._embedded is not None:
            self._embedded.stop()


def env_runtimes(env: Mapping[str, str]) -> list[RuntimeSpec]:
    """COLAB_URL (+ COLAB_TOKEN) is the runtime ``colab``; JUPYTER_URL (+ JUPYTER_TOKEN) ``jupyter``."""
    specs = []
    url = env.get(env_names.COLAB_URL, "").strip()
    if url:
        specs.append(RuntimeSpec(COLAB, check_url(url), env.get(env_names.COLAB_TOKEN) or None,
                                 f"from {env_names.COLAB_URL}"))
    jupyter = env.get(env_names.JUPYTER_URL, "").strip()
    if jupyter:  # a plain Jupyter Server or JupyterHub user server
        specs.append(RuntimeSpec(JUPYTER, check_url(jupyter),
                                 env.get(env_names.JUPYTER_TOKEN) or None,
                                 f"from {env_names.JUPYTER_URL}", kind=JUPYTER))
    return specs
