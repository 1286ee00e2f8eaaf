"""The kernel-side job agent, in process: a real IPython shell, real spill files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from smartcolab.kernelside import job_agent as ja


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch) -> Any:
    from IPython.core.interactiveshell import InteractiveShell

    sh = InteractiveShell.instance()
    # As in ipykernel: displays and results go to IOPub, not to sys.stdout.
    monkeypatch.setattr(sh.display_pub, "publish", lambda *a, **k: None)
    monkeypatch.setattr(sh.displayhook, "write_output_prompt", lambda: None)
    monkeypatch.setattr(sh.displayhook, "write_format_data", lambda *a, **k: None)
    return sh


def _agent(tmp_path: Path) -> ja.Agent:
    return ja.Agent(str(tmp_path / "jobs"), grace_s=1.0, repeat_s=0.25, margin_s=0.0,
                    epoch="tok")


def _files(tmp_path: Path, job_id: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    d = tmp_path / "jobs" / job_id
    text = "".join(p.read_text() for p in sorted(d.glob("out-*.txt")))
    return (json.loads((d / ja.STATUS).read_text()), json.loads((d / ja.RESULT).read_text()),
            text)


def test_output_in_order_state_shared_and_status(shell: Any, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ja, "SEGMENT_CHARS", 10)  # many small segments
    agent = _agent(tmp_path)
    code = ("import sys\nfrom IPython.display import display\nshared_x = 41\nprint('one')\n"
            "print('two', file=sys.stderr)\ndisplay({'a': 1}, raw=False)\nprint('three')\n"
            "shared_x + 1")
    agent.run("j-1", code, timeout=60, session="main")
    status, result, text = _files(tmp_path, "j-1")
    assert shell.user_ns["shared_x"] == 41  # ran in the shell's namespace, as a cell
    assert text.index("one") < text.index("two") < text.index("{'a': 1}") < text.index("three")
    assert text.rstrip().endswith("42")
    assert len(list((tmp_path / "jobs" / "j-1").glob("out-*.txt"))) == -(-len(text) // 10)
    assert status["state"] == "ended" and status["total_chars"] == len(text)
    assert status["ending"] == {"kind": "completed", "reason": None, "failed": False}
    assert status["finished_at"] >= status["started_at"] and status["epoch"] == "tok"
    assert result["stdout"]["text"] == "one\nthree\n" and result["stderr"]["text"] == "two\n"
    assert [o["type"] for o in result["outputs"]] == ["display_data", "execute_result"]
    assert agent.summary("j-1") == ja.Agent.summary_of(status)


def test_an_error_is_recorded_and_the_run_ends(shell: Any, tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    agent.run("j-2", "print('before')\n1/0", timeout=None)
    status, result, text = _files(tmp_path, "j-2")
    assert status["ending"]["failed"] is True and status["ending"]["kind"] == "completed"
    assert result["error"]["ename"] == "ZeroDivisionError" and "before" in text


def test_an_interrupt_is_a_timeout_past_the_deadline_else_a_cancel(shell: Any,
                                                                   tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    agent.run("j-3", "raise KeyboardInterrupt", timeout=0.0)
    assert _files(tmp_path, "j-3")[0]["ending"] == {
        "kind": "interrupted", "reason": "timed_out", "failed": True}
    agent.run("j-4", "raise KeyboardInterrupt", timeout=600)
    assert _files(tmp_path, "j-4")[0]["ending"]["reason"] == "cancelled"


def test_magics_work(shell: Any, tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    agent.run("j-5", "%config InteractiveShell.colors\nmagic_ok = 1", timeout=None)
    assert shell.user_ns["magic_ok"] == 1
    assert _files(tmp_path, "j-5")[0]["ending"]["failed"] is False


def test_capped_keeps_head_and_tail() -> None:
    cap = ja.Capped(limit=10)
    for ch in "abcdefghijklmnop":
        cap.add(ch)
    block = cap.block()
    assert block["truncated"] and block["total_chars"] == 16
    assert block["text"].startswith("abcde") and block["text"].endswith("lmnop")
    small = ja.Capped(limit=10)
    small.add("hi")
    assert small.block() == {"text": "hi", "total_chars": 2, "truncated": False}


def test_status_writes_are_atomic(tmp_path: Path) -> None:
    path = str(tmp_path / "s.json")
    ja.write_json(path, {"a": 1})
    ja.write_json(path, {"a": 2})
    assert ja.read_json(path) == {"a": 2} and [p.name for p in tmp_path.iterdir()] == ["s.json"]
    (tmp_path / "bad.json").write_text("{half")
    assert ja.read_json(str(tmp_path / "bad.json")) is None


def test_a_job_id_runs_once(shell: Any, tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    agent.run("j-6", "runs = globals().get('runs', 0) + 1", timeout=None)
    agent.run("j-6", "runs = globals().get('runs', 0) + 1", timeout=None)  # a resent request
    assert shell.user_ns["runs"] == 1
    assert (agent.summary("j-6") or {}).get("duplicate") is True


def test_the_running_job_is_named_per_kernel_process(shell: Any, tmp_path: Path) -> None:
    # Every kernel of a server shares the root: each watchdog must read only its own file.
    import os

    agent = _agent(tmp_path)
    agent.run("j-7", f"import os\nseen = sorted(os.listdir({agent.root!r}))", timeout=None)
    assert f"active-{os.getpid()}.json" in shell.user_ns["seen"]
    assert not list((tmp_path / "jobs").glob("active-*.json"))  # removed when the job ends
