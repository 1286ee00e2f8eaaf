"""Secret rotation: a new secret without restarting the server or its kernels."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from smartcolab.runtime.config import new_secret
from smartcolab.runtime.state import RuntimeState
from smartcolab.shared import routes
from smartcolab.shared.protocol import SecretRotated

router = APIRouter(tags=["auth"])


@router.post(routes.AUTH_ROTATE, response_model=SecretRotated)
async def rotate_secret(request: Request) -> SecretRotated:
    """Replace the runtime's secret and return the new one, once.

    Requests made with the old secret fail from the moment this answers; every
    bridge and client must be given the new one.  Kernels, sessions and jobs are
    untouched.  The new secret is not logged anywhere.
    """
    state: RuntimeState = request.app.state.sc
    secret = new_secret()
    state.rotate_secret(secret)
    client = request.scope.get("state", {}).get("sc_client")
    state.audit.event("secret_rotated", client=client)
    return SecretRotated(secret=secret, rotated_at=time.time())
