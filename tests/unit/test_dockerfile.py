"""The Dockerfile stays in step with the package (no Docker engine here to build it)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from support.runtime_proc import subprocess_env

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
    assert json.loads(instructions("ENTRYPOINT")[0]) == ["smartcolab", "serve"]
    help_text = subprocess.run([sys.executable, "-m", "smartcolab", "serve", "--help"],
                               capture_output=True, text=True, env=subprocess_env({"COLUMNS": "200"}),
                               timeout=60, check=True).stdout
    options = set(re.findall(r"--[a-z][a-z0-9-]+", help_text))
    for flag in (a for a in cmd if a.startswith("--")):
        assert flag in options, flag
    assert cmd[cmd.index("--port") + 1] in " ".join(instructions("EXPOSE"))
