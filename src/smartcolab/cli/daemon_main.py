"""``python -m smartcolab.cli.daemon_main``: the local runtime daemon's entry point.

Started detached by ``client/local/daemon.py``, never by people. Its own small
argparse entry, not a typer command: importing the whole CLI would add to every
daemon's start (and so to the first call after it).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Sequence
from pathlib import Path

from smartcolab.shared.local_daemon import DEFAULT_IDLE_TIMEOUT_S


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="smartcolab-local-daemon", description=__doc__)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--kernel", default="python3")
    parser.add_argument("--python", default=None)
    parser.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT_S)
    args = parser.parse_args(argv)

    from smartcolab.runtime.daemon import DaemonOptions, run_daemon

    with contextlib.suppress(KeyboardInterrupt):
        run_daemon(DaemonOptions(directory=args.dir, root=args.root.resolve(),
                                 kernel_name=args.kernel, python=args.python,
                                 idle_timeout_s=args.idle_timeout))


if __name__ == "__main__":
    main()
