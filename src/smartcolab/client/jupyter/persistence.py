"""Saved variables of a Jupyter Server backend, on the runtime's disk.

Snapshots are pickled by the kernel into ``smartcolab-persist/<snapshot>/`` under the
server's root (``kernelside/persist.py``), so they outlive the kernel and the bridge.
"""

from __future__ import annotations

from smartcolab.client.jupyter.session import JupyterSessions
from smartcolab.shared import kernel_code as kc
from smartcolab.shared.errors import InvalidInput, NotFound
from smartcolab.shared.protocol import (
    PersistManifest,
    RestoreReport,
    RestoreRequest,
    SaveRequest,
)

PERSIST_DIR = "smartcolab-persist"  # snapshots, under the server's root (the runtime's disk)


class JupyterPersistence(JupyterSessions):
    """``save_variables`` and ``restore_variables`` through the kernel of the session."""

    async def save_variables(self, session: str = "main",
                             request: SaveRequest | None = None) -> PersistManifest:
        """Pickle the session's variables into ``smartcolab-persist/<snapshot>/``."""
        req = request or SaveRequest()
        _check_names(req.names)
        sess = await self._session(session)
        _, out, _ = await self._internal(session, kc.call("persist", "save", {
            "directory": PERSIST_DIR, "snapshot": req.snapshot or session, "names": req.names,
            "session": session, "epoch": sess.epoch or sess.last_epoch or ""}))
        return PersistManifest.model_validate(kc.parse(out))

    async def restore_variables(self, session: str = "main",
                                request: RestoreRequest | None = None) -> RestoreReport:
        """Load a snapshot saved on this server into the session (e.g. after a restart)."""
        req = request or RestoreRequest()
        _check_names(req.names)
        snapshot = req.snapshot or session
        if await self.spill.json(f"{PERSIST_DIR}/{snapshot}/manifest.json") is None:
            raise NotFound(f"no snapshot {snapshot!r} under {PERSIST_DIR}/ on the Jupyter "
                           "Server; save_variables makes one",
                           details={"snapshot": snapshot})
        _, out, epoch = await self._internal(session, kc.call("persist", "restore", {
            "directory": PERSIST_DIR, "snapshot": snapshot, "names": req.names}))
        return RestoreReport(snapshot=snapshot, session=session, epoch=epoch, **kc.parse(out))


def _check_names(names: list[str]) -> None:
    bad = [n for n in names if not n.isidentifier()]
    if bad:
        raise InvalidInput(f"not Python variable names: {', '.join(map(repr, bad[:10]))}",
                           details={"names": bad[:50]})
