"""Guarded mode's code check: what it refuses, what it lets through, what it says."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartcolab.runtime.security.guard import check_code
from smartcolab.shared.errors import Forbidden, GuardRefused


@pytest.fixture
def roots(tmp_path: Path) -> list[Path]:
    work = tmp_path / "work"
    data = tmp_path / "data"
    work.mkdir()
    data.mkdir()
    return [work, data]


REFUSED = [
    ("import os\nos.system('ls')", "os.system"),
    ("import os as o\no.popen('ls').read()", "os.popen"),
    ("from os import system as s\ns('ls')", "os.system"),
    ("os.system('rm -rf /')", "os.system"),  # os imported in an earlier cell
    ("import subprocess\nsubprocess.run(['ls'])", "subprocess.run"),
    ("import subprocess as sp\nsp.check_output('ls', shell=True)", "subprocess.check_output"),
    ("from subprocess import Popen\nPopen(['ls'])", "subprocess.Popen"),
    ("def f():\n    return subprocess.call('x')\n", "subprocess.call"),
    ("__import__('subprocess').run('ls')", "subprocess.run"),
    ("import importlib\nimportlib.import_module('os').system('x')", "os.system"),
    ("getattr(os, 'system')('x')", "os.system"),
    ("os.execvp('ls', ['ls'])", "os.execvp"),
    ("os.spawnl(os.P_WAIT, '/bin/ls')", "os.spawnl"),
    ("import pty\npty.spawn('/bin/sh')", "pty.spawn"),
    ("await asyncio.create_subprocess_shell('ls')", "create_subprocess_shell"),
    ("!ls -la", "shell commands"),
    ("files = !ls", "shell commands"),
    ("%%bash\nls\n", "%bash"),
    ("%sx ls", "%sx"),
    ("import shutil\nshutil.rmtree('/')", "root"),
    ("from shutil import rmtree\nrmtree(path='/etc')", "outside"),
    ("os.remove('/etc/passwd')", "outside"),
    ("os.unlink('../../outside.txt')", "outside"),
    ("from pathlib import Path\nPath('/etc/hosts').unlink()", "outside"),
    ("import pathlib\npathlib.Path('/tmp').rmdir()", "outside"),
    ("os.remove('~/.bashrc')", "outside"),
]


@pytest.mark.parametrize(("code", "needle"), REFUSED)
def test_refused_with_reason(code: str, needle: str, roots: list[Path]) -> None:
    with pytest.raises(GuardRefused) as info:
        check_code(code, roots)
    err = info.value
    assert isinstance(err, Forbidden) and err.status == 403 and err.code == "guard_refused"
    assert needle in err.message
    assert "not a sandbox" in err.message and "Nothing ran" in err.message
    assert err.details["refusals"][0]["line"] >= 1


def test_rmtree_of_a_root_and_of_its_parent(roots: list[Path]) -> None:
    for target in (roots[0], roots[1], roots[0].parent):
        with pytest.raises(GuardRefused, match="would delete the root"):
            check_code(f"import shutil\nshutil.rmtree({str(target)!r})", roots)
    with pytest.raises(GuardRefused, match="would delete the root"):
        check_code("import shutil\nshutil.rmtree('.')", roots)  # the kernel's cwd is root 0


ALLOWED = [
    "print(1 + 1)",
    "import os\nprint(os.listdir('.'))",
    "import os\nos.path.join('a', 'b')",
    "import shutil\nshutil.rmtree('build')",  # inside root 0
    "import shutil\nshutil.rmtree(some_variable)",  # not a literal: cannot know
    "os.remove('out/result.csv')",
    "from pathlib import Path\nPath('x.txt').unlink()",
    "%pip install requests",
    "%timeit sum(range(10))",
    "def system(x):\n    return x\nsystem('ls')",  # a user's own function
    "this is not python (",  # the kernel reports the syntax error
    "",
]


@pytest.mark.parametrize("code", ALLOWED)
def test_allowed(code: str, roots: list[Path]) -> None:
    check_code(code, roots)


def test_inside_second_root_allowed(roots: list[Path]) -> None:
    check_code(f"import os\nos.remove({str(roots[1] / 'f.txt')!r})", roots)


def test_every_refusal_is_listed(roots: list[Path]) -> None:
    code = "import os\nos.system('a')\nprint(2)\nos.popen('b')\n"
    with pytest.raises(GuardRefused) as info:
        check_code(code, roots)
    assert [r["line"] for r in info.value.details["refusals"]] == [2, 4]


def test_pathological_input_does_not_crash(roots: list[Path]) -> None:
    check_code("(" * 5000 + ")" * 5000, roots)
    check_code("x = " + "+".join(["1"] * 20000), roots)
    check_code("\x00", roots)
