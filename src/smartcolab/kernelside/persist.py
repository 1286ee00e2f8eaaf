"""Save the user's variables to a snapshot folder and load them back, inside the kernel.

Prefers cloudpickle, then dill (both save functions and classes defined in the notebook
by value), then the standard pickle.  A save writes ``.<snapshot>.tmp-*`` (files
fsynced, manifest last) and swaps it in with renames: a snapshot is the old one or the
new one, never half of each.  A variable that cannot be pickled is listed under
``failed`` with the reason; the others are saved.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pickle
import secrets
import shutil
import sys
import time
import types
from typing import Any

from .namespace import shell, type_name, user_names

MANIFEST = "manifest.json"
ERROR_CHARS = 500


def fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def pickler() -> tuple[Any, str, bool]:
    """(module, label, saves by value): cloudpickle, dill, else the standard pickle."""
    for name in ("cloudpickle", "dill"):
        try:
            mod = importlib.import_module(name)
            return mod, f"{name} {getattr(mod, '__version__', '')}".strip(), True
        except Exception:
            pass
    return pickle, f"pickle protocol {pickle.HIGHEST_PROTOCOL}", False


def _chosen(ns: dict[str, Any], hidden: dict[str, Any], names: list[str],
            failed: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    if not names:
        return sorted(user_names(ns, hidden, False))
    items = []
    for name in names:
        if name in ns:
            items.append((name, ns[name]))
        else:
            failed.append({"name": name, "error": "no such variable in this session"})
    return items


def _dump(mod: Any, value: Any, path: str) -> None:
    with open(path, "wb") as fh:
        mod.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
        fh.flush()
        os.fsync(fh.fileno())


def _write_files(ns: dict[str, Any], hidden: dict[str, Any], names: list[str], tmp: str,
                 mod: Any, by_value: bool) -> dict[str, list[dict[str, Any]]]:
    saved: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for name, value in _chosen(ns, hidden, names, failed):
        defined_here = getattr(value, "__module__", None) == "__main__" and (
            isinstance(value, (type, types.FunctionType)))
        if not names and not by_value and defined_here:
            skipped.append({"name": name, "type": type_name(value), "error":
                "defined in the notebook: the standard pickle keeps only its name; "
                "pip install cloudpickle in the runtime to save it by value"})
            continue
        path = os.path.join(tmp, name + ".pkl")
        try:
            _dump(mod, value, path)
            saved.append({"name": name, "type": type_name(value),
                          "size_bytes": os.path.getsize(path), "file": name + ".pkl"})
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            with contextlib.suppress(OSError):
                os.remove(path)
            failed.append({"name": name, "type": type_name(value),
                           "error": f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]})
    return {"variables": saved, "failed": failed, "skipped": skipped}


def _swap_in(dest: str, snapshot: str, tmp: str) -> None:
    final = os.path.join(dest, snapshot)
    old = None
    if os.path.exists(final):
        old = os.path.join(dest, f".{snapshot}.old-{secrets.token_hex(4)}")
        os.rename(final, old)
    os.rename(tmp, final)
    fsync_dir(dest)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def save_namespace(ns: dict[str, Any], hidden: dict[str, Any], *, directory: str,
                   snapshot: str, names: list[str], session: str, epoch: str) -> dict[str, Any]:
    """Pickle the user variables of ``ns`` (or ``names``) into ``directory/snapshot``."""
    mod, label, by_value = pickler()
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{snapshot}.tmp-{secrets.token_hex(4)}")
    os.makedirs(tmp)
    try:
        files = _write_files(ns, hidden, names, tmp, mod, by_value)
        manifest = {
            "format": 1, "snapshot": snapshot, "session": session, "epoch": epoch,
            "saved_at": time.time(), "pickler": label, "python": sys.version.split()[0],
            "directory": os.path.join(directory, snapshot), **files,
            "total_bytes": sum(v["size_bytes"] for v in files["variables"])}
        with open(os.path.join(tmp, MANIFEST), "w") as fh:
            json.dump(manifest, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        fsync_dir(tmp)
        _swap_in(directory, snapshot, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def restore_namespace(ns: dict[str, Any], *, directory: str, snapshot: str,
                      names: list[str]) -> dict[str, Any]:
    """Load a snapshot's variables (all, or ``names``) into ``ns``."""
    src = os.path.join(directory, snapshot)
    with open(os.path.join(src, MANIFEST)) as fh:
        manifest = json.load(fh)
    wanted = set(names)
    pickler_name = manifest["pickler"].split()[0]
    restored: list[str] = []
    failed: list[dict[str, Any]] = []
    for var in manifest["variables"]:
        if wanted and var["name"] not in wanted:
            continue
        try:
            mod = importlib.import_module(pickler_name)
            with open(os.path.join(src, var["file"]), "rb") as fh:
                ns[var["name"]] = mod.load(fh)
            restored.append(var["name"])
        except ModuleNotFoundError as exc:
            failed.append({"name": var["name"], "type": var["type"], "error":
                f"{exc}: it was saved with {manifest['pickler']}; pip install {exc.name} here"})
        except Exception as exc:
            failed.append({"name": var["name"], "type": var["type"],
                           "error": f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]})
    for name in sorted(wanted - {v["name"] for v in manifest["variables"]}):
        failed.append({"name": name, "error": "not in this snapshot"})
    return {"restored": restored, "failed": failed, "saved_at": manifest["saved_at"],
            "saved_epoch": manifest["epoch"]}


def save(directory: str, snapshot: str, names: list[str], session: str,
         epoch: str) -> dict[str, Any]:
    """Entry point in a kernel: save the user's variables."""
    ip = shell()
    return save_namespace(ip.user_ns, ip.user_ns_hidden, directory=directory,
                          snapshot=snapshot, names=names, session=session, epoch=epoch)


def restore(directory: str, snapshot: str, names: list[str]) -> dict[str, Any]:
    """Entry point in a kernel: load a snapshot into the user's namespace."""
    return restore_namespace(shell().user_ns, directory=directory, snapshot=snapshot,
                             names=names)
