"""Variables and cleanup of a session, computed inside its kernel (``kernelside``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from smartcolab.shared.kernel_code import call, parse
from smartcolab.shared.protocol import CleanupReport, CleanupRequest, VariableInfo

if TYPE_CHECKING:
    from smartcolab.runtime.engine.sessions import KernelSession

async def variables(session: KernelSession, *, include_private: bool) -> list[VariableInfo]:
    out = await session.introspect(call("variables", "variables", {"private": include_private}))
    return [VariableInfo.model_validate(v) for v in parse(out)]


async def cleanup(session: KernelSession, request: CleanupRequest) -> CleanupReport:
    out = await session.introspect(call("cleanup", "cleanup", {"reset": request.reset,
                                                               "names": request.names}))
    return CleanupReport(session=session.name, epoch=session.epoch, **parse(out))
