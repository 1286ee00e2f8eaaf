"""The Dockerfile stays in step with the package (no Docker engine here to build it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.runtime_proc import PROCESS_TIMEOUT_S, subprocess_env

REPO = Path(__file__).resolve().parents[2]


def instructions(name: str) -> list[str]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in text.splitlines()
            if line.upper().startswith(name + " ")]


def test_copied_files_exist_and_are_not_ignored() -> None:
    allowed = {line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    for copy in instructions("COPY"):
        for source in copy.split()[:-1]:
            assert (REPO / source).exists(), source
            assert source.rstrip("/") in allowed, f"{source} is excluded by .dockerignore"


def test_entrypoint_flags_are_real_serve_options() -> None:
    cmd = json.loads(instructions("CMD")[0])
    entrypoint = json.loads(instructions("ENTRYPOINT")[0])
    assert entrypoint == ["smartcolab-entrypoint", "smartcolab", "serve"]
    assert any(c.split()[-1] == "/usr/local/bin/smartcolab-entrypoint" for c in instructions("COPY"))
    help_text = subprocess.run([sys.executable, "-m", "smartcolab", "serve", "--help"],
                               capture_output=True, text=True, env=subprocess_env({"COLUMNS": "200"}),
                               timeout=PROCESS_TIMEOUT_S, check=True).stdout
    options = set(re.findall(r"--[a-z][a-z0-9-]+", help_text))
    for flag in (a for a in cmd if a.startswith("--")):
        assert flag in options, flag
    assert cmd[cmd.index("--port") + 1] in " ".join(instructions("EXPOSE"))


ENTRYPOINT_SH = REPO / "docker" / "entrypoint.sh"
needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or
                                shutil.which("setpriv") is None,
                                reason="the entrypoint's root path needs root and setpriv")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory uid 4242 can reach (pytest's tmp dirs are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="smartcolab-entrypoint-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_entrypoint(workspace: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "SMARTCOLAB_WORKSPACE": str(workspace),
           "SMARTCOLAB_RUNNER_UID": "4242"}
    return subprocess.run(["sh", str(ENTRYPOINT_SH), *command], capture_output=True, text=True,
                          env=env, timeout=30)


@needs_root
def test_entrypoint_hands_an_empty_root_owned_workspace_to_the_runner(open_dir: Path) -> None:
    workspace = open_dir / "workspace"  # as Docker creates a missing bind-mount source
    workspace.mkdir(mode=0o755)
    done = run_entrypoint(workspace, "sh", "-c", "id -u; touch \"$0/made-by-runner\"", str(workspace))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4242"]
    assert workspace.stat().st_uid == 4242 and (workspace / "made-by-runner").stat().st_uid == 4242


@needs_root
def test_entrypoint_refuses_a_full_workspace_it_cannot_write(open_dir: Path) -> None:
    workspace = open_dir / "workspace"
    workspace.mkdir(mode=0o755)
    (workspace / "data.csv").write_text("x\n")
    done = run_entrypoint(workspace, "true")
    assert done.returncode == 2
    assert "chown -R 4242:4242" in done.stderr and "--user" in done.stderr
    assert workspace.stat().st_uid == 0  # a user's data is never re-owned
