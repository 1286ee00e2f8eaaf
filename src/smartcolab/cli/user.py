"""Typer wiring of the commands for people: flags in, plain arguments out.

The bodies live in ``cli/commands/``: ``jobs.py``, ``files.py``,
``runtimes.py``, ``doctor.py``, ``demo.py`` and ``bundle.py``; ``register`` adds these
commands to the ``smartcolab`` app (``cli/app.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import anyio
import typer

from smartcolab.cli.commands import doctor as cli_doctor
from smartcolab.cli.commands import files as cli_files
from smartcolab.cli.commands import jobs as cli_jobs
from smartcolab.cli.commands import runtimes as cli_runtimes
from smartcolab.cli.common import (
    EXIT_JOB_FAILED,
    EXIT_USAGE,
    JsonOpt,
    RuntimeOpt,
    Target,
    TokenOpt,
    UrlOpt,
    fail,
    run,
    run_sync,
    runtimes_path,
)
from smartcolab.shared.protocol import QUICK_TIMEOUT_S

SessionOpt = Annotated[str, typer.Option("--session", "-s", help="Kernel session name.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing file.")]

jobs_app = typer.Typer(help="List, inspect, cancel and read jobs on a runtime.",
                       no_args_is_help=True)
runtimes_app = typer.Typer(help="Named runtimes in the runtimes file (shared with `smartcolab mcp`).",
                           no_args_is_help=True)


def _target(runtime: str | None, url: str | None, token_file: Path | None,
            quiet: bool = False) -> Target:
    token = None if token_file is None else run_sync(lambda: cli_runtimes.read_secret(token_file))
    return Target(runtime=runtime, url=url, token=token, quiet=quiet)


def exec_(
    code: Annotated[str | None, typer.Argument(help="Python code to run ('-' reads stdin).")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Run this file's code.")] = None,
    session: SessionOpt = "main",
    timeout: Annotated[float, typer.Option(
        help=f"Seconds before the runtime interrupts the job ({QUICK_TIMEOUT_S:.0f} s unless "
             "given: long scripts need more, e.g. --timeout 3600); 0 = no limit.")] = QUICK_TIMEOUT_S,
    images: Annotated[Path | None, typer.Option(help="Save PNG outputs (plots) in this directory.")] = None,
    runtime: RuntimeOpt = None, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Run Python on a runtime and stream its output; the exit code is the job's status.

    Exit codes: 0 succeeded, 1 failed, 3 timed out, 4 cancelled, 5 lost, 6 unreachable,
    7 auth refused, 2 bad input, 130 interrupted (Ctrl-C cancels the remote job).

    Example: smartcolab exec "import sys; print(sys.version)"   or   smartcolab exec -f train.py --timeout 3600
    """
    if (code is None) == (file is None):
        fail("give CODE or --file FILE (exactly one)", EXIT_USAGE)
    if file is not None:
        try:
            text = file.expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"cannot read {file}: {exc.strerror}", EXIT_USAGE)
    else:
        text = typer.get_text_stream("stdin").read() if code == "-" else str(code)
    if not text.strip():
        fail("the code is empty", EXIT_USAGE)
    target = _target(runtime, url, token, as_json)
    status = run(lambda: cli_jobs.exec_code(target, text, session=session,
                                            job_timeout=timeout or None, images=images, as_json=as_json))
    raise typer.Exit(status)


@jobs_app.command("list")
def jobs_list(
    limit: Annotated[int, typer.Option(help="Most jobs to show.")] = 20,
    session: Annotated[str | None, typer.Option(help="Only this session's jobs.")] = None,
    status: Annotated[str | None, typer.Option(help="Only jobs with this status.")] = None,
    runtime: RuntimeOpt = None, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Recent jobs, newest first.

    Example: smartcolab jobs list --runtime kaggle --status running
    """
    target = _target(runtime, url, token, as_json)
    run(lambda: cli_jobs.list_jobs(target, limit=limit, session=session, status=status,
                                   as_json=as_json))


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="The job id.")],
    wait: Annotated[float, typer.Option(help="Wait up to this many seconds for it to finish.")] = 0.0,
    runtime: RuntimeOpt = None, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """One job's status, timing and result; exit code as for exec once it has ended.

    Example: smartcolab jobs show cli-1a2b3c --wait 30
    """
    target = _target(runtime, url, token, as_json)
    raise typer.Exit(run(lambda: cli_jobs.show_job(target, job_id, wait=wait, as_json=as_json)))


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: Annotated[str, typer.Argument(help="The job id.")],
    runtime: RuntimeOpt = None, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Interrupt a queued or running job (its kernel restarts if it ignores the interrupt).

    Example: smartcolab jobs cancel cli-1a2b3c
    """
    target = _target(runtime, url, token, as_json)
    run(lambda: cli_jobs.cancel_job(target, job_id, as_json=as_json))


@jobs_app.command("output")
def jobs_output(
    job_id: Annotated[str, typer.Argument(help="The job id.")],
    follow: Annotated[bool, typer.Option("--follow", "-F", help="Keep printing until it ends.")] = False,
    offset: Annotated[int, typer.Option(help="Start at this byte of the output.")] = 0,
    runtime: RuntimeOpt = None, url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """A job's full output (every byte, paged), optionally following it live.

    Example: smartcolab jobs output cli-1a2b3c --follow > train.log
    """
    target = _target(runtime, url, token)
    raise typer.Exit(run(lambda: cli_jobs.job_output(target, job_id, follow_live=follow,
                                                     offset=offset)))


def vars_(
    session: SessionOpt = "main",
    private: Annotated[bool, typer.Option("--private", help="Include names starting with _.")] = False,
    runtime: RuntimeOpt = None, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Variables in a session: type, shape or length, size, preview.

    Example: smartcolab vars --runtime colab --json
    """
    target = _target(runtime, url, token, as_json)
    run(lambda: cli_jobs.show_vars(target, session=session, private=private, as_json=as_json))


def cleanup(
    names: Annotated[list[str] | None, typer.Argument(help="Variables to delete.")] = None,
    session: SessionOpt = "main",
    reset: Annotated[bool, typer.Option("--reset", help="Delete every user variable.")] = False,
    runtime: RuntimeOpt = None, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Free memory: garbage-collect, close figures, empty the GPU cache; delete NAMES if given.

    Example: smartcolab cleanup big_df model --runtime colab
    """
    target = _target(runtime, url, token, as_json)
    run(lambda: cli_jobs.cleanup(target, session=session, names=names or [], reset=reset,
                                 as_json=as_json))


def probe(runtime: RuntimeOpt = None, url: UrlOpt = None, token: TokenOpt = None,
          as_json: JsonOpt = False) -> None:
    """What a runtime has: platform, GPUs, CPUs, RAM, disk, packages, time left.

    Example: smartcolab probe --url https://abc.ngrok-free.app --token-file ~/.colab-secret
    """
    target = _target(runtime, url, token, as_json)
    run(lambda: cli_runtimes.probe(target, as_json=as_json))


def ls(
    path: Annotated[str, typer.Argument(help="Remote directory, relative to the runtime root.")] = "",
    recursive: Annotated[bool, typer.Option("--recursive", "-R", help="Descend into directories.")] = False,
    pattern: Annotated[str | None, typer.Option(help="Glob on names, e.g. '*.png'.")] = None,
    runtime: RuntimeOpt = None, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """List files on a runtime.

    Example: smartcolab ls outputs --pattern '*.png' -r colab
    """
    target = _target(runtime, url, token, as_json)
    run(lambda: cli_files.ls(target, path, recursive=recursive, pattern=pattern, as_json=as_json))


def get(
    remote: Annotated[str, typer.Argument(help="Remote file or directory path.")],
    local: Annotated[Path | None, typer.Argument(help="Local file or directory (default: here).")] = None,
    overwrite: OverwriteOpt = False,
    compress: Annotated[bool, typer.Option("--compress", help="gzip on the wire (text files).")] = False,
    quiet: QuietOpt = False,
    runtime: RuntimeOpt = None, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Download a file (progress bar, sha256-verified, resumes if run again after a drop) or a directory.

    Example: smartcolab get outputs/model.pt ./models/ -r colab
    """
    target = _target(runtime, url, token, as_json or quiet)
    run(lambda: cli_files.get(target, remote, local, overwrite=overwrite, compress=compress,
                              quiet=quiet, as_json=as_json))


def put(
    local: Annotated[Path, typer.Argument(help="Local file.")],
    remote: Annotated[str, typer.Argument(help="Remote path (ending in / = into that directory).")],
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    runtime: RuntimeOpt = None, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Upload a file: progress bar, sha256 declared and checked by the runtime.

    Example: smartcolab put data.csv data/ -r colab
    """
    target = _target(runtime, url, token, as_json or quiet)
    local = local.expanduser()
    if not local.is_file():
        fail(f"{local} is not a readable regular file", EXIT_USAGE)
    remote = cli_files.remote_destination(local, remote)
    run(lambda: cli_files.put(target, local, remote, overwrite=overwrite, quiet=quiet,
                              as_json=as_json))


FileOpt = Annotated[Path | None, typer.Option(
    "--file", help="Runtimes file (default: $SMARTCOLAB_RUNTIMES or ~/.smartcolab/runtimes.toml).")]


@runtimes_app.command("list")
def runtimes_list(file: FileOpt = None, as_json: JsonOpt = False) -> None:
    """Known runtimes: the runtimes file, $COLAB_URL as 'colab', and 'local'.

    Example: smartcolab runtimes list --json
    """
    path = file or runtimes_path()
    run_sync(lambda: cli_runtimes.list_runtimes(path, as_json=as_json))


@runtimes_app.command("add")
def runtimes_add(
    name: Annotated[str, typer.Argument(help="A name: letters, digits, '_', '.', '-'.")],
    url: Annotated[str | None, typer.Argument(
        help="The runtime's URL (not for --kind colab).")] = None,
    secret_env: Annotated[str | None, typer.Option(
        help="Read the secret from this environment variable when used (keeps it out of the file).")] = None,
    ask_secret: Annotated[bool, typer.Option(
        "--ask-secret", help="Prompt for the secret (hidden) and store it in the file (mode 0600).")] = False,
    secret_file: Annotated[Path | None, typer.Option(
        help="Read the secret from this file ('-' = stdin) and store it in the file (mode 0600).")] = None,
    description: Annotated[str, typer.Option(help="A note shown in listings.")] = "",
    default: Annotated[bool, typer.Option("--default", help="Make it the default runtime.")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Change an existing entry.")] = False,
    file: FileOpt = None,
    kind: Annotated[str, typer.Option(
        help="runtime (a smartcolab runtime server), jupyter (a Jupyter Server) or colab "
             "(a runtime Colab assigns to your Google account: no URL, no secret).")] = "runtime",
    accelerator: Annotated[str, typer.Option(
        help="--kind colab: CPU, T4, L4, G4, A100, H100, V5E1 or V6E1.")] = "CPU",
    idle_release_minutes: Annotated[float, typer.Option(
        help="--kind colab: release the runtime after this long without use while a "
             "bridge runs (0: never).")] = 30.0,
    colab_python: Annotated[str | None, typer.Option(
        help="--kind colab: a Python 3.12+ that has google-colab-cli (needed when this "
             "one is older; see docs/platforms.md).")] = None,
) -> None:
    """Add a named runtime (use it with --runtime NAME here and in `smartcolab mcp`).

    Example: smartcolab runtimes add kaggle https://x.trycloudflare.com --secret-env KAGGLE_TOKEN --default

    Example: smartcolab runtimes add gpu --kind colab --accelerator T4 --default
    """
    path = file or runtimes_path()
    if kind == "colab":
        options: dict[str, object] = {"idle_release_minutes": idle_release_minutes}
        if colab_python:
            options["python"] = colab_python
        if url:
            options["url"] = url
        life = run_sync(lambda: anyio.run(lambda: cli_runtimes.add_colab(
            path, name, accelerator=accelerator, options=options, description=description,
            make_default=default, replace=replace)))
        typer.echo(f"added {name} to {path}: {life}. Release it with: smartcolab runtimes "
                   f"release {name}")
        return
    secret = run_sync(lambda: cli_runtimes.secret_from(ask=ask_secret, file=secret_file))
    run_sync(lambda: cli_runtimes.add_runtime(
        path, name, url or "", secret=secret, secret_env=secret_env, description=description,
        make_default=default, replace=replace, kind=kind))
    from smartcolab.cli.client_config import smartcolab_command

    where = path.expanduser().resolve()
    # An MCP client starts the bridge without this shell's $SMARTCOLAB_RUNTIMES: name any
    # file but the default one.
    default_file = (Path.home() / ".smartcolab" / "runtimes.toml").resolve()
    extra = "" if where == default_file else f" --runtimes-file {where}"
    typer.echo(f"added {name} to {where}. Use it here with --runtime {name}; for an MCP client, "
               f"{smartcolab_command()} config claude-desktop --runtime {name}{extra} prints "
               "the entry to paste.")


@runtimes_app.command("release")
def runtimes_release(name: Annotated[str, typer.Argument(help="The runtime's name.")],
                     file: FileOpt = None) -> None:
    """Give a Colab runtime back to Colab now (its variables and files are lost).

    Example: smartcolab runtimes release gpu
    """
    path = file or runtimes_path()
    released = run_sync(lambda: anyio.run(cli_runtimes.release, path, name))
    typer.echo(f"released {name}" if released else f"{name} held no Colab runtime")


@runtimes_app.command("remove")
def runtimes_remove(name: Annotated[str, typer.Argument(help="The runtime's name.")],
                    file: FileOpt = None) -> None:
    """Remove a named runtime from the runtimes file.

    Example: smartcolab runtimes remove kaggle
    """
    path = file or runtimes_path()
    run_sync(lambda: cli_runtimes.remove_runtime(path, name))
    typer.echo(f"removed {name} from {path}")


def doctor(runtime: RuntimeOpt = None, url: UrlOpt = None, token: TokenOpt = None,
           as_json: JsonOpt = False) -> None:
    """Check a runtime: reachable, not a tunnel's page, clock skew, secret, version, kernel.

    Example: smartcolab doctor --url https://abc.ngrok-free.app --token-file ~/.colab-secret
    """
    target = _target(runtime, url, token, as_json)
    ok = run(lambda: cli_doctor.doctor(target, as_json=as_json))
    raise typer.Exit(0 if ok else EXIT_JOB_FAILED)


def demo(
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Where the plot and downloads go. Default: ~/.smartcolab/demo")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Walk through the main MCP tools on this machine: the real bridge, the official client.

    Example: smartcolab demo --out /tmp/demo
    """
    from smartcolab.cli.commands import demo as demo_mod

    target = demo_mod.prepare_out_dir(out_dir or demo_mod.default_out_dir())
    ok = run(lambda: demo_mod.run_demo(target, as_json=as_json))
    raise typer.Exit(0 if ok else EXIT_JOB_FAILED)


def bundle(
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Directory for the wheel. Default: ~/.smartcolab/bundle")] = None,
) -> None:
    """Write the wheel a Colab or Kaggle notebook installs (the package is not on PyPI).

    Made from this install's files and metadata, offline. The path and what to do with
    it are printed; the path alone goes to stdout.

    Example: smartcolab bundle --out ~/Downloads
    """
    from smartcolab.cli.commands import bundle as bundle_mod

    try:
        made = bundle_mod.build_wheel(out_dir or bundle_mod.default_out_dir())
    except (RuntimeError, OSError) as exc:
        fail(str(exc), EXIT_USAGE)
    typer.echo(bundle_mod.instructions(made), err=True)
    typer.echo(str(made.path))


def register(app: typer.Typer) -> None:
    """Add the user commands to the ``smartcolab`` app."""
    app.command("exec")(exec_)
    app.add_typer(jobs_app, name="jobs")
    app.command("vars")(vars_)
    app.command("cleanup")(cleanup)
    app.command("probe")(probe)
    app.command("ls")(ls)
    app.command("get")(get)
    app.command("put")(put)
    app.add_typer(runtimes_app, name="runtimes")
    app.command("doctor")(doctor)
    app.command("demo")(demo)
    app.command("bundle")(bundle)
