"""Configuration of a runtime server: one value object, defaults as named constants.

Only the CLI and the notebook helper read flags and environment variables; they,
and ``smartcolab.serve()``, build a ``RuntimeConfig`` with ``build_config`` and hand
it to the server.  The CLI's option defaults are the constants below.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smartcolab.runtime.host.platform import working_dir

KIB = 1024
MIB = 1024 * 1024

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_KERNEL_NAME = "python3"
STATE_SUBDIR = ".smartcolab"
DEFAULT_RESPONSE_TEXT_BYTES = 64 * 1024
DEFAULT_KILL_GRACE_S = 5.0
DEFAULT_MIN_FREE_RAM_BYTES = 512 * 1024 * 1024
DEFAULT_RAM_WARN_PCT = 85.0
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024**3
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_SESSIONS = 16
DEFAULT_MAX_QUEUED_PER_SESSION = 1000
DEFAULT_MAX_IMAGES_PER_RESULT = 8
DEFAULT_MAX_IMAGE_BYTES = 5 * 1024 * 1024
# Abuse limits (runtime/security/limits.py).  uvicorn's h11 parser is given room above the
# header and query limits so that our middleware, not the parser, answers 431/413.
DEFAULT_MAX_HEADER_BYTES = 32 * 1024
DEFAULT_MAX_HEADERS = 100
DEFAULT_MAX_QUERY_BYTES = 16 * 1024
# Forwarding headers are believed only from these networks and from the tunnel agent this
# runtime started (runtime/security/clientaddr.py); any other local process is not a proxy.
DEFAULT_TRUSTED_PROXIES: tuple[str, ...] = ()
# Connection hygiene (runtime/security/connections.py).
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 128
DEFAULT_RATE_LIMIT_PER_S = 50.0
DEFAULT_RATE_BURST = 200
DEFAULT_MAX_TRACKED_CLIENTS = 10_000
DEFAULT_LOCKOUT_FAILURES = 10
DEFAULT_LOCKOUT_WINDOW_S = 60.0
DEFAULT_LOCKOUT_S = 300.0
# Audit trail (runtime/security/audit.py): state_dir/audit.log, rotated.
DEFAULT_AUDIT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_AUDIT_BACKUPS = 5


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass
class RuntimeConfig:
    """Everything a runtime server needs to know; no field is read from the environment."""

    secret: str = field(default_factory=new_secret)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    roots: list[Path] = field(default_factory=lambda: [Path.cwd()])
    state_dir: Path = field(default_factory=lambda: Path.cwd() / STATE_SUBDIR)
    kernel_name: str = DEFAULT_KERNEL_NAME
    response_text_bytes: int = DEFAULT_RESPONSE_TEXT_BYTES
    kill_grace_s: float = DEFAULT_KILL_GRACE_S
    min_free_ram_bytes: int = DEFAULT_MIN_FREE_RAM_BYTES
    ram_warn_pct: float = DEFAULT_RAM_WARN_PCT
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_sessions: int = DEFAULT_MAX_SESSIONS
    max_queued_per_session: int = DEFAULT_MAX_QUEUED_PER_SESSION
    max_images_per_result: int = DEFAULT_MAX_IMAGES_PER_RESULT
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    start_main_session: bool = True
    # Where saved variables go (Drive on Colab, /kaggle/working on Kaggle); None: state_dir/persist.
    persist_dir: Path | None = None
    # Save the session's variables after each successful job that ran at least this long.
    autosave_after_s: float | None = None
    # Abuse limits; see runtime/security/limits.py.  An empty allow_cidrs admits every address.
    allow_cidrs: list[str] = field(default_factory=list)
    trusted_proxies: list[str] = field(default_factory=lambda: list(DEFAULT_TRUSTED_PROXIES))
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_headers: int = DEFAULT_MAX_HEADERS
    max_query_bytes: int = DEFAULT_MAX_QUERY_BYTES
    rate_limit_per_s: float = DEFAULT_RATE_LIMIT_PER_S  # 0 disables rate limiting
    rate_burst: int = DEFAULT_RATE_BURST
    max_tracked_clients: int = DEFAULT_MAX_TRACKED_CLIENTS
    lockout_failures: int = DEFAULT_LOCKOUT_FAILURES  # 0 disables the lockout
    lockout_window_s: float = DEFAULT_LOCKOUT_WINDOW_S
    lockout_s: float = DEFAULT_LOCKOUT_S
    # Host/Origin allowlist additions (runtime/security/hosts.py); loopback names, the bind
    # address and the tunnel's hostname are always allowed.
    allowed_hosts: list[str] = field(default_factory=list)
    allowed_origins: list[str] = field(default_factory=list)
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    max_connections_per_client: int = DEFAULT_MAX_CONNECTIONS_PER_CLIENT  # 0: no cap
    # Guarded mode: job code is checked by runtime/security/guard.py before it runs.
    guarded: bool = False
    audit_max_bytes: int = DEFAULT_AUDIT_MAX_BYTES
    audit_backups: int = DEFAULT_AUDIT_BACKUPS

    @property
    def working_root(self) -> Path:
        return self.roots[0]

    @property
    def persist_root(self) -> Path:
        return self.persist_dir or self.state_dir / "persist"


PathLike = str | os.PathLike[str]


def build_config(*, roots: Sequence[PathLike] | None = None, state_dir: PathLike | None = None,
                 persist_dir: PathLike | None = None, secret: str | None = None,
                 trusted_proxies: Sequence[str] | None = None, **fields: Any) -> RuntimeConfig:
    """The one way a ``RuntimeConfig`` is made from what a person gave.

    Used by ``smartcolab serve``, ``smartcolab.serve()`` and the notebook helper, so
    the three agree: paths are expanded and made absolute; no ``roots`` means the
    platform's working directory (``/content`` on Colab, ``/kaggle/working`` on
    Kaggle, else the current one); ``state_dir`` defaults to ``ROOT/.smartcolab``; an
    empty ``secret`` or ``trusted_proxies`` keeps the default (a new random secret,
    no proxy but the runtime's own tunnel agent).  ``fields`` are further ``RuntimeConfig`` fields, as they are.
    """
    root_list = [_absolute(r) for r in roots] if roots else [working_dir()]
    config = RuntimeConfig(
        roots=root_list,
        state_dir=_absolute(state_dir) if state_dir else root_list[0] / STATE_SUBDIR,
        persist_dir=_absolute(persist_dir) if persist_dir else None, **fields)
    if secret:
        config.secret = secret
    if trusted_proxies:
        config.trusted_proxies = list(trusted_proxies)
    return config


def _absolute(path: PathLike) -> Path:
    return Path(path).expanduser().resolve()
