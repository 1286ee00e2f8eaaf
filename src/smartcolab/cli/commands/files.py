"""CLI bodies for files: ``ls``, ``get REMOTE [LOCAL]``, ``put LOCAL REMOTE``.

Transfers are the runtime backend's (``client/http/transfer.py`` for ours; directories:
``transfer_dir.py``'s tar stream, extracted safely): downloads resume from ``NAME.part`` after a
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

from smartcolab.cli.common import (
    Target,
    err,
    human_bytes,
    open_runtime,
    out,
    print_json,
    runtime_label,
)
from smartcolab.client.backend import RuntimeBackend
from smartcolab.client.local_files import ProgressFn
from smartcolab.shared.errors import FileExistsOnRuntime, LocalPathRefused, NotFound


class LazyProgress:
    """A progress bar drawn only once bytes move, so a refusal ("already exists", "not
    found") is the only thing printed, with no empty bar before it."""

    def __init__(self, description: str, quiet: bool) -> None:
        self._description = description
        self._quiet = quiet
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def update(self, done: int, total: int | None) -> None:
        if self._quiet:
            return
        if self._bar is None:
            self._bar = Progress("[progress.description]{task.description}", BarColumn(),
                                 DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                                 console=err, transient=False)
            self._bar.start()
            self._task = self._bar.add_task(self._description, total=total)
        assert self._task is not None
        self._bar.update(self._task, completed=done, total=total)

    def __enter__(self) -> ProgressFn:
        return self.update

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


async def ls(target: Target, path: str, *, recursive: bool, pattern: str | None,
             as_json: bool) -> None:
    async with open_runtime(target) as (spec, client):
        entries = [e async for e in client.iter_files(path, recursive=recursive,
                                                      pattern=pattern)]
    if as_json:
        print_json([e.model_dump(mode="json") for e in entries])
        return
    table = Table(title=f"{path or '.'} on {runtime_label(spec)}")
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
    """Download a file, or a directory (as a tar stream, extracted safely)."""
    save_dir, name = local_destination(remote, local)
    if not name:
        raise LocalPathRefused(f"cannot name a local file after '{remote}'; give LOCAL")
    final = save_dir / name
    if final.exists() and not overwrite and not final.is_dir():
        # Said before any connection or progress bar.
        raise LocalPathRefused(f"{final} already exists; pass --overwrite to replace it",
                               details={"reason": "exists"})
    async with open_runtime(target) as (_spec, client):
        head = await client.stat(remote, with_hash=False)
        save_dir.mkdir(parents=True, exist_ok=True)
        if head.type == "dir":
            await _get_dir(client, remote, save_dir, name, overwrite=overwrite,
                           quiet=quiet or as_json, as_json=as_json)
            return
        with LazyProgress(f"get {name}", quiet or as_json) as progress:
            result = await client.download(remote, save_dir, name, overwrite=overwrite,
                                           progress=progress, compress=compress)
    if as_json:
        print_json({"path": str(result.path), "size": result.size, "sha256": result.sha256,
                    "resumed_from": result.resumed_from, "attempts": result.attempts})
        return
    resumed = f", resumed at {human_bytes(result.resumed_from)}" if result.resumed_from else ""
    out.print(f"{result.path}  {human_bytes(result.size)}  sha256 {result.sha256} "
              f"(verified{resumed})")


async def _get_dir(client: RuntimeBackend, remote: str, save_dir: Path, name: str, *,
                   overwrite: bool, quiet: bool, as_json: bool) -> None:
    final = save_dir / name
    if final.exists() and not overwrite:
        raise LocalPathRefused(f"{final} already exists; pass --overwrite to replace it, or "
                               "give another LOCAL name", details={"reason": "exists"})
    with LazyProgress(f"get {name}/", quiet) as progress:
        result = await client.download_dir(remote, save_dir, name, overwrite=overwrite,
                                           progress=progress)
    if as_json:
        print_json({"path": str(result.path), "type": "dir", "members": result.members,
                    "wire_bytes": result.wire_bytes, "refused": result.refused})
        return
    refused = f"; refused {len(result.refused)} unsafe entries" if result.refused else ""
    out.print(f"{result.path}/  {result.members} entries, {human_bytes(result.wire_bytes)} "
              f"on the wire{refused}")


async def refuse_remote_existing(client: RuntimeBackend, remote: str) -> None:
    """Say "already exists" before sending a byte (the runtime would refuse after the body)."""
    try:
        await client.stat(remote, with_hash=False)
    except NotFound:
        return
    raise FileExistsOnRuntime(f"'{remote[:200]}' already exists on the runtime; pass "
                              "--overwrite to replace it", details={"path": remote})


def remote_destination(local: Path, remote: str) -> str:
    """REMOTE ending in '/' (or '.') means: into that directory, under LOCAL's name."""
    if remote in ("", ".", "./"):
        return local.name
    return remote + local.name if remote.endswith("/") else remote


async def put(target: Target, local: Path, remote: str, *, overwrite: bool, quiet: bool,
              as_json: bool) -> None:
    """Upload ``local`` (already expanded) to ``remote`` (see ``remote_destination``)."""
    async with open_runtime(target) as (_spec, client):
        if not overwrite:
            await refuse_remote_existing(client, remote)
        with LazyProgress(f"put {local.name}", quiet or as_json) as progress:
            result = await client.upload(local, remote, overwrite=overwrite,
                                         progress=progress)
    if as_json:
        print_json(result)
        return
    verb = "replaced" if result.overwritten else "wrote"
    out.print(f"{verb} {result.path}  {human_bytes(result.size)}  sha256 {result.sha256} (verified)")
