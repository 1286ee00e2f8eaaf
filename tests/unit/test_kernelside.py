"""Kernel-side modules run in process: their functions on plain namespace dicts, and the
cells that ``shared/kernel_code.py`` builds from their source, executed as a kernel would."""

from __future__ import annotations

import ast
import builtins
import contextlib
import hashlib
import io
import json
import pickle
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from smartcolab.kernelside import (
    boot,
    cleanup,
    epoch,
    files,
    namespace,
    persist,
    prepare,
    probe,
    variables,
)
from smartcolab.kernelside.chunked import report as chunked
from smartcolab.shared import kernel_code
from smartcolab.shared.errors import KernelUnavailable
from smartcolab.shared.protocol import CleanupReport, PersistManifest, Probe, VariableInfo

KERNELSIDE = Path(kernel_code.__file__).parents[1] / "kernelside"


class Array:
    """Looks like a numpy array to the describer (shape, dtype, nbytes)."""

    shape = (3, 4)
    dtype = "float32"
    nbytes = 48


def user_ns() -> tuple[dict[str, Any], dict[str, Any]]:
    hidden_value = object()
    ns: dict[str, Any] = {"x": 21, "name": "abc", "items": [1, 2, 3], "arr": Array(),
                          "_private": 1, "json": json, "In": hidden_value,
                          "f": lambda: 1}
    return ns, {"In": hidden_value}


def run_cell(cell: str) -> str:
    """Execute a cell as IPython would (a fresh globals dict), returning its stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(cell, "<cell>", "exec"), {"__builtins__": builtins})
    return out.getvalue()


def test_every_kernelside_module_imports_only_the_standard_library() -> None:
    for path in KERNELSIDE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                assert top == "__future__" or top in sys.stdlib_module_names, (path.name, name)


def test_variables_of_a_namespace() -> None:
    ns, hidden = user_ns()
    listed = {v["name"]: v for v in variables.list_variables(ns, hidden, private=False)}
    assert list(listed) == sorted(listed) == ["arr", "f", "items", "name", "x"]
    assert listed["x"]["type"] == "int" and listed["x"]["preview"] == "21"
    assert listed["items"]["length"] == 3 and listed["items"]["size_bytes"] > 0
    assert listed["arr"]["shape"] == [3, 4] and listed["arr"]["dtype"] == "float32"
    assert listed["arr"]["size_bytes"] == 48 and "preview" not in listed["arr"]
    assert listed["arr"]["type"].endswith("test_kernelside.Array")
    assert listed["f"] == {"name": "f", "type": "function"}
    for info in listed.values():
        VariableInfo.model_validate(info)
    private = {v["name"] for v in variables.list_variables(ns, hidden, private=True)}
    assert {"_private", "json"} <= private and "In" not in private


def test_cleanup_deletes_only_what_was_asked() -> None:
    ns, hidden = user_ns()
    flushed: list[bool] = []
    ip = types.SimpleNamespace(user_ns=ns, user_ns_hidden=hidden,
                               displayhook=types.SimpleNamespace(flush=lambda: flushed.append(True)))
    report = cleanup.clean(ip, reset=False, names=["x", "In", "nope"])
    CleanupReport(session="s", epoch="e", **report)
    assert report["deleted"] == ["x"] and "x" not in ns and "In" in ns
    assert "not a user variable, left alone: In" in report["notes"]
    assert "not a user variable, left alone: nope" in report["notes"]
    assert flushed == [True] and report["collected_objects"] >= 0
    reset = cleanup.clean(ip, reset=True, names=[])
    assert sorted(reset["deleted"]) == ["arr", "f", "items", "name"]
    assert set(ns) == {"_private", "json", "In"}


def test_persist_round_trip(tmp_path: Path) -> None:
    ns, hidden = user_ns()
    del ns["f"]  # a lambda needs cloudpickle, which the test extra may not have
    ns["gen"] = (i for i in range(3))  # cannot be pickled by anyone
    manifest = persist.save_namespace(ns, hidden, directory=str(tmp_path), snapshot="snap",
                                      names=[], session="main", epoch="e1")
    checked = PersistManifest.model_validate(manifest)
    assert {v.name for v in checked.variables} == {"arr", "items", "name", "x"}
    assert [f.name for f in checked.failed] == ["gen"]
    assert (tmp_path / "snap" / "manifest.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders
    fresh: dict[str, Any] = {}
    report = persist.restore_namespace(fresh, directory=str(tmp_path), snapshot="snap",
                                       names=["x", "items", "missing"])
    assert fresh == {"x": 21, "items": [1, 2, 3]}
    assert report["restored"] == ["items", "x"] or report["restored"] == ["x", "items"]
    assert report["failed"] == [{"name": "missing", "error": "not in this snapshot"}]
    assert report["saved_epoch"] == "e1"


def test_persist_with_the_standard_pickle_skips_notebook_functions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(persist, "pickler", lambda: (pickle, "pickle protocol 5", False))

    def helper() -> int:
        return 1

    helper.__module__ = "__main__"
    manifest = persist.save_namespace({"helper": helper, "n": 1}, {}, directory=str(tmp_path),
                                      snapshot="s", names=[], session="main", epoch="e")
    assert [s["name"] for s in manifest["skipped"]] == ["helper"]
    assert [v["name"] for v in manifest["variables"]] == ["n"]
    asked = persist.save_namespace({"n": 1}, {}, directory=str(tmp_path), snapshot="s",
                                   names=["n", "gone"], session="main", epoch="e")
    assert asked["failed"] == [{"name": "gone", "error": "no such variable in this session"}]


def test_probe_fits_the_wire_model() -> None:
    found = probe.probe()
    checked = Probe(**found, epoch="e", version="v")
    assert checked.cpu_count >= 1 and checked.platform in ("colab", "kaggle", "docker", "vm")
    assert probe.platform_name({"COLAB_GPU": "1"}, {}) == "colab"
    assert probe.platform_name({"KAGGLE_KERNEL_RUN_TYPE": "x"}, {}) == "kaggle"
    gpus = probe.parse_gpus("0, NVIDIA A100, 40960, 1024, 37\n1, T4, 15360, 0, [N/A]\n")
    assert gpus[0] == {"index": 0, "name": "NVIDIA A100", "memory_total_mb": 40960,
                       "memory_used_mb": 1024, "utilization_pct": 37.0}
    assert gpus[1]["utilization_pct"] is None


def test_epoch_token_is_kept_in_builtins() -> None:
    vars(builtins).pop(epoch.NAME, None)
    try:
        first = epoch.epoch()
        assert first == epoch.epoch() and len(first) == 12
        assert eval(kernel_code.EPOCH_EXPRESSION) == first
        vars(builtins).pop(epoch.NAME)
        assert epoch.epoch() != first  # a new process draws a new token
    finally:
        vars(builtins).pop(epoch.NAME, None)


def test_sha256(tmp_path: Path) -> None:
    data = b"x" * (files.CHUNK + 5)
    (tmp_path / "f").write_bytes(data)
    assert files.sha256(str(tmp_path / "f")) == {"sha256": hashlib.sha256(data).hexdigest(),
                                                 "size": len(data)}


def test_chunked_report_line() -> None:
    batch = {"start": 0, "stop": 2, "done": 2, "values": [(0, 1.5), (1, object())],
             "broke": False, "failed": None, "elapsed_s": 0.1, "traceback": None}
    line = chunked.report_line(batch, "M", cap=100)
    assert line.startswith("\nM ")
    parsed = json.loads(line[3:])
    assert parsed["values"][0] == [0, 1.5, False]
    assert parsed["values"][1][2] is True and parsed["values"][1][1].startswith("<object")
    assert chunked.encode("x" * 50, cap=10) == (json.dumps(repr("x" * 50)[:10]), True)
    g = {"_sc_batch": 1, "_sc_k": 2, "keep": 3}
    with contextlib.redirect_stdout(io.StringIO()):
        chunked.report(g, batch, "M", 100)
    assert g == {"keep": 3}


def test_bounded_writes_flush_every_n_characters() -> None:
    flushed: list[int] = []

    class Stream:
        def __init__(self) -> None:
            self.parts: list[str] = []

        def write(self, text: str) -> int:
            self.parts.append(text)
            return len(text)

        def flush(self) -> None:
            flushed.append(sum(map(len, self.parts)))

    prepare.bound_writes(Stream, 10)
    stream = Stream()
    stream.write("abc")
    assert flushed == []
    stream.write("x" * 25)  # longer than 10: split into pieces, each counted
    assert all(len(p) <= 10 for p in stream.parts) and "".join(stream.parts) == "abc" + "x" * 25
    assert flushed == [13, 23]


def test_bundle_orders_dependencies_first() -> None:
    assert [name for name, _ in kernel_code.bundle("variables")] == ["namespace", "variables"]
    assert [name for name, _ in kernel_code.bundle("epoch")] == ["epoch"]
    assert kernel_code.source("epoch") == (KERNELSIDE / "epoch.py").read_text()
    # a subpackage's module: its relative imports of the package above and of its own
    assert [name for name, _ in kernel_code.bundle("tab.agent")] == [
        "boot", "epoch", "job_agent", "tab.execute", "tab.jobs", "tab.agent"]
    assert kernel_code.source("tab.watchdog") == (KERNELSIDE / "tab" / "watchdog.py").read_text()
    assert kernel_code._siblings("tab.watchdog") == []  # sent alone, run as a script


def test_subpackages_are_docstrings_only() -> None:
    """In a kernel, boot.load makes a subpackage as an empty module: its __init__ never runs."""
    for init in KERNELSIDE.rglob("__init__.py"):
        body = ast.parse(init.read_text()).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr), init


def test_relative_imports_resolve_against_the_module_s_package(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sources = {"tab.x": "from . import y\nfrom ..epoch import epoch\n",
               "tab.bad": "from ...boot import load\n"}
    monkeypatch.setattr(kernel_code, "source", sources.__getitem__)
    assert kernel_code._siblings("tab.x") == ["tab.y", "epoch"]
    with pytest.raises(ValueError, match="leaves kernelside"):
        kernel_code._siblings("tab.bad")


def test_the_cells_run_in_a_python_without_smartcolab(tmp_path: Path) -> None:
    """The point of kernelside: a kernel needs nothing of ours installed.  A Python without
    site-packages (``-I -S``: smartcolab is not importable there) runs an entry point's
    cell and the colab tab's setup cell; the agent it installs then runs a job (its thread
    mode, ``tab.execute`` + ``job_agent``) and serves a subpackage's entry point
    (``tab.files``) through control cells, as on a Colab page."""
    from smartcolab.client.colabtab import cells

    (tmp_path / "f").write_bytes(b"hello")
    poll, poll_nonce = cells.control_cell({"op": "poll", "job_id": "j1", "wait": 30})
    stat, stat_nonce = cells.control_cell({"op": "call", "module": "tab.files",
                                           "function": "stat",
                                           "args": {"path": str(tmp_path / "f"),
                                                    "with_hash": True}})
    program = "\n".join([
        "try:\n    import smartcolab\nexcept ImportError:\n    print('no smartcolab')",
        kernel_code.call("files", "sha256", {"path": str(tmp_path / "f")}),
        cells.setup_cell(str(tmp_path / "jobs")),
        "__smartcolab_tab__.start('j1', 'print(6 * 7)', 30.0, 'main')",
        poll, stat])
    done = subprocess.run([sys.executable, "-I", "-S", "-c", program], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "no smartcolab"
    answers = [json.loads(x[len(kernel_code.MARKER):]) for x in lines
               if x.startswith(kernel_code.MARKER)]
    assert answers[0] == {"sha256": hashlib.sha256(b"hello").hexdigest(), "size": 5}
    assert answers[1]["root"] == str(tmp_path / "jobs")  # the agent installed
    job = cells.answer(done.stdout, poll_nonce)
    assert job["status"]["state"] == "ended" and "42" in job["text"], job
    assert cells.answer(done.stdout, stat_nonce)["value"]["sha256"] == (
        hashlib.sha256(b"hello").hexdigest())


def test_a_cell_runs_an_entry_point_and_leaves_nothing_behind(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"hello")
    cell = kernel_code.call("files", "sha256", {"path": str(tmp_path / "f")})
    before = set(sys.modules)
    result = kernel_code.parse(run_cell(cell))
    assert result == {"sha256": hashlib.sha256(b"hello").hexdigest(), "size": 5}
    assert set(sys.modules) == before  # the private package was removed again


def test_a_cell_with_relative_imports_runs_from_source() -> None:
    ns, hidden = user_ns()
    shell = types.SimpleNamespace(user_ns=ns, user_ns_hidden=hidden)
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell  # type: ignore[attr-defined]
    saved = sys.modules.get("IPython")
    sys.modules["IPython"] = ipython
    try:
        out = run_cell(kernel_code.call("variables", "variables", {"private": False}))
    finally:
        if saved is not None:
            sys.modules["IPython"] = saved
        else:
            sys.modules.pop("IPython", None)
    listed = kernel_code.parse(out)
    assert [v["name"] for v in listed] == ["arr", "f", "items", "name", "x"]
    assert boot.PACKAGE not in sys.modules


def test_a_failing_entry_point_still_unloads() -> None:
    with pytest.raises(FileNotFoundError):
        run_cell(kernel_code.call("files", "sha256", {"path": "/nonexistent/file"}))
    assert boot.PACKAGE not in sys.modules and f"{boot.PACKAGE}.files" not in sys.modules


def test_parse_and_expression_value() -> None:
    assert kernel_code.parse(f"noise\n{kernel_code.MARKER}[1, 2]\n") == [1, 2]
    with pytest.raises(KernelUnavailable):
        kernel_code.parse("no marker here")
    reply = {"user_expressions": {"e": {"status": "ok", "data": {"text/plain": "'ab12'"}}}}
    assert kernel_code.expression_value(reply, "e") == "ab12"
    assert kernel_code.expression_value({"user_expressions": {"e": {"status": "error"}}},
                                        "e") is None
    assert kernel_code.expression_value({}, "e") is None


def test_namespace_helpers() -> None:
    assert namespace.type_name(1) == "int" and namespace.type_name(Array()).endswith(".Array")
    rss = namespace.rss()
    assert rss is None or rss > 0
