"""Variables and cleanup of a session, computed inside its kernel (``kernel_snippets``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from smartcolab.shared.kernel_snippets import CLEANUP_SRC, VARIABLES_SRC, parse, wrap
from smartcolab.shared.protocol import CleanupReport, CleanupRequest, VariableInfo

if TYPE_CHECKING:
    from smartcolab.runtime.engine.sessions import KernelSession

async def variables(session: KernelSession, *, include_private: bool) -> list[VariableInfo]:
    out = await session.introspect(wrap(VARIABLES_SRC, {"private": include_private}))
    return [VariableInfo.model_validate(v) for v in parse(out)]


async def cleanup(session: KernelSession, request: CleanupRequest) -> CleanupReport:
    out = await session.introspect(wrap(CLEANUP_SRC, {"reset": request.reset,
                                                      "names": request.names}))
    return CleanupReport(session=session.name, epoch=session.epoch, **parse(out))
