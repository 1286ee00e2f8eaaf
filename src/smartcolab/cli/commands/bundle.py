"""``smartcolab bundle``: the wheel a notebook installs, made from this install.

smart-colab-mcp is not on PyPI, so a Colab or Kaggle notebook cannot ``pip install``
it by name.  This writes ``smart_colab_mcp-VERSION-py3-none-any.whl`` from the package
files this command runs from (a checkout, an editable install, a uvx environment) and
this install's own metadata (its dependencies, its ``smartcolab`` script), with no
build tool and no network: upload the file next to the notebook and its first cell
installs it.  Entries are written in a fixed order with a fixed timestamp, so the
same files give the same wheel.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import smartcolab

DIST_NAME = "smart-colab-mcp"
WHEEL_STEM = "smart_colab_mcp"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest time: a reproducible wheel
_WHEEL = "Wheel-Version: 1.0\nGenerator: smartcolab bundle\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


@dataclass(frozen=True)
class Bundle:
    path: Path
    version: str
    files: int
    size: int


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def package_files(root: Path | None = None) -> list[tuple[str, Path]]:
    """(archive name, file) for every file of the package, caches left out, sorted."""
    root = root or Path(smartcolab.__file__).resolve().parent
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")) or name.startswith("."):
                continue
            path = Path(dirpath) / name
            found.append(((Path("smartcolab") / path.relative_to(root)).as_posix(), path))
    return found


def _metadata_texts() -> tuple[str, str, str]:
    """(version, METADATA, entry_points.txt) of this install."""
    try:
        dist = metadata.distribution(DIST_NAME)
    except metadata.PackageNotFoundError:
        raise RuntimeError(f"{DIST_NAME} is not installed here (its metadata lists the "
                           "dependencies a wheel needs): run pip install -e . in the checkout "
                           "first") from None
    text = dist.read_text("METADATA") or ""
    if not text:
        raise RuntimeError(f"the install of {DIST_NAME} has no METADATA; reinstall it")
    return dist.version, text, dist.read_text("entry_points.txt") or ""


def build_wheel(out_dir: Path) -> Bundle:
    """Write the wheel into ``out_dir`` (created) atomically; return where and what."""
    version, meta, entry_points = _metadata_texts()
    info = f"{WHEEL_STEM}-{version}.dist-info"
    entries: list[tuple[str, bytes]] = [(name, path.read_bytes()) for name, path in package_files()]
    entries += [(f"{info}/METADATA", meta.encode()), (f"{info}/WHEEL", _WHEEL.encode())]
    if entry_points:
        entries.append((f"{info}/entry_points.txt", entry_points.encode()))
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in entries)
    entries.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode()))
    out_dir = out_dir.expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{WHEEL_STEM}-{version}-py3-none-any.whl"
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".bundle-", suffix=".whl")
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in entries:
                item = zipfile.ZipInfo(name, date_time=_EPOCH)
                item.external_attr = 0o644 << 16
                item.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(item, data)
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Bundle(final, version, len(entries), final.stat().st_size)


def default_out_dir() -> Path:
    return Path.home() / ".smartcolab" / "bundle"


def instructions(bundle: Bundle) -> str:
    """What to do with the wheel, in the notebook's words (colab/smart_colab_executor.ipynb)."""
    return "\n".join([
        f"wrote {bundle.path} ({bundle.size:,} bytes, smart-colab-mcp {bundle.version})",
        "Colab: drag it into the Files panel (left bar, folder icon) so it lands in /content,",
        "  then Runtime > Run all in colab/smart_colab_executor.ipynb: its first cell installs it.",
        "Kaggle: Add Input > Upload > New Dataset with this file, then Run All.",
        "(Or skip the file: set SOURCE in the notebook's first cell to a pip source",
        " such as git+https://github.com/YOU/smart-colab-mcp.git.)",
    ])
