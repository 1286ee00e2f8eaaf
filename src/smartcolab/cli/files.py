"""CLI bodies for files: ``ls``, ``get REMOTE [LOCAL]``, ``put LOCAL REMOTE``.

Transfers are the runtime backend's (``client/http/transfer.py`` for ours): downloads resume from ``NAME.part`` after a
dropped connection (run ``get`` again and it continues), are sha256-verified against
the runtime and appear under their name only when complete.  Progress bars go to
stderr, so ``--json`` output on stdout stays clean.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from smartcolab.cli.common import Target, err, human_bytes, open_runtime, out, print_json
from smartcolab.client.local_files import ProgressFn
from smartcolab.shared.errors import LocalPathRefused


def _progress(quiet: bool) -> Progress:
    return Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=err,
                    disable=quiet, transient=False)


def _callback(bar: Progress, task: TaskID) -> ProgressFn:
    def update(done: int, total: int | None) -> None:
        bar.update(task, completed=done, total=total)
    return update


async def ls(target: Target, path: str, *, recursive: bool, pattern: str | None,
             as_json: bool) -> None:
    async with open_runtime(target) as (spec, client):
        entries = [e async for e in client.iter_files(path, recursive=recursive,
                                                      pattern=pattern)]
    if as_json:
        print_json([e.model_dump(mode="json") for e in entries])
        return
    table = Table(title=f"{path or '.'} on {spec.name}")
    for col in ("type", "size", "modified", "path"):
        table.add_column(col, justify="right" if col == "size" else "left")
    for e in entries:
        when = datetime.fromtimestamp(e.mtime).strftime("%Y-%m-%d %H:%M")
        name = e.path + ("/" if e.type == "dir" else "")
        table.add_row(e.type, "-" if e.type == "dir" else human_bytes(e.size), when, name)
    out.print(table if entries else f"{path or '.'} is empty")


def local_destination(remote: str, local: Path | None) -> tuple[Path, str]:
    """(save directory, file name) for a download: LOCAL may be a directory or a file path."""
    remote_name = Path(remote.replace("\\", "/")).name
    if local is None:
        return Path.cwd(), remote_name
    local = local.expanduser()
    if local.is_dir() or str(local).endswith(("/", "\\")):
        return local, remote_name
    return local.parent if str(local.parent) else Path.cwd(), local.name


async def get(target: Target, remote: str, local: Path | None, *, overwrite: bool,
              compress: bool, quiet: bool, as_json: bool) -> None:
    save_dir, name = local_destination(remote, local)
    if not name:
        raise LocalPathRefused(f"cannot name a local file after '{remote}'; give LOCAL")
    save_dir.mkdir(parents=True, exist_ok=True)
    async with open_runtime(target) as (_spec, client):
        with _progress(quiet or as_json) as bar:
            task = bar.add_task(f"get {name}", total=None)
            result = await client.download(remote, save_dir, name, overwrite=overwrite,
                                           progress=_callback(bar, task), compress=compress)
    if as_json:
        print_json({"path": str(result.path), "size": result.size, "sha256": result.sha256,
                    "resumed_from": result.resumed_from, "attempts": result.attempts})
        return
    resumed = f", resumed at {human_bytes(result.resumed_from)}" if result.resumed_from else ""
    out.print(f"{result.path}  {human_bytes(result.size)}  sha256 {result.sha256} "
              f"(verified{resumed})")


def remote_destination(local: Path, remote: str) -> str:
    """REMOTE ending in '/' (or '.') means: into that directory, under LOCAL's name."""
    if remote in ("", ".", "./"):
        return local.name
    return remote + local.name if remote.endswith("/") else remote


async def put(target: Target, local: Path, remote: str, *, overwrite: bool, quiet: bool,
              as_json: bool) -> None:
    """Upload ``local`` (already expanded) to ``remote`` (see ``remote_destination``)."""
    async with open_runtime(target) as (_spec, client):
        with _progress(quiet or as_json) as bar:
            task = bar.add_task(f"put {local.name}", total=None)
            result = await client.upload(local, remote, overwrite=overwrite,
                                         progress=_callback(bar, task))
    if as_json:
        print_json(result)
        return
    verb = "replaced" if result.overwritten else "wrote"
    out.print(f"{verb} {result.path}  {human_bytes(result.size)}  sha256 {result.sha256} (verified)")
