"""Putting a checked upload in place: its file mode, the link into place, the directory fsync."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from smartcolab.shared.errors import FileExistsOnRuntime


def file_mode() -> int:
    """The mode a file created with 0666 gets under this process's umask (read, not set:
    setting it to read it would race with other threads creating files)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    return 0o644


def publish(tmp: Path, dest: Path, overwrite: bool) -> None:
    """Link the checked, fsynced file into place (never clobbering a file that appeared
    meanwhile unless asked to overwrite), then fsync the directory."""
    if overwrite:
        os.replace(tmp, dest)
    else:
        try:
            os.link(tmp, dest)
        except FileExistsError:
            raise FileExistsOnRuntime("the file appeared during the upload; pass "
                                      "overwrite=true to replace it") from None
        except OSError:  # filesystems without hard links (some FUSE mounts)
            if dest.exists():
                raise FileExistsOnRuntime("the file appeared during the upload") from None
            os.replace(tmp, dest)
        else:
            os.unlink(tmp)
    dir_fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
