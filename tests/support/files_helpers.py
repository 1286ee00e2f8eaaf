"""Shared helpers for the file tests: a runtime with a known tree, and a hostile corpus."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from support.runtime_proc import RuntimeProc, start_runtime

MB = 1024 * 1024

# Client paths that must never reach anything outside the root ("../" is the root's
# parent, where the tests plant a secret file).
HOSTILE_PATHS = [
    "..", "../", "../secret.txt", "../../etc/passwd", "sub/../../secret.txt",
    "./../secret.txt", "sub/./../../secret.txt", "/etc/passwd", "/", "//etc/passwd",
    "/tmp", "..\\secret.txt", "sub/../..", "link_out_file", "link_out_dir",
    "link_out_dir/secret.txt", "sub/link_up/secret.txt", "....//secret.txt",
    "%2e%2e/secret.txt", "%2e%2e%2fsecret.txt", "..%2fsecret.txt", "%252e%252e/secret.txt",
    "sub/%2e%2e/%2e%2e/secret.txt", "\u2025/secret.txt", "..\u2215secret.txt",
]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_tree(base: Path) -> dict[str, bytes]:
    """A root with awkward names and symlinks pointing out; a secret just outside."""
    root = base / "root"
    root.mkdir(parents=True, exist_ok=True)
    (base / "secret.txt").write_bytes(b"TOP SECRET")
    (base / "outside_dir").mkdir(exist_ok=True)
    (base / "outside_dir" / "secret.txt").write_bytes(b"TOP SECRET")
    files = {
        "a.txt": b"hello\n",
        "sub/b.bin": os.urandom(200_000),
        "sub/deeper/c.csv": b"x,y\n" * 5000,
        "odd/a&b #1?.txt": b"awkward name\n",
        "odd/caf\u00e9 \u65e5\u672c.txt": "non-ascii \u00e9\n".encode(),
        "big.bin": os.urandom(3 * MB),
        "text.log": b"".join(b"line %d of a very compressible log file\n" % i
                             for i in range(60_000)),
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    for name, target in [("link_out_file", base / "secret.txt"),
                         ("link_out_dir", base / "outside_dir"),
                         ("sub/link_up", base),
                         ("link_in", root / "a.txt")]:
        link = root / name
        if not link.is_symlink():
            link.symlink_to(target)
    return files


def start_tree_runtime(base: Path) -> tuple[RuntimeProc, dict[str, bytes]]:
    files = make_tree(base)
    return start_runtime(base / "root"), files
