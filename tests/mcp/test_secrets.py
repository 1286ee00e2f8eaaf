"""Secrets out of the model and out of argv (issue 16 item 20)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import anyio
import pytest
from typer.testing import CliRunner

from smartcolab.cli.app import app
from smartcolab.client.registry import RuntimeSpec, load_runtimes_file
from smartcolab.client.secret_source import resolve_secret
from smartcolab.shared.errors import InvalidInput
from support.bridge_helpers import bridge, make_config, text_of
from support.runtime_proc import RuntimeProc

runner = CliRunner()
NO_ENV = {"COLAB_URL": "", "COLAB_TOKEN": ""}


def add(file: Path, *args: str, input: str | None = None) -> tuple[int, str]:
    r = runner.invoke(app, ["runtimes", "add", *args], input=input,
                      env={**NO_ENV, "SMARTCOLAB_RUNTIMES": str(file)})
    return r.exit_code, r.stdout + r.stderr


# ---------------------------------------------------------------- where a secret comes from
def test_a_raw_secret_needs_the_explicit_flag() -> None:
    with pytest.raises(InvalidInput, match="secret_in_transcript=true") as info:
        resolve_secret("x", secret="hunter2-secret", env={})
    assert "hunter2-secret" not in str(info.value)
    assert resolve_secret("x", secret="s", secret_in_transcript=True, env={}) == "s"
    with pytest.raises(InvalidInput, match="not several"):
        resolve_secret("x", secret="s", secret_env="COLAB_TOKEN", env={})


def test_secret_env_only_names_meant_for_secrets(tmp_path: Path) -> None:
    env = {"COLAB_TOKEN": "c", "AWS_SECRET_ACCESS_KEY": "aws", "SMARTCOLAB_SECRET_VM": "vm",
           "MY_VM": "mine", "SMARTCOLAB_RUNTIMES": str(tmp_path / "r.toml")}
    assert resolve_secret("x", secret_env="COLAB_TOKEN", env=env) == "c"
    assert resolve_secret("x", secret_env="SMARTCOLAB_SECRET_VM", env=env) == "vm"
    for name in ("AWS_SECRET_ACCESS_KEY", "MY_VM", "HOME"):
        with pytest.raises(InvalidInput, match="not one meant for runtime secrets"):
            resolve_secret("x", secret_env=name, env=env)
    with pytest.raises(InvalidInput, match="not an environment variable name"):
        resolve_secret("x", secret_env="A B", env=env)
    with pytest.raises(InvalidInput, match="not set"):
        resolve_secret("x", secret_env="JUPYTER_TOKEN", env=env)
    # A variable the runtimes file names in secret_env is meant for it.
    (tmp_path / "r.toml").write_text('[runtimes.vm]\nurl = "http://127.0.0.1:1"\n'
                                     'secret_env = "MY_VM"\n')
    assert resolve_secret("x", secret_env="MY_VM", env=env) == "mine"


def test_stored_secrets_are_found_by_name(tmp_path: Path) -> None:
    env = {"SMARTCOLAB_RUNTIMES": str(tmp_path / "r.toml")}
    known = [RuntimeSpec("vm", "http://127.0.0.1:1", "in-memory")]
    assert resolve_secret("vm", known=known, env=env) == "in-memory"
    assert resolve_secret("new", known=known, env=env) is None
    with pytest.raises(InvalidInput, match="no secret is stored for 'other'"):
        resolve_secret("new", secret_name="other", known=known, env=env)
    (tmp_path / "r.toml").write_text('[runtimes.other]\nurl = "http://127.0.0.1:1"\n'
                                     'secret = "from-file"\n')
    assert resolve_secret("new", secret_name="other", env=env) == "from-file"


# ---------------------------------------------------------------- runtimes add
def test_runtimes_add_never_takes_a_secret_from_argv(tmp_path: Path) -> None:
    file = tmp_path / "r.toml"
    code, out = add(file, "vm", "http://127.0.0.1:1", "--secret", "argv-secret")
    assert code != 0 and "No such option" in out and not file.exists()
    code, out = add(file, "vm", "http://127.0.0.1:1", "--secret-file", "-", input="piped\n")
    assert code == 0, out
    assert stat.S_IMODE(os.stat(file).st_mode) == 0o600
    assert load_runtimes_file(file, {})[0][0].secret == "piped"
    code, out = add(file, "vm2", "http://127.0.0.1:1", "--ask-secret", input="typed\n")
    assert code == 0 and "typed" not in out, out
    secret_file = tmp_path / "s.txt"
    secret_file.write_text("from-a-file\n")
    code, out = add(file, "vm3", "http://127.0.0.1:1", "--secret-file", str(secret_file))
    assert code == 0, out
    secrets = {s.name: s.secret for s in load_runtimes_file(file, {})[0]}
    assert secrets == {"vm": "piped", "vm2": "typed", "vm3": "from-a-file"}
    code, out = add(file, "vm4", "http://127.0.0.1:1", "--secret-file", "-", input="\n")
    assert code == 2 and "no secret" in out


def test_cli_commands_have_no_token_flag(runtime: RuntimeProc, tmp_path: Path) -> None:
    r = runner.invoke(app, ["probe", "--url", runtime.url, "--token", runtime.secret], env=NO_ENV)
    assert r.exit_code == 2 and "No such option" in r.stderr
    (tmp_path / "tok").write_text(runtime.secret + "\n")
    r = runner.invoke(app, ["probe", "--url", runtime.url, "--token-file", str(tmp_path / "tok"),
                            "--json"], env=NO_ENV)
    assert r.exit_code == 0, r.stderr


# ---------------------------------------------------------------- connect_runtime
@pytest.mark.anyio
async def test_connect_runtime_by_stored_name_not_by_value(
        runtime: RuntimeProc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "r.toml"
    monkeypatch.setenv("SMARTCOLAB_RUNTIMES", str(file))
    async with bridge(make_config(tmp_path, runtime)) as (client, deps):
        with anyio.fail_after(60):
            raw = await client.call_tool("connect_runtime", {
                "name": "vm", "url": runtime.url, "secret": runtime.secret})
            assert raw.is_error and "secret_in_transcript" in text_of(raw)
            assert runtime.secret not in text_of(raw)
            # The user stores it in a terminal after the bridge started; the model names it.
            code, out = add(file, "vm", runtime.url, "--secret-file", "-",
                            input=runtime.secret + "\n")
            assert code == 0, out
            ok = await client.call_tool("connect_runtime", {"name": "vm", "url": runtime.url})
            assert not ok.is_error, text_of(ok)
            ran = await client.call_tool("run_code_quick", {"code": "6 * 7", "runtime": "vm"})
            assert "42" in text_of(ran)
            other = await client.call_tool("connect_runtime", {
                "name": "vm2", "url": runtime.url, "secret_name": "vm"})
            assert not other.is_error, text_of(other)
    assert deps.registry.spec("vm2").secret == runtime.secret
    listed = text_of(ok) + text_of(other)
    assert runtime.secret not in listed
