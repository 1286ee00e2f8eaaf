"""The CLI against a real runtime server: exec, jobs, vars, cleanup, probe, files, errors.

Commands run in-process through Typer's runner (fast); one test runs the real
``python -m smartcolab`` to pin exit codes and the embedded runtime end to end.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smartcolab.cli.app import app
from support.runtime_proc import PROCESS_TIMEOUT_S, RuntimeProc, subprocess_env

runner = CliRunner()


def cli(rt: RuntimeProc | None, *args: str, input: str | None = None,
        env: dict[str, str] | None = None) -> tuple[int, str, str]:
    conn = ["--url", rt.url] if rt else []
    # Options after the subcommand's own arguments are fine for click.
    result = runner.invoke(app, [*args, *conn], input=input,
                           env={"COLAB_URL": "", "COLAB_TOKEN": rt.secret if rt else "",
                                **(env or {})})
    return result.exit_code, result.stdout, result.stderr


def test_exec_streams_output_and_exits_zero(runtime: RuntimeProc) -> None:
    code, out, _ = cli(runtime, "exec", "for i in range(3): print('line', i)\n6*7")
    assert code == 0
    assert out.splitlines() == ["line 0", "line 1", "line 2", "42"]


# The failing job gets a long timeout: a new kernel's first traceback can take more
# than 0.5 s on a loaded machine, and then the job ended timed_out (exit 3), not failed.
@pytest.mark.parametrize(("source", "timeout", "expected"), [
    ("1/0", "60", 1),
    ("import time; time.sleep(10)", "0.5", 3),
])
def test_exec_exit_code_is_the_job_status(runtime: RuntimeProc, source: str, timeout: str,
                                          expected: int) -> None:
    code, out, err = cli(runtime, "exec", source, "--timeout", timeout, "--session", "exitcodes")
    assert code == expected, (out, err)
    assert ("ZeroDivisionError" in out) if expected == 1 else ("timed_out" in err)


def test_exec_file_and_stdin_and_json(runtime: RuntimeProc, tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("value = sum(range(10))\nprint('sum', value)\n")
    code, out, _ = cli(runtime, "exec", "-f", str(script), "--session", "filejob")
    assert (code, out.strip()) == (0, "sum 45")
    code, out, _ = cli(runtime, "exec", "-", "--session", "filejob", input="print(value * 2)\n")
    assert (code, out.strip()) == (0, "90")
    code, out, _ = cli(runtime, "exec", "value", "--session", "filejob", "--json")
    view = json.loads(out)
    assert code == 0 and view["status"] == "succeeded" and view["session"] == "filejob"


def test_exec_large_output_is_streamed_byte_exact(runtime: RuntimeProc) -> None:
    # More than one response's capped text (64 kB): the CLI must page the rest.
    code, out, _ = cli(runtime, "exec", "for i in range(30000): print(f'{i:07d}')")
    assert code == 0
    lines = out.splitlines()
    assert lines == [f"{i:07d}" for i in range(30000)]


def test_exec_saves_images(runtime: RuntimeProc, tmp_path: Path) -> None:
    png = ("import base64\nfrom IPython.display import Image, display\n"
           "display(Image(data=base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAA"
           "DUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')))")
    code, _, err = cli(runtime, "exec", png, "--images", str(tmp_path / "img"))
    assert code == 0, err
    saved = list((tmp_path / "img").glob("*.png"))
    assert len(saved) == 1 and saved[0].read_bytes().startswith(b"\x89PNG")
    assert "saved image" in err


def test_usage_errors_are_one_line(runtime: RuntimeProc, tmp_path: Path) -> None:
    code, _, err = cli(runtime, "exec")
    assert code == 2 and err.strip().startswith("error:") and len(err.strip().splitlines()) == 1
    code, _, err = cli(runtime, "exec", "-f", str(tmp_path / "missing.py"))
    assert code == 2 and "cannot read" in err


def test_wrong_token_and_unreachable_are_clear(runtime: RuntimeProc, tmp_path: Path) -> None:
    (tmp_path / "wrong").write_text("wrong\n")
    result = runner.invoke(app, ["probe", "--url", runtime.url, "--token-file",
                                 str(tmp_path / "wrong")])
    assert result.exit_code == 7
    assert result.stderr.count("\n") == 1 and "secret" in result.stderr.lower()
    result = runner.invoke(app, ["probe", "--url", "http://127.0.0.1:9", "--token-file", "-"],
                           input="x\n", env={"COLAB_URL": ""})
    assert result.exit_code == 6 and "cannot reach the runtime" in result.stderr


def test_jobs_list_show_output_cancel(runtime: RuntimeProc) -> None:
    code, out, _ = cli(runtime, "exec", "print('hello jobs')", "--session", "jobs", "--json")
    job_id = json.loads(out)["job_id"]
    code, out, _ = cli(runtime, "jobs", "list", "--session", "jobs", "--json")
    assert code == 0 and job_id in [j["job_id"] for j in json.loads(out)["jobs"]]
    code, out, _ = cli(runtime, "jobs", "list", "--session", "jobs")
    assert code == 0 and job_id in out
    code, out, _ = cli(runtime, "jobs", "show", job_id)
    assert code == 0 and "succeeded" in out
    code, out, _ = cli(runtime, "jobs", "output", job_id)
    assert (code, out) == (0, "hello jobs\n")
    code, out, _ = cli(runtime, "jobs", "cancel", job_id)
    assert code == 0 and "succeeded" in out  # a finished job stays as it was
    code, _, err = cli(runtime, "jobs", "show", "no-such-job")
    assert code == 2 and "no-such-job" in err


def test_vars_and_cleanup(runtime: RuntimeProc) -> None:
    assert cli(runtime, "exec", "big = list(range(1000)); small = 3", "-s", "vars")[0] == 0
    code, out, _ = cli(runtime, "vars", "-s", "vars", "--json")
    names = {v["name"]: v for v in json.loads(out)["variables"]}
    assert code == 0 and names["big"]["length"] == 1000 and "small" in names
    code, out, _ = cli(runtime, "vars", "-s", "vars")
    assert code == 0 and "big" in out
    code, out, _ = cli(runtime, "cleanup", "big", "-s", "vars", "--json")
    assert code == 0 and json.loads(out)["deleted"] == ["big"]
    code, out, _ = cli(runtime, "vars", "-s", "vars", "--json")
    assert "big" not in {v["name"] for v in json.loads(out)["variables"]}


def test_probe_table_and_json(runtime: RuntimeProc) -> None:
    code, out, _ = cli(runtime, "probe", "--json")
    probe = json.loads(out)
    assert code == 0 and probe["cpu_count"] >= 1 and probe["platform"]
    code, out, _ = cli(runtime, "probe")
    assert code == 0 and "RAM" in out and probe["python"].split()[0] in out


def test_put_ls_get_round_trip(runtime: RuntimeProc, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    code, out, err = cli(runtime, "put", str(src), "cli-files/", "--json")
    assert code == 0, err
    assert json.loads(out)["sha256"] == hashlib.sha256(data).hexdigest()
    code, _, err = cli(runtime, "put", str(src), "cli-files/blob.bin")
    assert code == 2 and "exists" in err
    code, out, _ = cli(runtime, "ls", "cli-files", "--json")
    assert [(e["name"], e["size"]) for e in json.loads(out)] == [("blob.bin", len(data))]
    code, out, _ = cli(runtime, "ls", "cli-files")
    assert code == 0 and "blob.bin" in out
    dest = tmp_path / "down"
    dest.mkdir()
    code, out, err = cli(runtime, "get", "cli-files/blob.bin", str(dest), "-q")
    assert code == 0, err
    assert (dest / "blob.bin").read_bytes() == data and "verified" in out
    code, _, err = cli(runtime, "get", "cli-files/blob.bin", str(dest / "blob.bin"))
    assert code == 2 and "exists" in err
    code, _, err = cli(runtime, "get", "cli-files/nothing.bin", str(dest))
    assert code == 2 and not (dest / "nothing.bin").exists()


def test_get_resumes_a_partial_download(runtime: RuntimeProc, tmp_path: Path) -> None:
    data = b"0123456789" * 100_000
    (runtime.root / "resume.bin").write_bytes(data)
    # A first attempt that stopped half-way leaves NAME.part + NAME.part.json.
    code, out, _ = cli(runtime, "get", "resume.bin", str(tmp_path / "full.bin"), "--json")
    etag_source = tmp_path / "full.bin"
    assert code == 0
    half = len(data) // 2
    (tmp_path / "again.bin.part").write_bytes(data[:half])
    meta = {"remote": "resume.bin", "etag": _etag(runtime), "size": len(data)}
    (tmp_path / "again.bin.part.json").write_text(json.dumps(meta))
    code, out, err = cli(runtime, "get", "resume.bin", str(tmp_path / "again.bin"), "--json")
    assert code == 0, err
    assert json.loads(out)["resumed_from"] == half
    assert (tmp_path / "again.bin").read_bytes() == etag_source.read_bytes() == data


def _etag(rt: RuntimeProc) -> str:
    import httpx2

    r = httpx2.get(f"{rt.url}/files/stat", params={"path": "resume.bin"}, headers=rt.headers)
    return str(r.json()["etag"])


def test_real_process_with_embedded_runtime(tmp_path: Path) -> None:
    """`python -m smartcolab exec` with no runtime configured uses the local daemon rooted here."""
    from support.daemons import stop_daemons_under

    work = tmp_path / "work"
    work.mkdir()
    env = subprocess_env({"SMARTCOLAB_RUNTIMES": str(tmp_path / "none.toml"),
                          "CHECKPOINT_DIR": str(tmp_path / "ckpt")})
    env.pop("COLAB_URL", None)
    try:
        proc = subprocess.run([sys.executable, "-m", "smartcolab", "exec",
                               "import os; print(os.getcwd()); raise SystemExit(3)"],
                              cwd=work, env=env, capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S)
        again = subprocess.run([sys.executable, "-m", "smartcolab", "exec", "print('again')"],
                               cwd=work, env=env, capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S)
    finally:
        stop_daemons_under(tmp_path)
    assert proc.stdout.splitlines()[0] == str(work.resolve())
    assert proc.returncode == 1, proc.stderr
    assert "started a local runtime daemon" in proc.stderr
    assert again.returncode == 0 and "started" not in again.stderr, again.stderr
    assert not list(work.glob(".smartcolab*")), "no state may be left in the working dir"


@pytest.mark.parametrize("command", [
    ["exec"], ["jobs", "list"], ["jobs", "show"], ["jobs", "cancel"], ["jobs", "output"],
    ["vars"], ["cleanup"], ["probe"], ["ls"], ["get"], ["put"], ["runtimes", "list"],
    ["runtimes", "add"], ["runtimes", "remove"], ["doctor"], ["demo"], ["tab", "open"],
])
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Example: smartcolab " + command[0] in " ".join(result.stdout.split())
