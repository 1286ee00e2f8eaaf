"""Save a session's variables to a persistent directory and restore them into a fresh kernel.

The pickling runs inside the kernel (that is where the objects are), through the same
``introspect`` path as variables and cleanup: ``kernelside/persist.py``, sent by source,
prints one JSON line.  It prefers cloudpickle, then dill (both save functions and
classes defined in the notebook by value), then the standard pickle.

Layout: ``PERSIST_ROOT/<snapshot>/manifest.json`` plus one ``<name>.pkl`` per variable.
A save writes a new folder ``.<snapshot>.tmp-*`` (files fsynced, manifest last) and
then swaps it in with renames, so a snapshot is either the old one or the new one,
never half of each.  A variable that cannot be pickled (a generator, a lock, an open
socket) is listed under ``failed`` with the reason; the others are saved.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smartcolab.shared.errors import InvalidInput, NotFound
from smartcolab.shared.kernel_code import call, parse
from smartcolab.shared.protocol import (
    PersistManifest,
    RestoreReport,
    RestoreRequest,
    SaveRequest,
    SnapshotList,
)

if TYPE_CHECKING:
    from smartcolab.runtime.engine.jobs import Job
    from smartcolab.runtime.engine.sessions import KernelSession

log = logging.getLogger("smartcolab.runtime")
PERSIST_TIMEOUT_S = 300.0
MANIFEST = "manifest.json"
AUTOSAVE_PREFIX = "autosave-"

def _check_names(names: list[str]) -> None:
    bad = [n for n in names if not n.isidentifier()]
    if bad:
        raise InvalidInput(f"not Python variable names: {', '.join(map(repr, bad[:10]))}",
                           details={"names": bad[:50]})


def read_manifest(root: Path, snapshot: str) -> PersistManifest:
    path = root / snapshot / MANIFEST
    try:
        return PersistManifest.model_validate_json(path.read_text())
    except FileNotFoundError:
        known = ", ".join(m.snapshot for m in list_snapshots(root).snapshots) or "none"
        raise NotFound(f"no saved snapshot {snapshot!r} in {root} (snapshots: {known}); "
                       "save one first with POST /sessions/{name}/save",
                       details={"snapshot": snapshot}) from None


def list_snapshots(root: Path) -> SnapshotList:
    """Every readable manifest under ``root``, newest first (half-written folders skipped)."""
    found: list[PersistManifest] = []
    if root.is_dir():
        for path in root.glob(f"*/{MANIFEST}"):
            if path.parent.name.startswith("."):
                continue
            try:
                found.append(PersistManifest.model_validate_json(path.read_text()))
            except (OSError, ValueError):
                log.warning("unreadable snapshot manifest %s", path)
    found.sort(key=lambda m: m.saved_at, reverse=True)
    return SnapshotList(directory=str(root), snapshots=found)


async def save(session: KernelSession, root: Path, request: SaveRequest) -> PersistManifest:
    """Pickle the session's variables (all user variables, or ``request.names``)."""
    _check_names(request.names)
    args: dict[str, Any] = {"directory": str(root), "snapshot": request.snapshot or session.name,
                            "names": request.names, "session": session.name,
                            "epoch": session.epoch}
    out = await session.introspect(call("persist", "save", args), timeout=PERSIST_TIMEOUT_S)
    return PersistManifest.model_validate(parse(out))


async def restore(session: KernelSession, root: Path, request: RestoreRequest) -> RestoreReport:
    """Load a snapshot's variables into the session (e.g. a fresh kernel after a restart)."""
    _check_names(request.names)
    snapshot = request.snapshot or session.name
    read_manifest(root, snapshot)
    args = {"directory": str(root), "snapshot": snapshot, "names": request.names}
    out = await session.introspect(call("persist", "restore", args),
                                  timeout=PERSIST_TIMEOUT_S)
    return RestoreReport(snapshot=snapshot, session=session.name, epoch=session.epoch,
                         **parse(out))


async def maybe_autosave(session: KernelSession, job: Job) -> None:
    """After a successful job that ran at least ``autosave_after_s``, save everything.

    Never raises: a failed autosave is logged and the session goes on.
    """
    threshold = session.config.autosave_after_s
    rec = job.rec
    if threshold is None or rec.status != "succeeded":
        return
    if rec.started_at is None or rec.finished_at is None:
        return
    if rec.finished_at - rec.started_at < threshold:
        return
    try:
        manifest = await save(session, session.config.persist_root,
                              SaveRequest(snapshot=AUTOSAVE_PREFIX + session.name))
        log.info("autosaved session %s after job %s", session.name, rec.job_id,
                 extra={"saved": len(manifest.variables), "failed": len(manifest.failed),
                        "bytes": manifest.total_bytes})
    except Exception:
        log.warning("autosave of session %s after job %s failed", session.name, rec.job_id,
                    exc_info=True)
