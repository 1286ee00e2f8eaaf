"""``smartcolab mcp`` with cProfile switched on by SIGUSR1 and off (and dumped) by SIGUSR2.

    python bench/_profiled_bridge.py OUT.prof mcp --log-level WARNING

Only what happens between the two signals is profiled (no start-up, no imports); the
main thread only, which is the bridge's event loop.  The pid goes to ``OUT.prof.pid``.
"""

from __future__ import annotations

import cProfile
import os
import runpy
import signal
import sys
from pathlib import Path
from types import FrameType

out = Path(sys.argv[1])
prof = cProfile.Profile()


def _on(signum: int, frame: FrameType | None) -> None:
    prof.enable()


def _off(signum: int, frame: FrameType | None) -> None:
    prof.disable()
    prof.dump_stats(str(out))


signal.signal(signal.SIGUSR1, _on)
signal.signal(signal.SIGUSR2, _off)
out.with_name(out.name + ".pid").write_text(str(os.getpid()))
sys.argv = ["smartcolab", *sys.argv[2:]]
runpy.run_module("smartcolab", run_name="__main__", alter_sys=True)
