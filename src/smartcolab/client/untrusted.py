"""A runtime is untrusted: its ids and names are checked, its transfers are capped.

A runtime is reached over a public tunnel and runs whatever notebook its owner
started; the bridge must survive a hostile one.  Everything it returns that the
bridge uses to name something (a job id, a session name, an archive member) is
checked here against the wire patterns of ``shared/protocol.py`` and against what
was asked; every transfer is bounded by :class:`TransferLimits` and by the free
space of the disk it lands on, checked before the first byte is written.
"""

from __future__ import annotations

import errno
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from smartcolab.shared.errors import LocalWriteFailed, RuntimeMisbehaved
from smartcolab.shared.protocol import JOB_ID_PATTERN, NAME_PATTERN, JobView, SessionView

GIB = 1024 ** 3
# Left free on the local disk after a transfer: the user's machine must keep working.
FREE_SPACE_RESERVE = 64 * 1024 * 1024

_JOB_ID = re.compile(JOB_ID_PATTERN)
_NAME = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class TransferLimits:
    """Caps on what a runtime may make this machine store (besides free space)."""

    max_archive_bytes: int = 32 * GIB
    max_extracted_bytes: int = 64 * GIB
    max_members: int = 200_000
    free_reserve: int = FREE_SPACE_RESERVE


DEFAULT_LIMITS = TransferLimits()


def _shown(value: object) -> str:
    return repr(str(value)[:80])


def check_job_id(value: str, asked: str | None = None) -> str:
    """A job id from a runtime: the wire pattern, and the one asked for when there was one."""
    if not isinstance(value, str) or not _JOB_ID.fullmatch(value):
        raise RuntimeMisbehaved(f"the runtime answered with an invalid job id {_shown(value)}; "
                                "its answer was ignored", details={"field": "job_id"})
    if asked is not None and value != asked:
        raise RuntimeMisbehaved(f"asked for job {asked!r}, the runtime answered about "
                                f"{_shown(value)}; its answer was ignored",
                                details={"field": "job_id", "asked": asked})
    return value


def check_name(value: str, what: str = "session", asked: str | None = None) -> str:
    """A session (or snapshot) name from a runtime: the wire pattern, and what was asked."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise RuntimeMisbehaved(f"the runtime answered with an invalid {what} name "
                                f"{_shown(value)}; its answer was ignored", details={"field": what})
    if asked is not None and value != asked:
        raise RuntimeMisbehaved(f"asked about {what} {asked!r}, the runtime answered about "
                                f"{_shown(value)}; its answer was ignored",
                                details={"field": what, "asked": asked})
    return value


def check_job_view(view: JobView, asked: str | None = None) -> JobView:
    check_job_id(view.job_id, asked)
    check_name(view.session)
    return view


def check_session_view(view: SessionView, asked: str | None = None) -> SessionView:
    check_name(view.name, asked=asked)
    return view


def check_stated_size(size: int, what: str) -> int:
    if size < 0:
        raise RuntimeMisbehaved(f"the runtime stated a negative size for {what}",
                                details={"size": size})
    return size


@dataclass(frozen=True)
class ByteBudget:
    """How many bytes a transfer may store: a configured cap, and the room on the disk.

    Past the room it is this machine's problem (``LocalWriteFailed``, ENOSPC); past
    the cap the runtime sent more than any answer should hold (``RuntimeMisbehaved``).
    """

    cap: int
    room: int
    folder: Path
    what: str

    @classmethod
    def for_folder(cls, folder: Path, cap: int, what: str,
                   limits: TransferLimits = DEFAULT_LIMITS) -> ByteBudget:
        return cls(cap=cap, room=ensure_free_space(folder, 0, limits), folder=folder, what=what)

    def check(self, used: int) -> None:
        if used > self.room:
            raise LocalWriteFailed(
                f"{self.what} does not fit in {self.folder}: past {self.room:,} bytes (the free "
                "space, less a reserve); free some space there or choose another save "
                "directory, then call again; nothing was kept",
                details={"path": str(self.folder), "errno": errno.ENOSPC, "room": self.room})
        if used > self.cap:
            raise RuntimeMisbehaved(f"{self.what} passed {self.cap:,} bytes (the cap); stopped, "
                                    "nothing was kept", details={"cap": self.cap})


def ensure_free_space(folder: Path, need: int, limits: TransferLimits = DEFAULT_LIMITS) -> int:
    """Refuse before writing when ``need`` bytes would not fit (keeping a reserve).

    Returns the bytes that may be written there; raises ``LocalWriteFailed`` (ENOSPC).
    """
    free = shutil.disk_usage(folder).free
    room = max(0, free - limits.free_reserve)
    if need > room:
        raise LocalWriteFailed(
            f"{need:,} bytes would not fit in {folder} ({free:,} bytes free, "
            f"{limits.free_reserve:,} kept in reserve); free some space there, or choose "
            "another save directory, then call again", details={
                "path": str(folder), "errno": errno.ENOSPC, "need": need, "free": free})
    return room
