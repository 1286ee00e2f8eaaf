"""Persistence endpoints: save a session's variables, restore them, list snapshots."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Request

from smartcolab.runtime.engine import persist
from smartcolab.runtime.state import RuntimeState
from smartcolab.shared import routes
from smartcolab.shared.protocol import (
    NAME_PATTERN,
    PersistManifest,
    RestoreReport,
    RestoreRequest,
    SaveRequest,
    SnapshotList,
)

router = APIRouter(tags=["persistence"])
SessionName = Annotated[str, Path(pattern=NAME_PATTERN, description="a session's name")]


def _state(request: Request) -> RuntimeState:
    state: RuntimeState = request.app.state.sc
    return state


@router.post(routes.SESSION_SAVE, response_model=PersistManifest)
async def save_variables(request: Request, name: SessionName, body: SaveRequest) -> PersistManifest:
    """Pickle the session's variables to the persist directory (409 while a job runs).

    Unpicklable objects are listed under ``failed``; the others are saved.
    """
    state = _state(request)
    session = state.manager.session(name)
    return await persist.save(session, state.config.persist_root, body)


@router.post(routes.SESSION_RESTORE, response_model=RestoreReport)
async def restore_variables(request: Request, name: SessionName, body: RestoreRequest) -> RestoreReport:
    """Load a saved snapshot's variables into the session (409 while a job runs)."""
    state = _state(request)
    session = state.manager.session(name)
    return await persist.restore(session, state.config.persist_root, body)


@router.get(routes.SNAPSHOTS, response_model=SnapshotList)
async def list_snapshots(request: Request) -> SnapshotList:
    """Saved snapshots in the persist directory, newest first, with their manifests."""
    return await asyncio.to_thread(persist.list_snapshots, _state(request).config.persist_root)
