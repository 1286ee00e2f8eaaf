"""The ``smartcolab`` command line: the only place that reads flags and environment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from . import __version__

app = typer.Typer(
    name="smartcolab",
    help="Stateful Python execution on Colab, Kaggle, a VM or this machine, for MCP clients.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ENV_SECRET = "SMARTCOLAB_SECRET"
ENV_NGROK_TOKEN = "NGROK_AUTHTOKEN"
# cloudflared's own variable for a named tunnel's token.
ENV_CLOUDFLARED_TOKEN = "TUNNEL_TOKEN"


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
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 for a VM reachable directly.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one.")] = 8765,
    root: Annotated[list[Path] | None, typer.Option(
        help="A directory files may be read from and written to (repeatable); the first is "
             "the working root. Default: /content on Colab, /kaggle/working on Kaggle, "
             "else the current directory.")] = None,
    state_dir: Annotated[Path | None, typer.Option(
        help="Where the job store and job outputs live. Default: ROOT/.smartcolab")] = None,
    port_file: Annotated[Path | None, typer.Option(
        help="Write the bound port to this file once listening (for supervisors).")] = None,
    insecure_no_auth: Annotated[bool, typer.Option(
        "--insecure-no-auth", help="Disable authentication (loopback addresses only).")] = False,
    kill_grace: Annotated[float, typer.Option(
        help="Seconds a job may ignore an interrupt at its deadline before the kernel is restarted.")] = 5.0,
    min_free_ram_mb: Annotated[int, typer.Option(
        help="Refuse jobs (unless forced) when less RAM than this is available.")] = 512,
    response_text_kb: Annotated[int, typer.Option(
        help="Most text of one job output in a response (head and tail kept).")] = 64,
    tls_cert: Annotated[str | None, typer.Option(help="TLS certificate (PEM) to serve HTTPS.")] = None,
    tls_key: Annotated[str | None, typer.Option(help="TLS private key (PEM).")] = None,
    plain_logs: Annotated[bool, typer.Option("--plain-logs", help="Human-readable logs instead of JSON lines.")] = False,
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
) -> None:
    """Run a runtime server: Jupyter kernels behind an authenticated job API.

    The secret is read from $SMARTCOLAB_SECRET or generated, and printed once.

    Example: smartcolab serve --port 8765 --root ~/data
    """
    from .errors import TunnelFailed
    from .runtime.config import RuntimeConfig
    from .runtime.server import run
    from .runtime.tunnel import TunnelOptions, check_kind

    roots = [r.expanduser().resolve() for r in root] if root else [default_root()]
    config = RuntimeConfig(
        host=host, port=port, roots=roots, auth=not insecure_no_auth,
        state_dir=(state_dir or roots[0] / ".smartcolab").expanduser().resolve(),
        kill_grace_s=kill_grace, min_free_ram_bytes=min_free_ram_mb * 1024 * 1024,
        response_text_bytes=response_text_kb * 1024,
        persist_dir=persist_dir.expanduser().resolve() if persist_dir else None,
        autosave_after_s=autosave_after,
    )
    secret = os.environ.get(ENV_SECRET)
    if secret:
        config.secret = secret
    try:
        kind = check_kind(tunnel)
        token = os.environ.get(ENV_NGROK_TOKEN if kind == "ngrok" else ENV_CLOUDFLARED_TOKEN)
        domain = ngrok_domain if kind == "ngrok" else cloudflared_hostname
        tunnel_options = TunnelOptions(kind=kind, token=token or None, domain=domain,
                                       binary=tunnel_binary)
        run(config, port_file=port_file, tls_cert=tls_cert, tls_key=tls_key,
            json_logs=not plain_logs, tunnel=tunnel_options)
    except TunnelFailed as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


def default_root() -> Path:
    """The platform's working directory: /content on Colab, /kaggle/working on Kaggle."""
    if "COLAB_RELEASE_TAG" in os.environ and Path("/content").is_dir():
        return Path("/content")
    if "KAGGLE_KERNEL_RUN_TYPE" in os.environ and Path("/kaggle/working").is_dir():
        return Path("/kaggle/working")
    return Path.cwd().resolve()


def main() -> None:
    app()
