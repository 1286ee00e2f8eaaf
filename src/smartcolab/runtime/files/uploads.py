"""The upload ledger: every temporary upload file is written down, so none is orphaned.

A streamed upload writes ``.sc-upload-*.tmp`` beside its destination and renames it
at the end (an upload in parts: ``.sc-upload-<id>.part``, ``parts.py``).  A crash (kill -9, OOM, power) in between used to leave the temp file
behind, hidden from listings, forever (84 MB seen).  Before creating one, the server
writes its path to ``STATE_DIR/uploads/<token>``; the entry goes when the upload
ends either way.  Entries left by an earlier process are swept at start, and stale
entries of this one (an upload idle past its limit) periodically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from pathlib import Path

from smartcolab.runtime.files.service import UPLOAD_TMP_MARK

log = logging.getLogger("smartcolab.runtime")
LEDGER_DIR = "uploads"
SWEEP_EVERY_S = 600.0
# An entry of this process older than this is an upload that can no longer be alive.
STALE_AFTER_S = 24 * 3600.0


class UploadLedger:
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / LEDGER_DIR
        self.active: set[str] = set()

    def begin(self, tmp: Path) -> str:
        """Write down a temp file about to be created; returns the entry's token."""
        self.dir.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(8)
        (self.dir / token).write_text(str(tmp), encoding="utf-8")
        self.active.add(token)
        return token

    def end(self, token: str) -> None:
        self.active.discard(token)
        with contextlib.suppress(OSError):
            (self.dir / token).unlink()

    def sweep(self, *, all_inactive: bool) -> tuple[int, int]:
        """Remove the temp files of dead uploads; returns (files removed, bytes freed)."""
        removed = freed = 0
        try:
            entries = list(self.dir.iterdir())
        except OSError:
            return 0, 0
        now = time.time()
        for entry in entries:
            if entry.name in self.active:
                continue
            try:
                if not all_inactive and now - entry.stat().st_mtime < STALE_AFTER_S:
                    continue
                tmp = Path(entry.read_text(encoding="utf-8").strip())
            except OSError:
                continue
            # Only ever a temp file of ours, never what an entry might otherwise name.
            if tmp.name.startswith(UPLOAD_TMP_MARK) and tmp.name.endswith((".tmp", ".part")):
                with contextlib.suppress(OSError):
                    size = tmp.lstat().st_size
                    os.unlink(tmp)
                    removed, freed = removed + 1, freed + size
            with contextlib.suppress(OSError):
                entry.unlink()
        if removed:
            log.warning("removed %d temporary upload file(s) of interrupted uploads "
                        "(%d bytes)", removed, freed)
        return removed, freed

    async def sweep_forever(self, every_s: float = SWEEP_EVERY_S) -> None:
        while True:
            await asyncio.sleep(every_s)
            await asyncio.to_thread(self.sweep, all_inactive=False)
