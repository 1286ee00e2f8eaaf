"""Configuration of a runtime server: one value object, defaults as named constants.

Only the CLI and ``smartcolab.serve()`` read flags and environment variables; they
build a ``RuntimeConfig`` and hand it to ``create_app``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
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
    state_dir: Path = field(default_factory=lambda: Path.cwd() / ".smartcolab")
    kernel_name: str = "python3"
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
