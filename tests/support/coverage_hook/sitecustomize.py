"""Start coverage in the suite's own Python subprocesses, and only there.

``scripts/test.sh`` puts this folder on ``PYTHONPATH`` and names the coverage config in
``SMARTCOLAB_COVERAGE_RC``; every Python process the tests start imports this module at
start-up.  Coverage's own ``patch = subprocess`` would start it in all of them: kernels,
Jupyter Server and Dask workers too, which never run a file of ours (code reaches kernels
as source text) and whose start-up CPU the tracer nearly doubled on the 2-core machine.
So coverage starts here only for ``smartcolab`` itself (``-m smartcolab``, the console
script), ``-c`` code that imports it, scripts of this repository (``bench/``), and
pytest-xdist's workers (execnet starts them with its bootstrap line as ``-c`` code): they
run the tests, so they must be measured from their first import, as the main pytest is.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[3]
_TAKES_VALUE = {"-X", "-W", "-Q"}
# How execnet (pytest-xdist's transport) starts a worker: ``python -u -c <this>``.
_EXECNET_BOOTSTRAP = "import sys;exec(eval(sys.stdin.readline()))"


def _ours(argv: list[str]) -> bool:
    args = iter(argv[1:])
    for arg in args:
        if arg == "-m":
            module = next(args, "")
            return module == "smartcolab" or module.startswith("smartcolab.")
        if arg == "-c":
            code = next(args, "")
            return "smartcolab" in code or code == _EXECNET_BOOTSTRAP
        if arg in _TAKES_VALUE:
            next(args, None)
        elif not arg.startswith("-"):
            script = Path(arg)
            if script.name == "smartcolab":
                return True
            return script.suffix == ".py" and _REPO in script.resolve().parents
    return False


def _start() -> None:
    rc = os.environ.get("SMARTCOLAB_COVERAGE_RC")
    if not rc or not _ours(getattr(sys, "orig_argv", sys.argv)):
        return
    try:
        import coverage
    except ImportError:
        return
    # process_startup reads the config from this variable; it must not reach our own
    # children through the environment, or coverage's .pth would start in every one.
    os.environ["COVERAGE_PROCESS_START"] = rc
    try:
        coverage.process_startup()
    finally:
        del os.environ["COVERAGE_PROCESS_START"]


_start()
