"""The local runtime's configuration: flags, environment, config snippets, leases, epochs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smartcolab.cli.app import app
from smartcolab.cli.commands.local import local_options
from smartcolab.client.epochs import EpochTracker
from smartcolab.client.journal import Journal
from smartcolab.client.local.daemon import DaemonSpec, daemon_env
from smartcolab.client.local.sessions import ClientLease
from smartcolab.shared.errors import InvalidInput


def fake_python(path: Path, *, ipykernel: bool) -> Path:
    """An interpreter wrapper: this Python, or one that cannot import ipykernel."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = f'exec {sys.executable} "$@"' if ipykernel else "exit 1"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_config_claude_code_writes_the_project_root_and_its_venv(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "proj"
    python = fake_python(project / ".venv" / "bin" / "python", ipykernel=True)
    monkeypatch.chdir(project)
    monkeypatch.delenv("SMARTCOLAB_PYTHON", raising=False)
    result = CliRunner().invoke(app, ["config", "claude-code"])
    assert result.exit_code == 0, result.output
    assert (f"--client claude-code --root {project.resolve()} --python {python}"
            in result.output)


def test_config_refuses_a_python_without_ipykernel_with_the_fix(tmp_path: Path) -> None:
    bare = fake_python(tmp_path / "bare" / "python", ipykernel=False)
    result = CliRunner().invoke(app, ["config", "claude-desktop", "--python", str(bare)])
    assert result.exit_code == 2
    assert f"{bare} -m pip install ipykernel" in result.output


def test_local_options_read_flags_then_environment(tmp_path: Path) -> None:
    python = fake_python(tmp_path / "py", ipykernel=True)
    env = {"SMARTCOLAB_PYTHON": str(python), "SMARTCOLAB_CLIENT": "desk",
           "SMARTCOLAB_IDLE_MINUTES": "2"}
    opts = local_options(env)
    assert (opts.python, opts.client, opts.idle_timeout_s) == (str(python), "desk", 120.0)
    assert local_options(env, client="code", idle_minutes=0.5).idle_timeout_s == 30.0
    with pytest.raises(InvalidInput, match="no Python interpreter"):
        local_options({"SMARTCOLAB_PYTHON": str(tmp_path / "missing")})
    with pytest.raises(InvalidInput, match="client label"):
        local_options({}, client="../x")


def test_daemon_environment_has_no_runtime_token(tmp_path: Path) -> None:
    spec = DaemonSpec(base=tmp_path, root=tmp_path, strip_names=("MY_HUB_TOKEN",),
                      strip_values=("s3cret-value",))
    env = daemon_env(spec, {"COLAB_TOKEN": "a", "JUPYTER_TOKEN": "b", "NGROK_AUTHTOKEN": "c",
                            "SMARTCOLAB_SECRET": "d", "SMARTCOLAB_MCP_TOKEN": "e",
                            "MY_HUB_TOKEN": "f", "OTHER": "s3cret-value", "HOME": "/home/u",
                            "HF_TOKEN": "kept: the user's own"})
    assert set(env) == {"HOME", "HF_TOKEN", "PYTHONPATH", "PYTHONUNBUFFERED"}


def test_daemon_directory_is_named_after_what_it_runs(tmp_path: Path) -> None:
    a = DaemonSpec(base=tmp_path, root=tmp_path / "proj")
    assert a.directory == DaemonSpec(base=tmp_path, root=tmp_path / "proj").directory
    assert a.directory != DaemonSpec(base=tmp_path, root=tmp_path / "proj",
                                     python="/usr/bin/python3").directory
    assert a.directory.name.startswith("proj-")


def test_client_leases_are_exclusive_and_come_back(tmp_path: Path) -> None:
    first, second = ClientLease(tmp_path), ClientLease(tmp_path)
    assert (first.name, second.name) == ("main", "main-2")
    first.release()
    assert ClientLease(tmp_path).name == "main"
    assert ClientLease(tmp_path, "desk").name == "desk"
    assert (tmp_path / "clients").stat().st_mode & 0o777 == 0o700


def test_epochs_outlive_the_bridge_per_observer(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    try:
        before = EpochTracker(journal, lambda: "main")
        assert before.observe("local", "main", "e1") is None
        after_restart = EpochTracker(journal, lambda: "main")
        assert after_restart.observe("local", "main", "e1") is None  # state intact: no note
        change = after_restart.observe("local", "main", "e2")
        assert change is not None and (change.before, change.after) == ("e1", "e2")
        assert EpochTracker(journal, lambda: "main").observe("local", "main", "e2") is None
        other = EpochTracker(journal, lambda: "main-2")
        assert other.observe("local", "main", "e2") is None  # first sight for that bridge
        after_restart.expect("local", "main", "e3")
        assert EpochTracker(journal, lambda: "main").last("local", "main") == "e3"
    finally:
        journal.close()
    assert os.stat(tmp_path).st_mode & 0o777 == 0o700


def test_the_daemon_socket_is_in_its_directory_or_a_private_folder(tmp_path: Path) -> None:
    import os

    from smartcolab.runtime.daemon import bind_unix_socket
    from smartcolab.shared.local_daemon import MAX_SOCKET_PATH, socket_path

    short = Path("/tmp/sc") / "d"
    assert socket_path(short) == short / "runtime.sock"
    deep = tmp_path / ("x" * 120)
    moved = socket_path(deep)
    assert moved is not None and len(os.fsencode(moved)) < MAX_SOCKET_PATH
    assert moved.parent.name == f"smartcolab-{os.getuid()}" and moved.suffix == ".sock"
    assert socket_path(tmp_path / ("y" * 120)) != moved  # one per daemon directory
    # A folder others can write to is refused: their socket could stand in for ours.
    shared = tmp_path / "smartcolab-shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    assert bind_unix_socket(shared / "a.sock", tmp_path / "daemon") is None
    # A folder that cannot be made ($XDG_RUNTIME_DIR gone): no socket, TCP only.
    assert bind_unix_socket(tmp_path / "gone" / "smartcolab-0" / "a.sock", tmp_path) is None
    ours = bind_unix_socket(tmp_path / "runtime.sock", tmp_path)
    assert ours is not None
    assert (tmp_path / "runtime.sock").stat().st_mode & 0o777 == 0o600
    ours.close()
