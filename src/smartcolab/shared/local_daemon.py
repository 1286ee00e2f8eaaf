"""What the local runtime daemon and its clients agree on: file names, headers, defaults.

The daemon (``runtime/daemon.py``) writes its runtime file; bridges and CLI commands
(``client/local/``) read it, start a daemon when there is none, and stop it.
"""

from __future__ import annotations

RUNTIME_FILE = "runtime.json"
LOCK_FILE = "daemon.lock"
LOG_FILE = "daemon.log"
STATE_SUBDIR = "state"
DEFAULT_IDLE_TIMEOUT_S = 30 * 60.0
# A request with this header neither counts as activity nor resets the idle clock;
# its response says how long the daemon has been idle (``smartcolab local status``).
H_QUIET = "x-smartcolab-quiet"
H_IDLE = "x-smartcolab-idle-s"
