"""The bridge journal's writes done after their caller moved on (``client/journal.py``):
in order, seen by every later read, kept on close, and a failure logged, not lost on
the next write."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from smartcolab.client.journal import Journal
from smartcolab.shared.protocol import JobView


def view(job_id: str, status: str) -> JobView:
    return JobView.model_validate({"job_id": job_id, "session": "main", "status": status,
                                   "code": "1+1", "timeout": None, "epoch": "e.1",
                                   "created_at": 1.0})


def submitted(journal: Journal, job_id: str) -> None:
    journal.record_submit(job_id=job_id, runtime="r", url="http://127.0.0.1:1", session="main",
                          code="1+1", timeout=None)


def test_a_view_and_a_cursor_do_not_wait_for_their_write_and_every_read_sees_them(
        tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    submitted(journal, "j1")
    journal._lock._lock.acquire()  # the database is busy: a write now has to wait
    try:
        def queue_writes() -> None:
            journal.record_view(view("j1", "succeeded"))
            journal.save_shown("obs", "client", "j1", 42)

        caller = threading.Thread(target=queue_writes, daemon=True)
        caller.start()
        caller.join(5)
        assert not caller.is_alive()  # both returned without waiting for the database
        read: list[object] = []
        reader = threading.Thread(target=lambda: read.append(journal.get("j1")))
        reader.start()
        reader.join(0.3)
        assert reader.is_alive() and read == []  # a read waits for the writes before it
    finally:
        journal._lock._lock.release()
    reader.join(5)
    entry = read[0]
    assert entry is not None and entry.status == "succeeded"  # type: ignore[attr-defined]
    assert journal.load_shown("obs", "client", "j1") == 42
    journal.close()


def test_writes_happen_in_the_order_they_were_asked(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    submitted(journal, "j2")
    for status in ("running", "running", "succeeded"):
        journal.record_view(view("j2", status))
    journal.record_status("j2", "cancelled")  # a direct write after the queued ones
    entry = journal.get("j2")
    assert entry is not None and entry.status == "cancelled"
    journal.close()


def test_queued_writes_are_kept_on_close(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    submitted(journal, "j3")
    journal.record_view(view("j3", "failed"))
    journal.save_shown("obs", "client", "j3", 7)
    journal.close()
    again = Journal(tmp_path)
    entry = again.get("j3")
    assert entry is not None and entry.status == "failed"
    assert again.load_shown("obs", "client", "j3") == 7
    again.close()


def test_a_failed_queued_write_is_logged_and_the_journal_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    journal = Journal(tmp_path)
    submitted(journal, "j4")
    with journal._lock:
        journal._db.execute("DROP TABLE shown")  # the next cursor write fails
    with caplog.at_level(logging.WARNING, logger="smartcolab.client.journal"):
        journal.save_shown("obs", "client", "j4", 1)
        journal.record_view(view("j4", "succeeded"))
        entry = journal.get("j4")
    assert entry is not None and entry.status == "succeeded"
    assert "a journal write failed" in caplog.text and "shown" in caplog.text
    journal.close()
