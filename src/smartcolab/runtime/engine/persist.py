"""Save a session's variables to a persistent directory and restore them into a fresh kernel.

The pickling runs inside the kernel (that is where the objects are), through the same
``introspect`` path as variables and cleanup: a snippet in a fresh namespace that
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
from smartcolab.shared.kernel_snippets import _COMMON, parse, wrap
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

_KERNEL_HELPERS = _COMMON + r'''
import os as _os, pickle as _pickle
def _type_name(v):
    t = type(v)
    mod = getattr(t, "__module__", "builtins")
    return t.__qualname__ if mod == "builtins" else f"{mod}.{t.__qualname__}"

def _fsync_dir(path):
    try:
        fd = _os.open(path, _os.O_RDONLY)
        try:
            _os.fsync(fd)
        finally:
            _os.close(fd)
    except OSError:
        pass
'''

SAVE_SRC = _KERNEL_HELPERS + r'''
import shutil as _shutil, secrets as _secrets, time as _time
def _pickler():
    for name in ("cloudpickle", "dill"):
        try:
            mod = __import__(name)
            return mod, f"{name} {getattr(mod, '__version__', '')}".strip(), True
        except Exception:
            pass
    return _pickle, f"pickle protocol {_pickle.HIGHEST_PROTOCOL}", False

_mod, _label, _by_value = _pickler()
_dest, _snap, _names = _args["directory"], _args["snapshot"], _args["names"]
_final = _os.path.join(_dest, _snap)
_os.makedirs(_dest, exist_ok=True)
_tmp = _os.path.join(_dest, f".{_snap}.tmp-{_secrets.token_hex(4)}")
_os.makedirs(_tmp)
_saved, _failed, _skipped = [], [], []
try:
    if _names:
        _items = []
        for _n in _names:
            if _n in _ns:
                _items.append((_n, _ns[_n]))
            else:
                _failed.append({"name": _n, "error": "no such variable in this session"})
    else:
        _items = sorted(_user_names(False))
    for _n, _v in _items:
        _defined_here = getattr(_v, "__module__", None) == "__main__" and (
            isinstance(_v, type) or isinstance(_v, _types.FunctionType))
        if not _names and not _by_value and _defined_here:
            _skipped.append({"name": _n, "type": _type_name(_v), "error":
                "defined in the notebook: the standard pickle keeps only its name; "
                "pip install cloudpickle in the runtime to save it by value"})
            continue
        _path = _os.path.join(_tmp, _n + ".pkl")
        try:
            with open(_path, "wb") as _fh:
                _mod.dump(_v, _fh, protocol=_pickle.HIGHEST_PROTOCOL)
                _fh.flush()
                _os.fsync(_fh.fileno())
            _saved.append({"name": _n, "type": _type_name(_v),
                           "size_bytes": _os.path.getsize(_path), "file": _n + ".pkl"})
        except BaseException as _e:
            if isinstance(_e, KeyboardInterrupt):
                raise
            try:
                _os.remove(_path)
            except OSError:
                pass
            _failed.append({"name": _n, "type": _type_name(_v),
                            "error": f"{type(_e).__name__}: {_e}"[:500]})
    _manifest = {
        "format": 1, "snapshot": _snap, "session": _args["session"], "epoch": _args["epoch"],
        "saved_at": _time.time(), "pickler": _label, "python": _sys.version.split()[0],
        "directory": _final, "variables": _saved, "failed": _failed, "skipped": _skipped,
        "total_bytes": sum(v["size_bytes"] for v in _saved)}
    with open(_os.path.join(_tmp, "manifest.json"), "w") as _fh:
        _json.dump(_manifest, _fh, indent=1)
        _fh.flush()
        _os.fsync(_fh.fileno())
    _fsync_dir(_tmp)
    _old = None
    if _os.path.exists(_final):
        _old = _os.path.join(_dest, f".{_snap}.old-{_secrets.token_hex(4)}")
        _os.rename(_final, _old)
    _os.rename(_tmp, _final)
    _fsync_dir(_dest)
    if _old:
        _shutil.rmtree(_old, ignore_errors=True)
except BaseException:
    _shutil.rmtree(_tmp, ignore_errors=True)
    raise
print(MARKER + _json.dumps(_manifest))
'''

RESTORE_SRC = _KERNEL_HELPERS + r'''
import importlib as _importlib
_src = _os.path.join(_args["directory"], _args["snapshot"])
with open(_os.path.join(_src, "manifest.json")) as _fh:
    _manifest = _json.load(_fh)
_wanted = set(_args["names"])
_pickler_name = _manifest["pickler"].split()[0]
_restored, _failed = [], []
for _v in _manifest["variables"]:
    if _wanted and _v["name"] not in _wanted:
        continue
    try:
        _mod = _importlib.import_module(_pickler_name)
        with open(_os.path.join(_src, _v["file"]), "rb") as _fh:
            _ns[_v["name"]] = _mod.load(_fh)
        _restored.append(_v["name"])
    except ModuleNotFoundError as _e:
        _failed.append({"name": _v["name"], "type": _v["type"], "error":
            f"{_e}: it was saved with {_manifest['pickler']}; pip install {_e.name} here"})
    except Exception as _e:
        _failed.append({"name": _v["name"], "type": _v["type"],
                        "error": f"{type(_e).__name__}: {_e}"[:500]})
for _n in sorted(_wanted - {v["name"] for v in _manifest["variables"]}):
    _failed.append({"name": _n, "error": "not in this snapshot"})
print(MARKER + _json.dumps({"restored": _restored, "failed": _failed,
                            "saved_at": _manifest["saved_at"], "saved_epoch": _manifest["epoch"]}))
'''


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
    out = await session.introspect(wrap(SAVE_SRC, args), timeout=PERSIST_TIMEOUT_S)
    return PersistManifest.model_validate(parse(out))


async def restore(session: KernelSession, root: Path, request: RestoreRequest) -> RestoreReport:
    """Load a snapshot's variables into the session (e.g. a fresh kernel after a restart)."""
    _check_names(request.names)
    snapshot = request.snapshot or session.name
    read_manifest(root, snapshot)
    args = {"directory": str(root), "snapshot": snapshot, "names": request.names}
    out = await session.introspect(wrap(RESTORE_SRC, args), timeout=PERSIST_TIMEOUT_S)
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
