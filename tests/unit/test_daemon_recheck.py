"""client/local/daemon.py: ``still_running`` re-reads the runtime file only when it changed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from smartcolab.client.local import daemon
from smartcolab.shared.local_daemon import RUNTIME_FILE
from smartcolab.shared.private import write_private_json


@pytest.fixture
def pid() -> Iterator[int]:
    """A live process to name as the daemon (never this one: teardowns stop daemons)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(10)


def _write(directory: Path, url: str, pid: int) -> daemon.DaemonInfo:
    write_private_json(directory / RUNTIME_FILE, {"url": url, "pid": pid, "secret": "s" * 32})
    info = daemon.read_info(directory)
    assert info is not None
    return info


def test_unchanged_file_is_not_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          pid: int) -> None:
    info = _write(tmp_path, "http://127.0.0.1:1111", pid)
    reads: list[Path] = []
    real = daemon.read_info

    def counted(directory: Path) -> daemon.DaemonInfo | None:
        reads.append(directory)
        return real(directory)

    monkeypatch.setattr(daemon, "read_info", counted)
    assert daemon.still_running(info) and daemon.still_running(info)
    assert len(reads) == 1  # the second call saw the same file by its stat
    _write(tmp_path, "http://127.0.0.1:2222", pid)  # another daemon took the directory over
    reads.clear()
    assert not daemon.still_running(info)
    assert len(reads) == 1  # a new file (a new inode): read again
    (tmp_path / RUNTIME_FILE).unlink()
    assert not daemon.still_running(info)
