"""``smartcolab local status|stop``: the local runtime daemons of this user.

Also what the bridge's and ``config``'s local-runtime flags resolve to. The daemon's
own entry point is ``cli/daemon_main.py``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from smartcolab.cli.common import JsonOpt, err, out, print_json, run
from smartcolab.shared import env as env_names
from smartcolab.shared.local_daemon import DEFAULT_IDLE_TIMEOUT_S, H_QUIET

ENV_CLIENT = env_names.CLIENT
ENV_IDLE_MINUTES = env_names.IDLE_MINUTES
ENV_CHECKPOINT_DIR = env_names.CHECKPOINT_DIR

local_app = typer.Typer(help="The local runtime daemon: one per user and configuration, "
                             "shared by every bridge and command.", no_args_is_help=True)


@dataclass(frozen=True)
class LocalOptions:
    python: str | None
    client: str
    idle_timeout_s: float


def local_base(env: Mapping[str, str]) -> Path:
    """Where daemon directories live: ``$CHECKPOINT_DIR/local`` or ``~/.smartcolab/local``."""
    state = env.get(ENV_CHECKPOINT_DIR) or str(Path.home() / ".smartcolab")
    return Path(state).expanduser() / "local"


def local_options(env: Mapping[str, str], *, python: str | None = None,
                  client: str | None = None, idle_minutes: float | None = None) -> LocalOptions:
    """Flags first, then ``$SMARTCOLAB_PYTHON``, ``$SMARTCOLAB_CLIENT``, ``$SMARTCOLAB_IDLE_MINUTES``."""
    from smartcolab.client.local.python import resolve_python
    from smartcolab.client.local.sessions import DEFAULT_LABEL, check_label

    if idle_minutes is None and env.get(ENV_IDLE_MINUTES):
        try:
            idle_minutes = float(env[ENV_IDLE_MINUTES])
        except ValueError:
            raise ValueError(f"${ENV_IDLE_MINUTES} must be a number of minutes") from None
    idle = DEFAULT_IDLE_TIMEOUT_S if idle_minutes is None else idle_minutes * 60.0
    if idle <= 0:
        raise ValueError("the idle timeout must be positive")
    return LocalOptions(python=resolve_python(python, env),
                        client=check_label(client or env.get(ENV_CLIENT) or DEFAULT_LABEL),
                        idle_timeout_s=idle)


def snippet_local_args(client: str, *, python: str | None, root: Path | None,
                       env: Mapping[str, str]) -> list[str]:
    """The bridge flags ``smartcolab config CLIENT`` writes for the local runtime.

    Claude Code is configured inside a project: the project is the workspace root and
    its virtualenv (if any) the kernels' Python. The Python is checked for ipykernel.
    """
    from smartcolab.client.local.python import check_python, project_python, resolve_python
    from smartcolab.shared.errors import SmartColabError

    if client == "claude-code":
        root = root or Path.cwd()
    chosen = python or env.get(env_names.PYTHON)
    try:
        resolved = resolve_python(chosen, env) if chosen else (
            project_python(root) if client == "claude-code" and root else None)
        if resolved:
            check_python(resolved)
    except SmartColabError as exc:
        raise ValueError(exc.message) from None
    args = ["--client", client]
    if root is not None:
        args += ["--root", str(root.expanduser().resolve())]
    if resolved:
        args += ["--python", resolved]
    return args


async def _describe(info: Any) -> dict[str, Any]:
    import httpx2

    from smartcolab.client.local.daemon import probe

    row: dict[str, Any] = {**info.public(), "running": False}
    idle = await probe(info)
    if idle is None:
        return row
    row.update(running=True, idle_s=idle, uptime_s=round(time.time() - info.started_at, 1))
    headers = {"Authorization": f"Bearer {info.secret}", H_QUIET: "1"}
    async with httpx2.AsyncClient(base_url=info.url, headers=headers, timeout=5.0,
                                  trust_env=False) as http:
        sessions = (await http.get("/sessions")).json().get("sessions", [])
        jobs = (await http.get("/jobs", params={"limit": 200})).json().get("jobs", [])
    row["sessions"] = [s.get("name") for s in sessions]
    row["jobs"] = {status: sum(1 for j in jobs if j.get("status") == status)
                   for status in sorted({str(j.get("status")) for j in jobs})}
    return row


def _base_opt(state_dir: Path | None) -> Path:
    return state_dir.expanduser() / "local" if state_dir else local_base(os.environ)


StateOpt = Annotated[Path | None, typer.Option(
    "--checkpoint-dir", help="The bridge's CHECKPOINT_DIR (default: $CHECKPOINT_DIR or "
                             "~/.smartcolab).")]


@local_app.command("status")
def status(checkpoint_dir: StateOpt = None, as_json: JsonOpt = False) -> None:
    """Show each local runtime daemon: URL, pid, sessions, jobs and idle time.

    Example: smartcolab local status
    """
    from smartcolab.client.local.daemon import list_daemons

    async def body() -> list[dict[str, Any]]:
        return [await _describe(info) for info in list_daemons(_base_opt(checkpoint_dir))]

    rows = run(body)
    if as_json:
        print_json({"daemons": rows})
        return
    if not rows:
        out.print("no local runtime daemon (the first call that needs one starts it)")
    for r in rows:
        if not r["running"]:
            out.print(f"stale runtime file in {r['directory']} (pid {r['pid']} is gone)")
            continue
        jobs = ", ".join(f"{n} {s}" for s, n in r["jobs"].items()) or "none"
        out.print(f"[bold]{r['url']}[/bold]  pid {r['pid']}  root {r['root']}\n"
                  f"  python {r['python'] or '(the bridge’s own)'}  kernel {r['kernel']}\n"
                  f"  sessions: {', '.join(r['sessions']) or 'none'}  jobs: {jobs}\n"
                  f"  idle {r['idle_s']:.0f} s (stops after {r['idle_timeout_s']:.0f} s idle), "
                  f"up {r['uptime_s']:.0f} s")


@local_app.command("stop")
def stop(checkpoint_dir: StateOpt = None) -> None:
    """Stop every local runtime daemon of this user (their kernels and jobs end).

    Example: smartcolab local stop
    """
    from smartcolab.client.local.daemon import list_daemons, stop_daemon

    async def body() -> int:
        stopped = 0
        for info in list_daemons(_base_opt(checkpoint_dir)):
            if await stop_daemon(info):
                stopped += 1
            else:
                err.print(f"daemon pid {info.pid} did not stop")
        return stopped

    count = run(body)
    out.print(f"stopped {count} local runtime daemon(s)")
