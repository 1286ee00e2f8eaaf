"""The user's own Python for the local runtime's kernels, checked before it is used."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from smartcolab.shared import env as env_names
from smartcolab.shared.errors import InvalidInput

ENV_PYTHON = env_names.PYTHON
CHECK_TIMEOUT_S = 60.0
PROJECT_VENVS = (".venv", "venv", "env")


def resolve_python(python: str | None, env: Mapping[str, str]) -> str | None:
    """``--python``, else ``$SMARTCOLAB_PYTHON``, as an absolute path (None: the bridge's own)."""
    chosen = python or env.get(ENV_PYTHON) or None
    if chosen is None:
        return None
    found = shutil.which(os.path.expanduser(chosen))
    if found is None:
        raise InvalidInput(f"no Python interpreter at {chosen!r}: give --python (or "
                           f"${ENV_PYTHON}) the path of a python executable")
    # Not resolved through symlinks: a virtualenv's python is a symlink to the base one.
    return str(Path(found).absolute())


def project_python(project: Path) -> str | None:
    """The interpreter of a virtualenv in ``project`` (.venv, venv, env), if any."""
    for name in PROJECT_VENVS:
        for rel in ("bin/python", "Scripts/python.exe"):
            candidate = project / name / rel
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate.absolute())
    return None


def check_python(python: str) -> None:
    """Refuse a Python that cannot run a kernel, with the exact command that fixes it."""
    try:
        proc = subprocess.run([python, "-c", "import ipykernel_launcher"],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=CHECK_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InvalidInput(f"cannot run the Python {python!r} for the local runtime: {exc}",
                           details={"python": python}) from exc
    if proc.returncode != 0:
        raise InvalidInput(
            f"the Python {python} has no ipykernel, which the local runtime's kernels need. "
            f"Install it with:\n  {python} -m pip install ipykernel\n"
            "then call again (or choose another interpreter with --python / "
            f"${ENV_PYTHON}).", details={"python": python, "fix": f"{python} -m pip install ipykernel"})
