"""The runtime app in process: no socket, no subprocess, a clock the test moves.

``create_app`` builds the same app that ``smartcolab serve`` hands to uvicorn; here
httpx2's ``ASGITransport`` calls it directly and its lifespan runs in the test's event
loop.  Kernels start only if the test asks (``start_main_session=True``): most routes
(health, auth, limits, files, sessions listing, errors) need none.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx2
from fastapi import FastAPI

from smartcolab.client.http.client import NO_RETRY, RetryPolicy, RuntimeClient
from smartcolab.runtime.api.app import create_app
from smartcolab.runtime.config import RuntimeConfig
from smartcolab.runtime.security.gate import AuthGate
from smartcolab.runtime.security.limits import LimitsMiddleware
from smartcolab.runtime.state import RuntimeState

BASE_HOST = "runtime.test"
BASE_URL = f"http://{BASE_HOST}"
# Peers outside the default trusted proxies: each client gets its own address, so
# rate-limit buckets and lockouts of one test never touch another's.
_PEERS = (f"198.18.{i // 250}.{i % 250 + 1}" for i in itertools.count())


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class InProcRuntime:
    """One runtime app, started, with ways to talk to it."""

    app: FastAPI
    config: RuntimeConfig
    clock: FakeClock

    @property
    def state(self) -> RuntimeState:
        state: RuntimeState = self.app.state.sc
        return state

    @property
    def secret(self) -> str:
        return self.config.secret

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}

    def transport(self, peer: str | None = None) -> httpx2.ASGITransport:
        return httpx2.ASGITransport(app=self.app, client=(peer or next(_PEERS), 40000))

    def http(self, peer: str | None = None, **kwargs: Any) -> httpx2.AsyncClient:
        """A plain client (no auth unless ``headers`` say so), as curl would be."""
        return httpx2.AsyncClient(transport=self.transport(peer), base_url=BASE_URL, **kwargs)

    def client(self, secret: str | None = None, *, peer: str | None = None,
               retry: RetryPolicy = NO_RETRY) -> RuntimeClient:
        """Our signing client, exactly as the bridge uses it, over the in-process app."""
        return RuntimeClient(BASE_URL, self.secret if secret is None else secret,
                             retry=retry, transport=self.transport(peer))


def config_for(root: Path, **overrides: Any) -> RuntimeConfig:
    """A config confined to ``root`` with no kernel started unless asked."""
    root.mkdir(parents=True, exist_ok=True)
    # The test clients call it by a name of their own: allowed the way a user allows one.
    base = RuntimeConfig(secret=secrets.token_urlsafe(24), roots=[root],
                         state_dir=root / ".smartcolab", start_main_session=False,
                         allowed_hosts=[BASE_HOST])
    return replace(base, **overrides)


def _use_clock(app: FastAPI, clock: FakeClock) -> None:
    """Hand the limits and the authentication gate our clock before the stack is built."""
    wanted = {LimitsMiddleware, AuthGate}
    for entry in app.user_middleware:
        if entry.cls in wanted:
            entry.kwargs["clock"] = clock
            wanted.discard(entry.cls)  # type: ignore[arg-type]
    assert not wanted, f"create_app no longer installs {wanted}"


@asynccontextmanager
async def inproc_runtime(root: Path, **overrides: Any) -> AsyncIterator[InProcRuntime]:
    """Build the app for a config under ``root``, run its lifespan, yield it."""
    config = config_for(root, **overrides)
    app = create_app(config)
    clock = FakeClock()
    _use_clock(app, clock)
    async with app.router.lifespan_context(app):
        yield InProcRuntime(app=app, config=config, clock=clock)
