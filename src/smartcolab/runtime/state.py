"""What one running runtime server holds: config, authenticator, sessions, store."""

from __future__ import annotations

import asyncio
import time
import uuid

from .config import RuntimeConfig
from .security import Authenticator


class RuntimeState:
    """Created by ``create_app``; started and stopped by the app's lifespan."""

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config
        self.auth = Authenticator(config.secret, enabled=config.auth)
        self.started_at = time.time()
        # A new boot id on every start: a server restart always changes the epoch.
        self.boot_id = uuid.uuid4().hex[:12]
        self.shutdown_requested = asyncio.Event()

    async def start(self) -> None:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)

    async def stop(self) -> None:
        pass

    def epoch(self) -> str:
        """The runtime epoch: changes whenever any kernel's state is lost."""
        return f"{self.boot_id}.0"
