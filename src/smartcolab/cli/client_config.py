"""Snippets that register ``smartcolab mcp`` with an MCP client, for this machine.

A snippet is split in two: ``text`` (what to paste: JSON or one command, alone on
stdout so that ``smartcolab config claude-desktop > cfg.json`` is valid JSON) and
``note`` (where to paste it, for stderr).

Every path in a snippet is absolute and stable.  Under ``uvx`` the running
interpreter lives in uv's cache, which ``uv cache clean`` deletes: the snippet then
launches the bridge through ``uvx --from SOURCE`` (SOURCE read from the install's
PEP 610 ``direct_url.json``: a checkout, a wheel or a git URL), so uv rebuilds the
environment when its cache is gone.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from smartcolab.shared import env as env_names

SUPPORTED = ("claude-desktop", "claude-code", "cursor")
TRANSPORTS = ("stdio", "http")
SECRET_PLACEHOLDER = "<the secret the runtime printed>"
MCP_TOKEN_PLACEHOLDER = "<the MCP bearer token smartcolab mcp printed>"
DIST_NAME = "smart-colab-mcp"
DEFAULT_HTTP_URL = "http://127.0.0.1:8766/mcp"

_WHERE = {
    "claude-desktop": ("Add this to claude_desktop_config.json (macOS: ~/Library/Application Support/"
                       "Claude/, Windows: %APPDATA%\\Claude\\), then restart Claude Desktop."),
    "cursor": "Add this to ~/.cursor/mcp.json (or .cursor/mcp.json in a project).",
}


@dataclass(frozen=True)
class Snippet:
    text: str  # JSON or a command: what to paste or run
    note: str  # where it goes (printed on stderr)


@dataclass(frozen=True)
class Launcher:
    """How an MCP client starts the bridge: ``command`` then ``prefix`` then ``mcp ...``."""
    command: str
    prefix: tuple[str, ...]


def _uv_cache_dirs(env: dict[str, str] | os._Environ[str]) -> list[Path]:
    dirs = [Path(env["UV_CACHE_DIR"])] if env.get("UV_CACHE_DIR") else []
    xdg = env.get("XDG_CACHE_HOME")
    dirs.append((Path(xdg) if xdg else Path.home() / ".cache") / "uv")
    dirs.append(Path.home() / "Library" / "Caches" / "uv")  # macOS
    if env.get("LOCALAPPDATA"):
        dirs.append(Path(env["LOCALAPPDATA"]) / "uv" / "cache")  # Windows
    return dirs


def in_uv_cache(python: str, env: dict[str, str] | os._Environ[str] | None = None) -> bool:
    """True when ``python`` lives in uv's cache (a ``uvx`` run), which a cache clean deletes."""
    env = os.environ if env is None else env
    path = Path(python).absolute()  # not resolved: a venv's python links elsewhere
    if any(part.startswith("archive-v") for part in path.parts):  # uv's cache layout
        return True
    return any(path.is_relative_to(d.absolute()) for d in _uv_cache_dirs(env))


def install_source() -> str:
    """What ``uvx --from`` needs to build this package again: a path, a wheel or a VCS URL."""
    try:
        raw = metadata.distribution(DIST_NAME).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        raw = None
    if not raw:
        return DIST_NAME
    info = json.loads(raw)
    url = str(info.get("url", ""))
    if "vcs_info" in info:
        vcs = info["vcs_info"]
        ref = vcs.get("requested_revision") or vcs.get("commit_id")
        return f"{vcs.get('vcs', 'git')}+{url}" + (f"@{ref}" if ref else "")
    if url.startswith("file://"):
        return url[len("file://"):]
    return url or DIST_NAME


def launcher(python: str = sys.executable) -> Launcher:
    """This machine's stable way to run ``smartcolab``: the interpreter, or uvx."""
    if in_uv_cache(python):
        uvx = shutil.which("uvx") or "uvx"
        return Launcher(str(Path(uvx).absolute()) if os.sep in uvx else uvx,
                        ("--from", install_source(), "smartcolab"))
    return Launcher(str(Path(python).absolute()), ("-m", "smartcolab"))


def smartcolab_command(python: str = sys.executable) -> str:
    """This install's ``smartcolab`` for a person to type, by absolute path (a venv's bin
    is often not on PATH; under uvx, ``uvx --from SOURCE smartcolab``)."""
    how = launcher(python)
    if how.prefix[:1] == ("--from",):  # uvx
        return shlex.join([how.command, *how.prefix])
    script = Path(python).parent / ("smartcolab.exe" if os.name == "nt" else "smartcolab")
    return str(script) if script.is_file() else shlex.join([how.command, *how.prefix])


def _args_env(runtime: str | None, url: str | None, runtimes_file: Path | None,
              token: str | None, local_args: Sequence[str] = ()) -> tuple[list[str], dict[str, str]]:
    args = ["mcp", *local_args]
    if runtime:
        args += ["--runtime", runtime]
    if runtimes_file:
        args += ["--runtimes-file", str(runtimes_file.expanduser().resolve())]
    env: dict[str, str] = {}
    if url:
        env[env_names.COLAB_URL] = url
        env[env_names.COLAB_TOKEN] = token or SECRET_PLACEHOLDER
    return args, env


def server_entry(*, runtime: str | None, url: str | None, runtimes_file: Path | None,
                 python: str = sys.executable, token: str | None = None,
                 local_args: Sequence[str] = ()) -> dict[str, object]:
    """The ``mcpServers`` entry: a stable launcher, ``mcp`` and its flags, and env."""
    args, env = _args_env(runtime, url, runtimes_file, token, local_args)
    how = launcher(python)
    entry: dict[str, object] = {"command": how.command, "args": [*how.prefix, *args]}
    if env:
        entry["env"] = env
    return entry


def _http_snippet(client: str, name: str, http_url: str, python: str) -> Snippet:
    how = launcher(python)
    start = shlex.join([how.command, *how.prefix, "mcp", "--transport", "http"])
    started = (f"Start the bridge first and keep it running: {start}  (it prints a bearer "
               "token; set SMARTCOLAB_MCP_TOKEN to choose one).")
    header = f"Authorization: Bearer {MCP_TOKEN_PLACEHOLDER}"
    if client == "claude-code":
        return Snippet(shlex.join(["claude", "mcp", "add", "--transport", "http", name, http_url,
                                   "--header", header]), started + " Then run:")
    if client == "cursor":
        entry = {"mcpServers": {name: {"url": http_url,
                                       "headers": {"Authorization": f"Bearer {MCP_TOKEN_PLACEHOLDER}"}}}}
        return Snippet(json.dumps(entry, indent=2), started + " " + _WHERE["cursor"])
    raise ValueError("Claude Desktop's config file starts local (stdio) servers only: use "
                     "'smartcolab config claude-desktop' without --transport http")


def render_snippet(client: str, *, name: str = "smart-colab", runtime: str | None = None,
                   url: str | None = None, runtimes_file: Path | None = None,
                   token: str | None = None, transport: str = "stdio",
                   http_url: str = DEFAULT_HTTP_URL, python: str = sys.executable,
                   local_args: Sequence[str] = ()) -> Snippet:
    """The snippet for ``client``; ``ValueError`` for a client/transport it cannot serve.

    ``local_args``: the local runtime's flags (--client, --python, --root).
    """
    if client not in SUPPORTED:
        raise ValueError(f"unknown client {client!r}; choose one of {', '.join(SUPPORTED)}")
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}; choose stdio or http")
    if transport == "http":
        return _http_snippet(client, name, http_url, python)
    if client == "claude-code":
        args, env = _args_env(runtime, url, runtimes_file, token, local_args)
        how = launcher(python)
        parts = ["claude", "mcp", "add", name]
        for key, value in env.items():
            parts += ["--env", f"{key}={value}"]
        parts += ["--", how.command, *how.prefix, *args]
        return Snippet(shlex.join(parts), "Run this once:")
    entry = server_entry(runtime=runtime, url=url, runtimes_file=runtimes_file, python=python,
                         token=token, local_args=local_args)
    note = _WHERE[client]
    if url and not token:
        note += (f" Replace {SECRET_PLACEHOLDER} with the runtime's secret (or pass "
                 "--token-file FILE; or use --runtime NAME after 'smartcolab runtimes add').")
    return Snippet(json.dumps({"mcpServers": {name: entry}}, indent=2), note)


def render_client_config(client: str, **kwargs: object) -> str:
    """Note and snippet together, for places that print both to one stream."""
    snippet = render_snippet(client, **kwargs)  # type: ignore[arg-type]
    return f"{snippet.note}\n{snippet.text}"
