"""What every CLI command shares: choosing a runtime, exit codes, error lines, output.

A command's runtime is, in this order: ``--url`` (+ ``--token-file``), ``--runtime NAME``
from the runtimes file, ``$COLAB_URL`` (+ ``$COLAB_TOKEN``), the runtimes file's
``default``, else the local runtime daemon rooted in the current directory (started
on first use, shared, and left running until it is idle).  The named runtimes and the
local runtime are the bridge's own (``client/registry.py``, ``client/embedded.py``): one
registry, one file format.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import anyio
import typer
from pydantic import BaseModel
from rich.console import Console

from smartcolab.cli import hints
from smartcolab.client.backend import Capability, RuntimeBackend
from smartcolab.client.embedded import EmbeddedRuntime
from smartcolab.client.registry import (
    COLAB,
    LOCAL,
    RuntimeRegistry,
    RuntimeSpec,
    check_url,
    env_runtimes,
    load_runtimes_file,
)
from smartcolab.shared import env as env_names
from smartcolab.shared.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidInput,
    LocalPathRefused,
    NotFound,
    RuntimeUnreachable,
    SmartColabError,
    Unauthorized,
    UnknownRuntime,
)

T = TypeVar("T")

# ---------------------------------------------------------------- exit codes
EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2  # also typer's code for a bad flag
EXIT_TIMED_OUT = 3
EXIT_CANCELLED = 4
EXIT_LOST = 5
EXIT_UNREACHABLE = 6
EXIT_AUTH = 7
EXIT_ERROR = 8
EXIT_INTERRUPTED = 130

JOB_EXIT_CODES: dict[str, int] = {
    "succeeded": EXIT_OK, "failed": EXIT_JOB_FAILED, "timed_out": EXIT_TIMED_OUT,
    "cancelled": EXIT_CANCELLED, "lost": EXIT_LOST,
}

ENV_URL = env_names.COLAB_URL
ENV_TOKEN = env_names.COLAB_TOKEN
ENV_RUNTIMES = env_names.RUNTIMES_FILE
URL_NAME = "url"

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)

# ---------------------------------------------------------------- shared options
RuntimeOpt = Annotated[str | None, typer.Option(
    "--runtime", "-r", help="A named runtime from the runtimes file ('local' = the local daemon).")]
UrlOpt = Annotated[str | None, typer.Option(
    "--url", help="Runtime URL (default: $COLAB_URL; none: the local runtime daemon).")]
# A secret never comes from argv (any local user sees it in ps): a file, stdin or $COLAB_TOKEN.
TokenOpt = Annotated[Path | None, typer.Option(
    "--token-file", help="File holding the runtime secret ('-' reads stdin; default: $COLAB_TOKEN).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@dataclass(frozen=True)
class Target:
    """Which runtime a command talks to, as given on the command line."""

    runtime: str | None = None
    url: str | None = None
    token: str | None = None
    quiet: bool = False


def runtimes_path(env: Mapping[str, str] | None = None) -> Path:
    """The runtimes file: ``$SMARTCOLAB_RUNTIMES`` or ``~/.smartcolab/runtimes.toml``."""
    env = os.environ if env is None else env
    value = env.get(ENV_RUNTIMES)
    return Path(value).expanduser() if value else Path.home() / ".smartcolab" / "runtimes.toml"


def known_specs(env: Mapping[str, str] | None = None,
                path: Path | None = None) -> tuple[list[RuntimeSpec], str | None]:
    """Runtimes from ``$COLAB_URL`` and the runtimes file, and the file's default."""
    env = os.environ if env is None else env
    specs = env_runtimes(env)
    default: str | None = None
    path = path or runtimes_path(env)
    if path.exists():
        more, default = load_runtimes_file(path, env)
        specs += [s for s in more if s.name not in {x.name for x in specs}]
    return specs, default


def _choose(target: Target, specs: list[RuntimeSpec], file_default: str | None) -> str:
    names = {s.name for s in specs}
    if target.url:
        return URL_NAME
    if target.runtime:
        if target.runtime != LOCAL and target.runtime not in names:
            known = ", ".join(sorted(names | {LOCAL}))
            raise UnknownRuntime(
                f"there is no runtime named {target.runtime!r} (known: {known}); add it with "
                "'smartcolab runtimes add NAME URL'", details={"runtime": target.runtime})
        return target.runtime
    if os.environ.get(ENV_URL):
        return "colab"
    if file_default and file_default in names:
        return file_default
    return LOCAL


@asynccontextmanager
async def open_runtime(target: Target) -> AsyncIterator[tuple[RuntimeSpec, RuntimeBackend]]:
    """The chosen runtime's spec and backend; the local daemon outlives this (idle stop).

    The CLI's commands run in processes of their own, so the runtime must keep the job
    records (``Capability.JOB_STORE``).
    """
    specs, file_default = known_specs()
    if target.url:
        token = target.token if target.token is not None else os.environ.get(ENV_TOKEN)
        specs = [RuntimeSpec(URL_NAME, check_url(target.url), token or None, "from --url"),
                 *(s for s in specs if s.name != URL_NAME)]
    name = _choose(target, specs, file_default)
    embedded: EmbeddedRuntime | None = None
    if name == LOCAL and LOCAL not in {s.name for s in specs}:
        # Files are this directory, as with `smartcolab serve`; the daemon rooted here
        # is shared with bridges configured for this directory, and outlives the command.
        from smartcolab.cli.commands.local import local_base, local_options
        from smartcolab.shared.private import private_umask

        private_umask()
        try:
            opts = local_options(os.environ)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        embedded = EmbeddedRuntime(Path.cwd().resolve(), local_base(os.environ),
                                   python=opts.python, idle_timeout_s=opts.idle_timeout_s,
                                   strip_values=tuple(s.secret for s in specs if s.secret))
    registry = RuntimeRegistry(specs, default=name, embedded=embedded)
    try:
        spec, client = await registry.client(name)
        if embedded is not None and embedded.started_daemon and not target.quiet:
            err.print(f"[dim]started a local runtime daemon for {embedded.root} (pid "
                      f"{embedded.info.pid if embedded.info else '?'}; it stops after "
                      f"{embedded.spec.idle_timeout_s / 60:.0f} min idle, or with "
                      "'smartcolab local stop')[/dim]")
        client.require(Capability.JOB_STORE, instead="the CLI does not drive it; use it "
                       "through the MCP bridge (smartcolab mcp)")
        yield spec, client
    finally:
        with anyio.CancelScope(shield=True):
            await registry.aclose()


def runtime_label(spec: RuntimeSpec) -> str:
    """How output names a runtime: by its URL when its name only says where the URL came
    from ('colab' for $COLAB_URL, 'url' for --url), which may be a local server."""
    if spec.name in (COLAB, URL_NAME):
        return spec.url
    return f"{spec.name} ({spec.url})"


# ---------------------------------------------------------------- errors and running
def exit_code_for(exc: SmartColabError) -> int:
    """The process exit code of an error (documented in docs/cli.md)."""
    if isinstance(exc, RuntimeUnreachable):
        return EXIT_UNREACHABLE
    if isinstance(exc, (Unauthorized, Forbidden)) and not isinstance(exc, LocalPathRefused):
        return EXIT_AUTH
    if isinstance(exc, (BadRequest, NotFound, Conflict, LocalPathRefused, UnknownRuntime)):
        return EXIT_USAGE
    return EXIT_ERROR


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print one clear error line and exit with ``code``."""
    err.print(f"[bold red]error:[/bold red] {message}", markup=True, highlight=False)
    raise typer.Exit(code)


def run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run an async command body; a ``SmartColabError`` becomes one line and an exit code."""
    return run_sync(lambda: anyio.run(fn))


def run_sync(fn: Callable[[], T]) -> T:
    """Run a command body; a ``SmartColabError`` becomes one line and an exit code."""
    try:
        return fn()
    except SmartColabError as exc:
        hint = hints.for_error(exc.message)
        if isinstance(exc, Unauthorized):
            hint = " (check --token-file / $COLAB_TOKEN; 'smartcolab doctor' says more)"
        fail(f"{exc.message}{hint}", exit_code_for(exc))
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except OSError as exc:
        fail(f"{exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}".rstrip(": "),
             EXIT_ERROR)


def print_json(data: Any) -> None:
    """One JSON document on stdout (models dumped in JSON mode)."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover
