"""What a new user meets first on the command line, one test per item of issue 20.

Commands run in-process through Typer's runner against the session's real runtime;
``serve``'s log format and the TLS hint use real processes.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shlex
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from smartcolab.cli import client_config, common
from smartcolab.cli.app import app
from support.runtime_proc import PROCESS_TIMEOUT_S, RuntimeProc, subprocess_env

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
NO_ENV = {"COLAB_URL": "", "COLAB_TOKEN": "", "COLUMNS": "200"}


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    # The CLI's consoles read COLUMNS once, when first imported, which in a shared test
    # process may be at 80 columns: set the width these tables are checked at.
    common.out.width = common.err.width = 200
    result = runner.invoke(app, list(args), env={**NO_ENV, **(env or {})})
    return result.exit_code, result.stdout, result.stderr


def secret_file(directory: Path, secret: str) -> str:
    path = directory / "fc-secret.txt"
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return str(path)


def on(rt: RuntimeProc) -> list[str]:
    return ["--url", rt.url, "--token-file", secret_file(rt.root.parent, rt.secret)]


# ---------------------------------------------------------------- config
def test_config_prints_only_the_snippet_on_stdout(tmp_path: Path) -> None:
    code, out, err = invoke("config", "claude-desktop", "--url", "https://x.example",
                            "--token-file", secret_file(tmp_path, "s3cret"))
    assert code == 0
    entry = json.loads(out)["mcpServers"]["smart-colab"]  # the whole of stdout is JSON
    assert Path(entry["command"]).is_absolute() and entry["env"]["COLAB_TOKEN"] == "s3cret"
    assert "claude_desktop_config.json" in err and "{" not in err
    code, out, err = invoke("config", "claude-code", "--runtime", "kaggle")
    words = shlex.split(out)
    assert code == 0 and words[:4] == ["claude", "mcp", "add", "smart-colab"]
    assert Path(words[words.index("--") + 1]).is_absolute() and "Run" in err


def test_config_for_the_http_transport() -> None:
    code, out, err = invoke("config", "cursor", "--transport", "http")
    entry = json.loads(out)["mcpServers"]["smart-colab"]
    assert code == 0 and entry["url"] == "http://127.0.0.1:8766/mcp"
    assert entry["headers"]["Authorization"].startswith("Bearer ")
    assert "mcp --transport http" in err
    code, out, _ = invoke("config", "claude-code", "--transport", "http",
                          "--http-url", "http://127.0.0.1:9999/mcp")
    assert code == 0 and shlex.split(out)[:6] == ["claude", "mcp", "add", "--transport", "http",
                                                  "smart-colab"]
    code, out, err = invoke("config", "claude-desktop", "--transport", "http")
    assert code == 2 and out == "" and "stdio" in err


def test_under_uvx_the_snippet_does_not_point_into_uvs_cache(tmp_path: Path) -> None:
    cached = tmp_path / ".cache" / "uv" / "archive-v0" / "Xk3a" / "bin" / "python"
    assert client_config.in_uv_cache(str(cached))
    assert not client_config.in_uv_cache(sys.executable)
    snippet = client_config.render_snippet("claude-desktop", python=str(cached))
    entry = json.loads(snippet.text)["mcpServers"]["smart-colab"]
    assert "archive-v0" not in snippet.text and entry["command"].endswith("uvx")
    assert entry["args"][:3] == ["--from", client_config.install_source(), "smartcolab"]
    assert entry["args"][3:] == ["mcp"]
    # This checkout is installed editable: uvx rebuilds from it.
    assert Path(client_config.install_source()).resolve() == REPO


# ---------------------------------------------------------------- help and docs
def walk(command: Any, path: list[str]) -> list[list[str]]:
    found = [path]
    for name, sub in getattr(command, "commands", {}).items():
        found += walk(sub, [*path, name])
    return found


def test_help_names_values_plainly() -> None:
    import typer.main

    for path in walk(typer.main.get_command(app), [])[1:]:
        code, out, _ = invoke(*path, "--help")
        assert code == 0, path
        odd = re.findall(r"<(?:bool|str|int|float|path|list\[\w+\])>|list\[", out)
        assert odd == [], (path, odd)
    _, out, _ = invoke("serve", "--help")
    assert re.search(r"--guarded\s+Refuse", out)  # a flag takes no value
    assert re.search(r"--root\s+PATH", out) and re.search(r"--port\s+INTEGER", out)


def test_exec_default_timeout_is_in_help_and_docs() -> None:
    _, out, _ = invoke("exec", "--help")
    assert "120 s unless given" in " ".join(out.split())
    assert "**default 120 s**" in (REPO / "docs" / "cli.md").read_text()


# ---------------------------------------------------------------- exec, files
def test_exec_names_an_unsaved_plot(runtime: RuntimeProc) -> None:
    png = ("import base64\nfrom IPython.display import Image, display\n"
           "display(Image(data=base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAA"
           "DUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')))")
    code, _, err = invoke("exec", png, *on(runtime))
    assert code == 0 and "image/png" in err and "--images DIR" in err


def test_get_of_a_directory(runtime: RuntimeProc, tmp_path: Path) -> None:
    folder = runtime.root / "fc-dir" / "inner"
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text("alpha")
    (runtime.root / "fc-dir" / "b.txt").write_text("beta")
    code, out, err = invoke("get", "fc-dir", str(tmp_path), *on(runtime))
    assert code == 0, err
    assert (tmp_path / "fc-dir" / "inner" / "a.txt").read_text() == "alpha"
    assert (tmp_path / "fc-dir" / "b.txt").read_text() == "beta"
    assert "entries" in out and "download_dir" not in out + err
    code, _, err = invoke("get", "fc-dir", str(tmp_path), *on(runtime))
    assert code == 2 and "already exists" in err and "--overwrite" in err


def test_refusals_come_without_a_progress_bar(runtime: RuntimeProc, tmp_path: Path) -> None:
    (runtime.root / "fc-bar.txt").write_text("x" * 1000)
    (tmp_path / "fc-bar.txt").write_text("mine")
    code, _, err = invoke("get", "fc-bar.txt", str(tmp_path), *on(runtime))
    assert code == 2 and "already exists" in err
    assert err.strip().count("\n") == 0 and "get fc-bar" not in err, err
    assert (tmp_path / "fc-bar.txt").read_text() == "mine"
    code, _, err = invoke("put", str(tmp_path / "fc-bar.txt"), "fc-bar.txt", *on(runtime))
    assert code == 2 and "exists" in err and "put fc-bar" not in err, err


# ---------------------------------------------------------------- runtimes and names
def test_runtimes_list_marks_the_runtime_colab_url_overrides(runtime: RuntimeProc,
                                                             tmp_path: Path) -> None:
    file = tmp_path / "runtimes.toml"
    env = {"SMARTCOLAB_RUNTIMES": str(file)}
    code, out, _ = invoke("runtimes", "add", "box", runtime.url, "--default", env=env)
    assert code == 0 and f"added box to {file.resolve()}" in out
    hint = out.split("for an MCP client, ", 1)[1]
    assert Path(hint.split()[0]).is_absolute()
    assert f"config claude-desktop --runtime box --runtimes-file {file.resolve()}" in hint
    _, out, _ = invoke("runtimes", "list", env=env)
    assert "box (default)" in out
    env["COLAB_URL"] = runtime.url
    _, out, _ = invoke("runtimes", "list", env=env)
    assert "colab (default: $COLAB_URL is set)" in out
    assert "box (file default; $COLAB_URL wins)" in out and "box (default)" not in out
    listed = json.loads(invoke("runtimes", "list", "--json", env=env)[1])
    assert (listed["default"], listed["file_default"]) == ("colab", "box")


def test_a_local_server_is_named_by_its_url_not_colab(runtime: RuntimeProc) -> None:
    env = {"COLAB_URL": runtime.url, "COLAB_TOKEN": runtime.secret}
    code, out, _ = invoke("ls", env=env)
    assert code == 0 and f"on {runtime.url}" in out and "on colab" not in out
    code, out, _ = invoke("jobs", "list", env=env)
    assert code == 0 and "on colab" not in out and runtime.url in out


# ---------------------------------------------------------------- serve's logs
def start_serve(tmp_path: Path, *flags: str, tty: bool) -> tuple[subprocess.Popen[bytes], int]:
    """``smartcolab serve`` with stdout and stderr on a terminal (a pty) or on one pipe."""
    args = [sys.executable, "-m", "smartcolab", "serve", "--port", "0", "--root", str(tmp_path),
            "--port-file", str(tmp_path / "port"), *flags]
    env = subprocess_env({"SMARTCOLAB_SECRET": "first-contact-secret-0123456789"})
    if tty:
        master, slave = pty.openpty()
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
        os.close(slave)
        return proc, master
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env)
    assert proc.stdout is not None
    return proc, proc.stdout.fileno()


def read_until_started(fd: int, proc: subprocess.Popen[bytes]) -> str:
    seen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and b"startup complete" not in seen:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    return seen.decode(errors="replace")


@pytest.mark.parametrize(("tty", "flags", "json_lines"), [
    (True, (), False), (False, (), True), (True, ("--json-logs",), True),
    (False, ("--plain-logs",), False)], ids=["terminal", "pipe", "terminal-json", "pipe-plain"])
def test_serve_logs_readable_lines_in_a_terminal(tmp_path: Path, tty: bool, flags: tuple[str, ...],
                                                 json_lines: bool) -> None:
    proc, fd = start_serve(tmp_path, *flags, tty=tty)
    try:
        text = read_until_started(fd, proc)
    finally:
        proc.terminate()
        proc.wait(20)
        if tty:
            os.close(fd)
    started = [line.strip() for line in text.splitlines() if "startup complete" in line]
    assert started, text
    assert started[0].startswith('{"ts"') == json_lines, text
    if not json_lines:
        assert re.fullmatch(r"\d\d:\d\d:\d\d INFO +Application startup complete\.", started[0])
    assert "live job monitor" in text  # the banner is there either way


# ---------------------------------------------------------------- TLS
def test_a_self_signed_certificate_failure_names_ssl_cert_file(tmp_path: Path) -> None:
    from runtime.test_tls import make_self_signed

    cert, key = make_self_signed(tmp_path)
    proc, fd = start_serve(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key), tty=False)
    try:
        read_until_started(fd, proc)
        url = f"https://127.0.0.1:{(tmp_path / 'port').read_text()}"
        token = secret_file(tmp_path, "first-contact-secret-0123456789")
        code, _, err = invoke("probe", "--url", url, "--token-file", token, env={"SSL_CERT_FILE": ""})
        assert code == 6 and "SSL_CERT_FILE" in err and "self-signed" in err, err
        code, out, err = invoke("doctor", "--url", url, "--token-file", token,
                                env={"SSL_CERT_FILE": ""})
        assert code == 1 and "SSL_CERT_FILE" in out + err
        code, out, err = invoke("probe", "--url", url, "--token-file", token, "--json",
                                env={"SSL_CERT_FILE": str(cert)})
        assert code == 0, err
    finally:
        proc.terminate()
        proc.wait(20)


# ---------------------------------------------------------------- bundle
def test_bundle_writes_the_wheel_a_notebook_installs(tmp_path: Path) -> None:
    code, out, err = invoke("bundle", "--out", str(tmp_path / "b"))
    assert code == 0, err
    wheel = Path(out.strip())
    assert wheel.is_absolute() and wheel.name.startswith("smart_colab_mcp-") and wheel.is_file()
    assert "Files panel" in err and "Run all" in err
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        assert "Requires-Dist: fastapi" in zf.read(meta).decode()
    for needed in ("smartcolab/runtime/ui/index.html", "smartcolab/runtime/notebook.py",
                   "smartcolab/py.typed"):
        assert needed in names
    assert not [n for n in names if "__pycache__" in n]
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--target", str(target), str(wheel)], check=True, timeout=120,
                   capture_output=True)
    assert (target / "bin" / "smartcolab").is_file()
    shown = subprocess.run([sys.executable, "-c", "import smartcolab; print(smartcolab.__file__)"],
                           env={**os.environ, "PYTHONPATH": str(target)}, capture_output=True,
                           text=True, timeout=PROCESS_TIMEOUT_S, check=True).stdout
    assert shown.startswith(str(target))
    # The same files give the same wheel.
    again = Path(invoke("bundle", "--out", str(tmp_path / "c"))[1].strip())
    assert again.read_bytes() == wheel.read_bytes()


def test_the_notebook_installs_a_bundle_and_shows_the_monitor() -> None:
    text = (REPO / "colab" / "smart_colab_executor.ipynb").read_text()
    assert "pip install smart-colab-mcp" not in text and "smartcolab bundle" in text
    assert "show_monitor()" in text and '\\"command\\": \\"python\\"' not in text
