"""The ``smartcolab`` command line: the only place that reads flags and environment."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from smartcolab import __version__
from smartcolab.cli import help_format
from smartcolab.mcp.settings import (
    DEFAULT_MAX_IMAGES,
    DEFAULT_MAX_RESULT_CHARS,
    DEFAULT_WAIT_BUDGET_S,
)
from smartcolab.runtime import config as rc
from smartcolab.shared import env as env_names
from smartcolab.shared.protocol import LONG_TIMEOUT_S, QUICK_TIMEOUT_S

help_format.install()
app = typer.Typer(
    name="smartcolab",
    help="Stateful Python execution on Colab, Kaggle, a VM or this machine, for MCP clients.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# The bridge's Streamable HTTP transport.
DEFAULT_MCP_HOST = "127.0.0.1"
DEFAULT_MCP_PORT = 8766


def _version(value: bool) -> None:
    if value:
        typer.echo(f"smartcolab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """smartcolab: run Python on remote Jupyter kernels from an MCP client or a terminal."""


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 for a VM reachable directly.")] = rc.DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one.")] = rc.DEFAULT_PORT,
    root: Annotated[list[Path] | None, typer.Option(
        help="A directory files may be read from and written to (repeatable); the first is "
             "the working root. Default: /content on Colab, /kaggle/working on Kaggle, "
             "else the current directory.")] = None,
    state_dir: Annotated[Path | None, typer.Option(
        help="Where the job store and job outputs live. Default: ROOT/.smartcolab")] = None,
    port_file: Annotated[Path | None, typer.Option(
        help="Write the bound port to this file once listening (for supervisors).")] = None,
    insecure_no_auth: Annotated[bool, typer.Option(
        "--insecure-no-auth", hidden=True, help="Removed: authentication is always on.")] = False,
    kill_grace: Annotated[float, typer.Option(
        help="Seconds a job may ignore an interrupt at its deadline before the kernel is restarted.")] = rc.DEFAULT_KILL_GRACE_S,
    min_free_ram_mb: Annotated[int, typer.Option(
        help="Refuse jobs (unless forced) when less RAM than this is available.")] = rc.DEFAULT_MIN_FREE_RAM_BYTES // rc.MIB,
    response_text_kb: Annotated[int, typer.Option(
        help="Most text of one job output in a response (head and tail kept).")] = rc.DEFAULT_RESPONSE_TEXT_BYTES // rc.KIB,
    tls_cert: Annotated[str | None, typer.Option(help="TLS certificate (PEM) to serve HTTPS.")] = None,
    tls_key: Annotated[str | None, typer.Option(help="TLS private key (PEM).")] = None,
    plain_logs: Annotated[bool, typer.Option(
        "--plain-logs", help="Human-readable log lines (the default in a terminal).")] = False,
    json_logs: Annotated[bool, typer.Option(
        "--json-logs", help="One JSON object per log line (the default when stderr is not a "
                            "terminal, e.g. under a supervisor).")] = False,
    persist_dir: Annotated[Path | None, typer.Option(
        help="Where saved variables go (Drive, /kaggle/working, a disk). Default: STATE_DIR/persist")] = None,
    autosave_after: Annotated[float | None, typer.Option(
        help="Save the session's variables after each successful job that ran this many "
             "seconds or more (snapshot autosave-SESSION).")] = None,
    tunnel: Annotated[str, typer.Option(
        help="Public tunnel: none, ngrok (token from $NGROK_AUTHTOKEN) or cloudflared "
             "(quick tunnel; a named one with $TUNNEL_TOKEN and --cloudflared-hostname).")] = "none",
    ngrok_domain: Annotated[str | None, typer.Option(
        help="Your reserved ngrok domain, so the URL stays the same between sessions.")] = None,
    cloudflared_hostname: Annotated[str | None, typer.Option(
        help="Public hostname routed to your named cloudflared tunnel.")] = None,
    tunnel_binary: Annotated[str | None, typer.Option(
        help="Path to the ngrok or cloudflared binary (default: found by pyngrok / on PATH).")] = None,
    allow_cidr: Annotated[list[str] | None, typer.Option(
        help="Only serve clients from this network, e.g. 203.0.113.0/24 (repeatable). "
             "Default: every address.")] = None,
    trusted_proxy: Annotated[list[str] | None, typer.Option(
        help="A network whose connections may name the real client in X-Forwarded-For "
             "or Forwarded, e.g. a reverse proxy (repeatable). Default: none; the tunnel "
             "agent started by --tunnel is always believed.")] = None,
    allow_host: Annotated[list[str] | None, typer.Option(
        help="Another name this runtime answers to in the Host header, e.g. my-vm.example.com "
             "or *.example.com (repeatable). Loopback names, IP addresses, --host and the "
             "tunnel's hostname are always allowed.")] = None,
    allow_origin: Annotated[list[str] | None, typer.Option(
        help="A web origin let through the Origin check, e.g. a proxy serving /ui under "
             "another name: https://tools.example.com (repeatable).")] = None,
    header_timeout: Annotated[float, typer.Option(
        help="Seconds a client may take to send a request's headers.")] = 10.0,
    max_connections_per_client: Annotated[int, typer.Option(
        help="Most open connections from one address; 0 for no cap.")] = 128,
    guarded: Annotated[bool, typer.Option(
        "--guarded", help="Refuse job code that plainly runs shell commands or deletes a "
                          "root or files outside the roots (a seatbelt, not a sandbox).")] = False,
    rate_limit: Annotated[float, typer.Option(
        help="Requests per second allowed per client address; 0 disables.")] = rc.DEFAULT_RATE_LIMIT_PER_S,
    rate_burst: Annotated[int, typer.Option(
        help="Requests a client may send in a burst above --rate-limit.")] = rc.DEFAULT_RATE_BURST,
    lockout_failures: Annotated[int, typer.Option(
        help="Failed authentications within a minute that lock a client address out; "
             "0 disables.")] = rc.DEFAULT_LOCKOUT_FAILURES,
    lockout_seconds: Annotated[float, typer.Option(
        help="How long a locked-out client is refused (429 with Retry-After).")] = rc.DEFAULT_LOCKOUT_S,
    max_body_kb: Annotated[int, typer.Option(
        help="Largest request body in KiB (streamed file uploads have their own limit).")] = rc.DEFAULT_MAX_BODY_BYTES // rc.KIB,
    max_header_kb: Annotated[int, typer.Option(help="Largest total of request headers in KiB.")] = rc.DEFAULT_MAX_HEADER_BYTES // rc.KIB,
    max_query_kb: Annotated[int, typer.Option(help="Largest query string in KiB.")] = rc.DEFAULT_MAX_QUERY_BYTES // rc.KIB,
    max_sessions: Annotated[int, typer.Option(
        help="Most kernel sessions at once (each is a Python process).")] = rc.DEFAULT_MAX_SESSIONS,
    max_queued: Annotated[int, typer.Option(
        min=1, help="Most jobs waiting in one session's queue; more are refused with 429 "
                    "queue_full.")] = rc.DEFAULT_MAX_QUEUED_PER_SESSION,
) -> None:
    """Run a runtime server: Jupyter kernels behind an authenticated job API.

    The secret is read from $SMARTCOLAB_SECRET or generated, and printed once.

    Example: smartcolab serve --port 8765 --root ~/data
    """
    from smartcolab.runtime.host.tunnel import TunnelOptions, check_kind
    from smartcolab.runtime.server import run
    from smartcolab.shared.errors import TunnelFailed

    if insecure_no_auth:
        typer.echo("error: --insecure-no-auth was removed: without the secret any local user, "
                   "and any web page through the browser, could run code as you (SECURITY.md). "
                   "Use the secret the runtime prints, or `smartcolab local`.", err=True)
        raise typer.Exit(2)
    config = rc.build_config(
        roots=root, state_dir=state_dir, persist_dir=persist_dir, trusted_proxies=trusted_proxy,
        # Kernels inherit this process's environment: the secret must not be in it.
        secret=os.environ.pop(env_names.SECRET, None),
        host=host, port=port,
        allowed_hosts=list(allow_host or []), allowed_origins=list(allow_origin or []),
        header_timeout_s=header_timeout, max_connections_per_client=max_connections_per_client,
        kill_grace_s=kill_grace, min_free_ram_bytes=min_free_ram_mb * rc.MIB,
        response_text_bytes=response_text_kb * rc.KIB, autosave_after_s=autosave_after,
        allow_cidrs=list(allow_cidr or []), guarded=guarded,
        rate_limit_per_s=rate_limit, rate_burst=rate_burst,
        lockout_failures=lockout_failures, lockout_s=lockout_seconds,
        max_body_bytes=max_body_kb * rc.KIB, max_header_bytes=max_header_kb * rc.KIB,
        max_query_bytes=max_query_kb * rc.KIB, max_sessions=max_sessions,
        max_queued_per_session=max_queued,
    )
    try:
        kind = check_kind(tunnel)
        token = os.environ.get(env_names.NGROK_TOKEN if kind == "ngrok"
                               else env_names.CLOUDFLARED_TOKEN)
        domain = ngrok_domain if kind == "ngrok" else cloudflared_hostname
        tunnel_options = TunnelOptions(kind=kind, token=token or None, domain=domain,
                                       binary=tunnel_binary)
        run(config, port_file=port_file, tls_cert=tls_cert, tls_key=tls_key,
            json_logs=json_logs or (not plain_logs and not sys.stderr.isatty()),
            tunnel=tunnel_options)
    except TunnelFailed as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


def main() -> None:
    app()


# ---------------------------------------------------------------- MCP bridge
def mcp_runtimes_file(explicit: Path | None, env: Mapping[str, str]) -> Path | None:
    """The runtimes file ``smartcolab mcp`` reads.

    ``--runtimes-file`` must exist; otherwise the file ``smartcolab runtimes add``
    writes (``$SMARTCOLAB_RUNTIMES`` or ``~/.smartcolab/runtimes.toml``) is read when
    it exists, so runtimes added on the command line reach the bridge too.
    """
    if explicit is not None:
        return explicit.expanduser()
    from smartcolab.cli.common import runtimes_path

    default = runtimes_path(env)
    return default if default.is_file() else None


@app.command()
def mcp(
    transport: Annotated[str, typer.Option(
        help="stdio (launched by an MCP client) or http (Streamable HTTP, bearer-protected).")] = "stdio",
    host: Annotated[str, typer.Option(help="HTTP transport: address to bind.")] = DEFAULT_MCP_HOST,
    port: Annotated[int, typer.Option(help="HTTP transport: port (0 picks a free one).")] = DEFAULT_MCP_PORT,
    allowed_host: Annotated[list[str] | None, typer.Option(
        help="HTTP transport: another Host name clients use to reach this server (repeatable; "
             "loopback names and the bind address are always allowed).")] = None,
    allowed_origin: Annotated[list[str] | None, typer.Option(
        help="HTTP transport: a browser Origin allowed to call (repeatable; loopback origins "
             "are always allowed).")] = None,
    runtime: Annotated[str | None, typer.Option(
        help="Default runtime name (from the runtimes file, 'colab' or 'local').")] = None,
    runtimes_file: Annotated[Path | None, typer.Option(
        help="TOML file of named runtimes [runtimes.NAME] url/secret. Default: $SMARTCOLAB_RUNTIMES "
             "or ~/.smartcolab/runtimes.toml (what 'smartcolab runtimes add' writes), if it exists.")] = None,
    save_dir: Annotated[Path | None, typer.Option(
        help="Where downloads and extra images go. Env: LOCAL_SAVE_DIR")] = None,
    checkpoint_dir: Annotated[Path | None, typer.Option(
        help="Journal, checkpoints, embedded runtime state. Env: CHECKPOINT_DIR")] = None,
    workspace: Annotated[Path | None, typer.Option(
        "--root", "--workspace",
        help="Working root of the local runtime (a project directory, say). "
             "Default: CHECKPOINT_DIR/embedded/workspace")] = None,
    python: Annotated[str | None, typer.Option(
        help="Python interpreter of the local runtime's kernels (needs ipykernel). "
             "Env: SMARTCOLAB_PYTHON. Default: the bridge's own.")] = None,
    kernel: Annotated[str, typer.Option(
        help="Kernelspec name of the local runtime's kernels (instead of --python).")] = "python3",
    client: Annotated[str | None, typer.Option(
        help="This client's label: its default session on the local runtime. "
             "Env: SMARTCOLAB_CLIENT. Default: main.")] = None,
    idle_timeout: Annotated[float | None, typer.Option(
        help="Minutes the local runtime daemon stays up with no job and no request. "
             "Env: SMARTCOLAB_IDLE_MINUTES. Default: 30.")] = None,
    upload_root: Annotated[list[Path] | None, typer.Option(
        help="Extra local directory upload_to_colab may read from (repeatable).")] = None,
    no_embedded: Annotated[bool, typer.Option(
        "--no-embedded", help="Do not offer the embedded local runtime.")] = False,
    wait_budget: Annotated[float, typer.Option(
        help="Seconds a tool call may wait for a job before returning 'running'.")] = DEFAULT_WAIT_BUDGET_S,
    quick_timeout: Annotated[float, typer.Option(help="Default and largest job timeout of run_code_quick.")] = QUICK_TIMEOUT_S,
    long_timeout: Annotated[float, typer.Option(help="Default job timeout of run_code_long.")] = LONG_TIMEOUT_S,
    max_chars: Annotated[int, typer.Option(help="Most characters of text in one result.")] = DEFAULT_MAX_RESULT_CHARS,
    max_images: Annotated[int, typer.Option(help="Most images in one result.")] = DEFAULT_MAX_IMAGES,
    log_level: Annotated[str, typer.Option(help="Log level (logs go to stderr).")] = "INFO",
) -> None:
    """Run the MCP server (the bridge) that MCP clients launch.

    Runtimes come from COLAB_URL + COLAB_TOKEN (runtime 'colab') and/or a runtimes
    file; with none, an embedded local runtime starts on first use. HTTP mode reads
    its bearer token from $SMARTCOLAB_MCP_TOKEN (16 characters at least) or generates one
    (shown on the terminal only); Host and Origin are checked on every bind.

    Example: COLAB_URL=https://x.ngrok-free.app COLAB_TOKEN=... smartcolab mcp
    """
    import anyio

    from smartcolab.cli.commands.local import local_options
    from smartcolab.client.registry import env_runtimes, load_runtimes_file
    from smartcolab.mcp.server import BridgeConfig, configure_logging, serve_http, serve_stdio
    from smartcolab.mcp.settings import BridgeSettings
    from smartcolab.shared import loop as event_loop
    from smartcolab.shared.errors import SmartColabError
    from smartcolab.shared.private import private_dir, private_umask

    configure_logging(log_level.upper())
    private_umask()  # journal, checkpoints, downloads: private to this user
    env = os.environ
    state = Path(checkpoint_dir or env.get(env_names.CHECKPOINT_DIR) or Path.home() / ".smartcolab")
    try:
        private_dir(state.expanduser())
        settings = BridgeSettings(
            save_dir=Path(save_dir or env.get(env_names.LOCAL_SAVE_DIR) or state / "downloads").expanduser(),
            checkpoint_dir=state.expanduser(), wait_budget_s=wait_budget,
            quick_timeout_s=quick_timeout, long_timeout_s=long_timeout,
            max_result_chars=max_chars, max_images=max_images,
            extra_upload_roots=tuple(p.expanduser().resolve() for p in upload_root or ()))
        specs = env_runtimes(env)
        default = runtime
        file = mcp_runtimes_file(runtimes_file, env)
        if file is not None:
            more, file_default = load_runtimes_file(file.expanduser(), env)
            specs += [s for s in more if s.name not in {x.name for x in specs}]
            default = default or file_default
        local = local_options(env, python=python, client=client, idle_minutes=idle_timeout)
        config = BridgeConfig(settings=settings, runtimes=specs, default_runtime=default,
                              embedded=not no_embedded,
                              embedded_root=workspace.expanduser().resolve() if workspace else None,
                              python=local.python, kernel=kernel, client_label=local.client,
                              idle_timeout_s=local.idle_timeout_s,
                              open_browser=not env.get(env_names.NO_BROWSER))
        if transport == "stdio":
            anyio.run(serve_stdio, config, backend_options=event_loop.anyio_options())
        elif transport == "http":
            from smartcolab.mcp.transports.http import announce_token, resolve_token

            token, generated = resolve_token(env.get(env_names.MCP_TOKEN))
            if generated:
                typer.echo(announce_token(token, settings.checkpoint_dir, sys.stderr), err=True)
            anyio.run(lambda: serve_http(config, host=host, port=port, token=token,
                                         allowed_hosts=tuple(allowed_host or ()),
                                         allowed_origins=tuple(allowed_origin or ())))
        else:
            raise ValueError(f"unknown transport {transport!r}: use stdio or http")
    except (ValueError, SmartColabError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


@app.command()
def config(
    client: Annotated[str, typer.Argument(help="claude-desktop, claude-code or cursor")],
    runtime: Annotated[str | None, typer.Option(help="Default runtime name to pass to the bridge.")] = None,
    url: Annotated[str | None, typer.Option(help="Runtime URL (COLAB_URL) to put in the snippet.")] = None,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", help="File holding the runtime's secret to put in the snippet "
                             "(COLAB_TOKEN; '-' reads stdin); default: a placeholder.")] = None,
    runtimes_file: Annotated[Path | None, typer.Option(help="Runtimes TOML file to pass.")] = None,
    name: Annotated[str, typer.Option(help="Server name in the client's config.")] = "smart-colab",
    transport: Annotated[str, typer.Option(
        help="stdio (the client starts the bridge) or http (you run 'smartcolab mcp "
             "--transport http' and the client connects to it).")] = "stdio",
    http_url: Annotated[str, typer.Option(
        help="With --transport http: the bridge's URL.")] = "http://127.0.0.1:8766/mcp",
    python: Annotated[str | None, typer.Option(
        help="Python of the local runtime's kernels. Default for claude-code: the project's "
             ".venv/venv if there is one; env SMARTCOLAB_PYTHON.")] = None,
    root: Annotated[Path | None, typer.Option(
        help="Working root of the local runtime. Default for claude-code: this directory.")] = None,
) -> None:
    """Print the config snippet (or command) for an MCP client, for this machine.

    Only the snippet goes to stdout (where to paste it goes to stderr), so
    `smartcolab config claude-desktop > snippet.json` is valid JSON.

    Example: smartcolab config claude-desktop --url https://x.ngrok-free.app
    """
    from smartcolab.cli.client_config import render_snippet
    from smartcolab.cli.commands.local import snippet_local_args
    from smartcolab.cli.commands.runtimes import read_secret
    from smartcolab.shared.errors import SmartColabError

    try:
        token = read_secret(token_file) if token_file is not None else None
        local_args = snippet_local_args(client, python=python, root=root, env=os.environ)
        snippet = render_snippet(client, name=name, runtime=runtime, url=url, token=token,
                                 runtimes_file=runtimes_file, transport=transport,
                                 http_url=http_url, local_args=local_args)
    except (ValueError, SmartColabError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(snippet.note, err=True)
    typer.echo(snippet.text)


# ---------------------------------------------------------------- commands for people
def _register_user_commands() -> None:
    from smartcolab.cli.commands.local import local_app
    from smartcolab.cli.commands.tab import tab_app
    from smartcolab.cli.user import register

    register(app)
    app.add_typer(local_app, name="local")
    app.add_typer(tab_app, name="tab")


_register_user_commands()
