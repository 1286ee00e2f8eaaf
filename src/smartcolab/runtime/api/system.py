"""System endpoints: probe and shutdown."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from smartcolab.runtime.host import probe as probe_mod
from smartcolab.runtime.state import RuntimeState
from smartcolab.shared import routes
from smartcolab.shared.protocol import Probe

router = APIRouter(tags=["system"])


def _state(request: Request) -> RuntimeState:
    state: RuntimeState = request.app.state.sc
    return state


@router.get(routes.PROBE, response_model=Probe)
async def get_probe(request: Request) -> Probe:
    """CPU, RAM, disk, GPUs, packages, platform and uptime of this runtime."""
    state = _state(request)
    found = await asyncio.to_thread(
        probe_mod.probe, working_root=state.config.working_root,
        server_started_at=state.started_at, epoch=state.epoch(),
    )
    return state.redactor.redact_model(found)


@router.post(routes.SHUTDOWN, status_code=202)
async def shutdown(request: Request) -> dict[str, str]:
    """Stop queued and running jobs, shut the kernels down, then stop the server."""
    state = _state(request)
    state.shutdown_requested.set()
    return {"status": "shutting_down"}
