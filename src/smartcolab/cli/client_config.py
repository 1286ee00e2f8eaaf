"""Snippets that register ``smartcolab mcp`` with an MCP client, for this machine."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from smartcolab.shared import env as env_names

SUPPORTED = ("claude-desktop", "claude-code", "cursor")
SECRET_PLACEHOLDER = "<the secret the runtime printed>"

_WHERE = {
    "claude-desktop": ("Add to claude_desktop_config.json (macOS: ~/Library/Application Support/"
                       "Claude/, Windows: %APPDATA%\\Claude\\), then restart Claude Desktop:"),
    "cursor": "Add to ~/.cursor/mcp.json (or .cursor/mcp.json in a project):",
}


def _args_env(runtime: str | None, url: str | None, runtimes_file: Path | None,
              local_args: Sequence[str] = ()) -> tuple[list[str], dict[str, str]]:
    args = ["-m", "smartcolab", "mcp", *local_args]
    if runtime:
        args += ["--runtime", runtime]
    if runtimes_file:
        args += ["--runtimes-file", str(runtimes_file.expanduser().resolve())]
    env: dict[str, str] = {}
    if url:
        env[env_names.COLAB_URL] = url
        env[env_names.COLAB_TOKEN] = SECRET_PLACEHOLDER
    return args, env


def server_entry(*, runtime: str | None, url: str | None, runtimes_file: Path | None,
                 python: str = sys.executable, local_args: Sequence[str] = ()
                 ) -> dict[str, object]:
    """The ``mcpServers`` entry: this interpreter, ``-m smartcolab mcp``, and env."""
    args, env = _args_env(runtime, url, runtimes_file, local_args)
    entry: dict[str, object] = {"command": python, "args": args}
    if env:
        entry["env"] = env
    return entry


def render_client_config(client: str, *, name: str = "smart-colab", runtime: str | None = None,
                         url: str | None = None, runtimes_file: Path | None = None,
                         python: str = sys.executable, local_args: Sequence[str] = ()) -> str:
    """The text to paste (JSON for Claude Desktop / Cursor, a command for Claude Code).

    ``local_args``: the local runtime's flags (--client, --python, --root).
    """
    if client == "claude-code":
        args, env = _args_env(runtime, url, runtimes_file, local_args)
        parts = ["claude", "mcp", "add", name]
        for key, value in env.items():
            parts += ["--env", f"{key}={value}"]
        parts += ["--", python, *args]
        return "Run:\n" + shlex.join(parts)
    entry = server_entry(runtime=runtime, url=url, runtimes_file=runtimes_file, python=python,
                         local_args=local_args)
    snippet = json.dumps({"mcpServers": {name: entry}}, indent=2)
    return f"{_WHERE[client]}\n{snippet}"
