"""What one running runtime server holds: config, authenticator, sessions, store."""

from __future__ import annotations

import asyncio
import time
import uuid

from .audit import AuditLog
from .config import RuntimeConfig
from .redact import Redactor
from .security import Authenticator


class RuntimeState:
    """Created by ``create_app``; started and stopped by the app's lifespan."""

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config
        self.auth = Authenticator(config.secret, enabled=config.auth)
        self.redactor = Redactor(config.secret)
        self.audit = AuditLog(config.state_dir, max_bytes=config.audit_max_bytes,
                              backups=config.audit_backups, redactor=self.redactor)
        self.started_at = time.time()
        # A new boot id on every start: a server restart always changes the epoch.
        self.boot_id = uuid.uuid4().hex[:12]
        self.shutdown_requested = asyncio.Event()

    async def start(self) -> None:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)

    async def stop(self) -> None:
        self.audit.close()

    def rotate_secret(self, new_secret: str) -> None:
        """Switch to a new secret; kernels keep running, old outputs stay redacted."""
        self.redactor.add(new_secret)
        self.auth.rotate(new_secret)
        self.config.secret = new_secret

    def epoch(self) -> str:
        """The runtime epoch: changes whenever any kernel's state is lost."""
        return f"{self.boot_id}.0"
