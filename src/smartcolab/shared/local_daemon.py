"""What the local runtime daemon and its clients agree on: file names, headers, defaults.

The daemon (``runtime/daemon.py``) writes its runtime file; bridges and CLI commands
(``client/local/``) read it, start a daemon when there is none, and stop it.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

RUNTIME_FILE = "runtime.json"
# The daemon's Unix socket beside its TCP port: its clients on this machine use it (no
# TCP stack per message; only this user can reach it). Where the platform has none,
# TCP only.
SOCKET_FILE = "runtime.sock"
# A socket address holds about 104-108 bytes of path, depending on the platform.
MAX_SOCKET_PATH = 100
LOCK_FILE = "daemon.lock"
LOG_FILE = "daemon.log"
STATE_SUBDIR = "state"
DEFAULT_IDLE_TIMEOUT_S = 30 * 60.0
# A request with this header neither counts as activity nor resets the idle clock;
# its response says how long the daemon has been idle (``smartcolab local status``).
H_QUIET = "x-smartcolab-quiet"
H_IDLE = "x-smartcolab-idle-s"


def socket_path(directory: Path) -> Path | None:
    """Where the daemon of ``directory`` listens on a Unix socket: in that directory when
    the path fits a socket address, else in a per-user folder of ``$XDG_RUNTIME_DIR`` or
    the temporary directory, named after the directory; None on Windows or when even
    that is too long.  The daemon binds it and the clients check the runtime file names
    this very path."""
    if sys.platform == "win32":
        return None
    inside = directory / SOCKET_FILE
    if len(os.fsencode(inside)) < MAX_SOCKET_PATH:
        return inside
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    digest = hashlib.sha256(os.fsencode(directory.absolute())).hexdigest()[:16]
    path = base / f"smartcolab-{os.getuid()}" / f"{digest}.sock"
    return path if len(os.fsencode(path)) < MAX_SOCKET_PATH else None
