"""The SQLite checkpoint store: compare-and-set batches, failures, and a writer killed mid-flight."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smartcolab.mcp.chunked.checkpoints import CheckpointStore
from smartcolab.shared.errors import Conflict, NotFound
from support.runtime_proc import subprocess_env


def make(store: CheckpointStore, name: str = "op", total: int = 100, **kw: object) -> None:
    store.create(name, fingerprint="fp", inputs={"n": total}, run_id="r1", total=total,
                 batch_size=10, runtime="local", session="main", owner="me", **kw)  # type: ignore[arg-type]


def test_batches_advance_only_in_order_and_failures_never_advance(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    make(store)
    ok = store.record_batch("op", start=0, stop=10, done=10, job_id="j0", output="hello\n",
                            wall_s=0.5, body_s=0.25, broke=False,
                            values=[(k, json.dumps(k * k), False) for k in range(10)])
    assert ok
    # The same batch again (a retried record) and a batch past a gap are both refused.
    assert not store.record_batch("op", start=0, stop=10, done=10, job_id="j0", output="",
                                  wall_s=0, body_s=0, broke=False, values=[])
    assert not store.record_batch("op", start=20, stop=30, done=10, job_id="j2", output="",
                                  wall_s=0, body_s=0, broke=False, values=[])
    store.update("op", pending_job="j1", pending_start=10, pending_kind="batch")
    store.record_failure("op", {"failed_index": 13, "traceback": "Traceback..."})
    cp = store.require("op")
    assert (cp.completed, cp.status, cp.attempt, cp.pending_job) == (10, "failed", 1, None)
    assert cp.last_error == {"failed_index": 13, "traceback": "Traceback..."}
    assert store.values("op")[3] == (3, 9, False)
    assert store.timings("op") == {"batches": 1, "wall_s": 0.5, "body_s": 0.25}
    assert store.batches("op")[0].output_tail == "hello\n"
    # The successful retry resets the attempt counter and clears the error.
    assert store.record_batch("op", start=10, stop=20, done=10, job_id="j1b", output="",
                              wall_s=0.1, body_s=0.1, broke=False, values=[])
    cp = store.require("op")
    assert (cp.completed, cp.attempt, cp.last_error, cp.status) == (20, 0, None, "running")


def test_break_and_last_batch_finish_the_operation(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    make(store, "brk", total=100)
    store.record_batch("brk", start=0, stop=10, done=4, job_id="j", output="", wall_s=0,
                       body_s=0, broke=True, values=[])
    cp = store.require("brk")
    assert (cp.status, cp.completed, cp.broke_at) == ("done", 4, 3)
    make(store, "end", total=15)
    store.record_batch("end", start=0, stop=10, done=10, job_id="a", output="", wall_s=0,
                       body_s=0, broke=False, values=[])
    store.record_batch("end", start=10, stop=15, done=5, job_id="b", output="", wall_s=0,
                       body_s=0, broke=False, values=[])
    assert store.require("end").status == "done"


def test_create_delete_list_and_names_are_the_only_key(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    make(store, "a")
    with pytest.raises(Conflict):
        make(store, "a")
    make(store, "b")
    store.record_batch("a", start=0, stop=10, done=10, job_id="j", output="", wall_s=0,
                       body_s=0, broke=False, values=[(0, "1", False)])
    make(store, "a", replace=True)
    assert store.require("a").completed == 0 and store.values("a") == []
    assert {c.name for c in store.all()} == {"a", "b"}
    assert store.delete("a") and not store.delete("a")
    with pytest.raises(NotFound):
        store.require("a")
    # A second store on the same directory (another process after a restart) sees the data.
    assert CheckpointStore(tmp_path).require("b").total == 100
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".sqlite3"] == ["checkpoints.sqlite3"]


_WRITER = """
import json, sys
from pathlib import Path
from smartcolab.mcp.chunked.checkpoints import CheckpointStore
store = CheckpointStore(Path(sys.argv[1]))
store.create("k", fingerprint="f", inputs={}, run_id="r", total=10**9, batch_size=5,
             runtime=None, session=None, owner=None)
print("ready", flush=True)
start = 0
while True:
    store.update("k", pending_job=f"j{start}", pending_start=start, pending_kind="batch")
    store.record_batch("k", start=start, stop=start + 5, done=5, job_id=f"j{start}",
                       output="x" * 3000, wall_s=0.01, body_s=0.005, broke=False,
                       values=[(i, json.dumps([i] * 20), False) for i in range(start, start + 5)])
    start += 5
"""


def test_writer_killed_at_random_moments_leaves_a_consistent_store(tmp_path: Path) -> None:
    for delay in (0.15, 0.3, 0.45):
        d = tmp_path / f"run{delay}"
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(d)], env=subprocess_env(),
                                stdout=subprocess.PIPE)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        store = CheckpointStore(d)
        cp = store.require("k")
        assert cp.completed > 0 and cp.completed % 5 == 0
        assert store.timings("k")["batches"] * 5 == cp.completed
        assert store.count_values("k") == cp.completed
        # pending is either cleared by the last batch or names exactly the next one.
        assert cp.pending_job in (None, f"j{cp.completed}")
        store.close()
