"""Chunked operations against real runtime servers on loopback (real kernels, real jobs)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from smartcolab.client.http.client import RuntimeClient
from smartcolab.mcp.chunked.build import make_spec
from smartcolab.mcp.chunked.checkpoints import CheckpointStore
from smartcolab.mcp.chunked.runner import ChunkedRunner, batch_job_id
from smartcolab.shared.errors import Conflict
from smartcolab.shared.protocol import JobSubmit
from support.runtime_proc import RuntimeProc, start_runtime, subprocess_env

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(runtime: RuntimeProc) -> AsyncIterator[RuntimeClient]:
    async with RuntimeClient(runtime.url, runtime.secret) as c:
        yield c


async def remote(client: RuntimeClient, code: str, session: str = "main") -> str:
    """Run a helper snippet and return its stdout."""
    view = await client.submit(JobSubmit(job_id=f"t-{uuid.uuid4().hex}", code=code,
                                         session=session), wait=30)
    assert view.status == "succeeded", view
    assert view.result is not None
    return view.result.stdout.text


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


NESTED = """
# accumulate with nested blocks; every line below must be inside the loop
sq = i * i
if i % 2 == 0:
    for j in range(3):
        if j == 1:
            continue
        acc_{v} += j
else:
    acc_{v} += sq
    if i % 7 == 0:
        pass   # comment inside a nested block
n_{v} += 1
"""


async def test_multiline_nested_body_computes_the_right_totals(client: RuntimeClient,
                                                               tmp_path: Path) -> None:
    v = uuid.uuid4().hex[:6]
    body = NESTED.format(v=v)
    spec = make_spec(checkpoint_name=uniq("nested"), loop_code=body, n_iterations=53,
                     batch_size=7, setup_code=f"acc_{v} = 0\nn_{v} = 0", collect=f"acc_{v}")
    progress: list[tuple[int, int]] = []

    async def on_progress(done: int, total: int, message: str) -> None:
        progress.append((done, total))

    store = CheckpointStore(tmp_path)
    with anyio.fail_after(60):
        out = await ChunkedRunner(store, client, runtime="t").run(spec, progress=on_progress)
    ns: dict[str, Any] = {f"acc_{v}": 0, f"n_{v}": 0}
    expected = []
    for i in range(53):
        ns["i"] = i
        exec(body, ns)
        expected.append((i, ns[f"acc_{v}"], False))
    assert out.status == "done" and out.setup_ran
    assert await remote(client, f"print(acc_{v}, n_{v})") == f"{ns[f'acc_{v}']} 53\n"
    assert store.values(spec.checkpoint_name) == expected
    assert progress[-1] == (53, 53) and [d for d, _ in progress] == sorted({d for d, _ in progress})
    assert out.checkpoint.completed == 53 and store.timings(spec.checkpoint_name)["batches"] == 8
    # Called again with the same inputs: a no-op that runs nothing.
    again = await ChunkedRunner(store, client, runtime="t").run(spec)
    assert again.status == "done" and not again.setup_ran


async def test_failure_at_37_keeps_checkpoint_at_30_then_resumes_after_the_fix(
        client: RuntimeClient, tmp_path: Path) -> None:
    v = uuid.uuid4().hex[:6]
    # The "fix" is remote state: the same inputs resume once the condition is gone.
    spec = make_spec(
        checkpoint_name=uniq("fail37"), n_iterations=100, batch_size=10,
        setup_code=f"res_{v} = {{}}\nbroken_{v} = True",
        loop_code=f"""
            print("working on", i)
            if i == 37 and broken_{v}:
                raise ValueError("cannot handle 37")
            res_{v}[i] = i * 3
        """, collect="i * 3")
    store = CheckpointStore(tmp_path)
    runner = ChunkedRunner(store, client, runtime="t")
    with anyio.fail_after(60):
        out = await runner.run(spec)
    cp = out.checkpoint
    assert out.status == "failed" and cp.completed == 30 and cp.status == "failed"
    err = cp.last_error or {}
    assert err["failed_index"] == 37 and (err["batch_start"], err["batch_stop"]) == (30, 40)
    assert err["ename"] == "ValueError" and "cannot handle 37" in err["traceback"]
    assert "raise ValueError('cannot handle 37')" in err["traceback"]
    assert "working on 37" in err["output"] and "__smartcolab_batch__" not in err["output"]
    assert any("index 37" in n for n in out.notes)
    assert [i for i, _, _ in store.values(cp.name)] == list(range(30))

    await remote(client, f"broken_{v} = False")
    with anyio.fail_after(60):
        out = await runner.run(spec)
    assert out.status == "done" and not out.setup_ran
    assert any("resuming after iteration 29" in n for n in out.notes)
    assert [v for _, v, _ in store.values(cp.name)] == [k * 3 for k in range(100)]
    assert await remote(client, f"print(sum(res_{v}.values()))") == f"{3 * sum(range(100))}\n"
    tail = store.batches(cp.name, last=1)[0].output_tail
    assert tail.startswith("working on 90") and tail.endswith("working on 99\n")


async def test_changed_inputs_refused_unless_restart_and_zero_iterations(
        client: RuntimeClient, tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    runner = ChunkedRunner(store, client, runtime="t")
    name = uniq("inputs")
    first = make_spec(checkpoint_name=name, loop_code="x_in = i", n_iterations=4, batch_size=2)
    assert (await runner.run(first)).status == "done"
    changed = make_spec(checkpoint_name=name, loop_code="x_in = i", n_iterations=6,
                        batch_size=2)
    with pytest.raises(Conflict, match="n_iterations changed"):
        await runner.run(changed)
    out = await runner.run(changed, restart=True)
    assert out.status == "done" and out.checkpoint.completed == 6
    assert any("discarded" in n for n in out.notes)
    zero = make_spec(checkpoint_name=uniq("zero"), loop_code="raise SystemError", n_iterations=0,
                     batch_size=5, setup_code="raise SystemError")
    out = await runner.run(zero)
    assert out.status == "done" and out.checkpoint.completed == 0 and not out.setup_ran


async def test_break_ends_the_operation(client: RuntimeClient, tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    spec = make_spec(checkpoint_name=uniq("brk"), loop_code="if i == 23:\n    break",
                     n_iterations=100, batch_size=10, collect="i")
    out = await ChunkedRunner(store, client, runtime="t").run(spec)
    assert out.status == "done" and out.checkpoint.broke_at == 23
    assert out.checkpoint.completed == 24 and store.count_values(spec.checkpoint_name) == 24


async def test_concurrent_operations_with_different_names(client: RuntimeClient,
                                                          tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    specs = [make_spec(checkpoint_name=uniq(f"conc{k}"), n_iterations=30, batch_size=4,
                       setup_code=f"tot_{k} = 0", loop_code=f"tot_{k} += i * {k + 1}",
                       collect=f"tot_{k}") for k in range(3)]
    runners = [ChunkedRunner(store, client, runtime="t") for _ in specs]
    with anyio.fail_after(60):
        outs = await asyncio.gather(*(r.run(s) for r, s in zip(runners, specs, strict=True)))
    for k, (spec, out) in enumerate(zip(specs, outs, strict=True)):
        assert out.status == "done"
        assert store.values(spec.checkpoint_name)[-1][1] == sum(range(30)) * (k + 1)
    with pytest.raises(Conflict, match="different inputs"):
        await runners[0].run(make_spec(checkpoint_name=specs[0].checkpoint_name,
                                       loop_code="pass", n_iterations=30, batch_size=4))


async def test_runtime_restart_between_calls_reruns_setup(tmp_path: Path) -> None:
    root, state = tmp_path / "root", tmp_path / "state"
    store = CheckpointStore(tmp_path / "cp")
    spec = make_spec(
        checkpoint_name="restart", n_iterations=40, batch_size=10,
        setup_code="import os\nbase = 1000\nvals = {}",
        loop_code="if i == 25 and os.path.exists('stop-here'):\n    raise RuntimeError('stop')\n"
                  "vals[i] = base + i", collect="vals[i]")
    (root).mkdir()
    (root / "stop-here").write_text("")
    proc = start_runtime(root, state_dir=state)
    try:
        async with RuntimeClient(proc.url, proc.secret) as c:
            with anyio.fail_after(60):
                out = await ChunkedRunner(store, c, runtime="t").run(spec)
        assert out.status == "failed" and out.checkpoint.completed == 20
    finally:
        proc.stop()
    (root / "stop-here").unlink()
    proc = start_runtime(root, state_dir=state)
    try:
        async with RuntimeClient(proc.url, proc.secret) as c:
            with anyio.fail_after(60):
                out = await ChunkedRunner(store, c, runtime="t").run(spec)
    finally:
        proc.stop()
    assert out.status == "done" and out.setup_ran
    assert any("setup_code ran again" in n for n in out.notes)
    assert store.values("restart") == [(i, 1000 + i, False) for i in range(40)]


_DRIVER = """
import asyncio, sys
from pathlib import Path
from smartcolab.mcp.chunked.checkpoints import CheckpointStore
from smartcolab.mcp.chunked.build import make_spec
from smartcolab.mcp.chunked.runner import ChunkedRunner, batch_job_id
from smartcolab.client.http.client import RuntimeClient

async def main():
    url, secret, cpdir, name, body = sys.argv[1:6]
    spec = make_spec(checkpoint_name=name, loop_code=body, n_iterations=100, batch_size=10)
    async with RuntimeClient(url, secret) as c:
        await ChunkedRunner(CheckpointStore(Path(cpdir)), c, runtime="t").run(spec)

asyncio.run(main())
"""


async def test_bridge_killed_mid_batch_resumes_exactly(runtime: RuntimeProc,
                                                       client: RuntimeClient,
                                                       tmp_path: Path) -> None:
    counter = f"runs-{uuid.uuid4().hex[:8]}.txt"
    body = (f"with open({counter!r}, 'a') as f:\n    f.write(f'{{i}}\\n')\n"
            "import time\ntime.sleep(0.02)")
    name = uniq("killed")
    proc = subprocess.Popen([sys.executable, "-c", _DRIVER, runtime.url, runtime.secret,  # noqa: ASYNC220 - returns at once
                             str(tmp_path), name, body], env=subprocess_env())
    db = tmp_path / "checkpoints.sqlite3"
    count_file = runtime.root / counter
    deadline = time.monotonic() + 60
    try:
        while True:  # kill it while the batch after the third one runs on the runtime
            assert time.monotonic() < deadline and proc.poll() is None
            row = None
            with contextlib.suppress(sqlite3.OperationalError), sqlite3.connect(db) as conn:
                row = conn.execute("SELECT completed, pending_job FROM checkpoints "
                                   "WHERE name = ?", (name,)).fetchone()
            runs = count_file.read_text().split() if count_file.exists() else []
            if row and row[0] >= 30 and row[1] and len(runs) >= row[0] + 3:
                break
            await anyio.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    store = CheckpointStore(tmp_path)
    cp = store.require(name)
    assert cp.pending_job and cp.completed < 100
    spec = make_spec(checkpoint_name=name, loop_code=body, n_iterations=100, batch_size=10)
    with anyio.fail_after(60):
        out = await ChunkedRunner(store, client, runtime="t").run(spec)
    assert out.status == "done" and out.checkpoint.completed == 100
    assert any("not run again" in n for n in out.notes), out.notes
    runs = count_file.read_text().split()
    assert runs == [str(i) for i in range(100)]  # each index exactly once, in order


async def test_batch_recorded_as_pending_but_never_submitted_runs_once(
        runtime: RuntimeProc, client: RuntimeClient, tmp_path: Path) -> None:
    """The state a bridge killed between recording a batch's job id and submitting it leaves."""
    counter = f"runs-{uuid.uuid4().hex[:8]}.txt"
    body = f"with open({counter!r}, 'a') as f:\n    f.write(f'{{i}}\\n')"
    store = CheckpointStore(tmp_path)
    runner = ChunkedRunner(store, client, runtime="t")
    spec = make_spec(checkpoint_name=uniq("pend"), loop_code=body, n_iterations=20,
                     batch_size=5)
    cp, _ = runner.prepare(spec)
    store.update(cp.name, pending_job=batch_job_id(cp, 0), pending_start=0, pending_kind="batch")
    with anyio.fail_after(60):
        out = await runner.run(spec)
    assert out.status == "done"
    assert any("never reached the runtime" in n for n in out.notes), out.notes
    assert (runtime.root / counter).read_text().split() == [str(i) for i in range(20)]


async def test_a_pending_batch_that_was_cancelled_says_it_runs_again(
        runtime: RuntimeProc, client: RuntimeClient, tmp_path: Path) -> None:
    """A pending batch whose job was cancelled with its call is run again, and said so."""
    counter = f"runs-{uuid.uuid4().hex[:8]}.txt"
    body = f"with open({counter!r}, 'a') as f:\n    f.write(f'{{i}}\\n')"
    store = CheckpointStore(tmp_path)
    runner = ChunkedRunner(store, client, runtime="t")
    spec = make_spec(checkpoint_name=uniq("recancel"), loop_code=body, n_iterations=10,
                     batch_size=5)
    cp, _ = runner.prepare(spec)
    job_id = batch_job_id(cp, 0)
    await client.submit(JobSubmit(job_id=job_id, code="import time\ntime.sleep(30)",
                                  session="main",
                                  timeout=60))
    await client.cancel_job(job_id)
    store.update(cp.name, pending_job=job_id, pending_start=0, pending_kind="batch")
    with anyio.fail_after(60):
        out = await runner.run(spec)
    assert out.status == "done", out.notes
    assert any(job_id in n and "runs again" in n for n in out.notes), out.notes
    assert not any("not run again" in n for n in out.notes), out.notes
    assert (runtime.root / counter).read_text().split() == [str(i) for i in range(10)]


async def test_cancelled_run_is_paused_then_resumes(client: RuntimeClient, tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    v = uuid.uuid4().hex[:6]
    # From index 10 on, iterations wait at a gate opened only for the resumed run: the
    # batch the cancel interrupts cannot finish first (it did, on a loaded machine).
    gate = tmp_path / "gate"
    loop_code = (f"import os, time\nwhile i >= 10 and not os.path.exists({str(gate)!r}):\n"
                 f"    time.sleep(0.02)\ntime.sleep(0.05)\nout_{v}[i] = -i")
    spec = make_spec(checkpoint_name=uniq("cancel"), n_iterations=30, batch_size=5,
                     setup_code=f"out_{v} = {{}}", loop_code=loop_code, collect="-i")
    reached = asyncio.Event()

    async def on_progress(done: int, total: int, message: str) -> None:
        if done >= 10:
            reached.set()

    task = asyncio.create_task(ChunkedRunner(store, client, runtime="t").run(
        spec, progress=on_progress))
    with anyio.fail_after(30):
        await reached.wait()
    await anyio.sleep(0.1)  # into the next batch
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    cp = store.require(spec.checkpoint_name)
    assert cp.status == "paused" and 10 <= cp.completed < 30
    if cp.pending_job:  # the interrupted batch was cancelled on the runtime, not left running
        view = await client.get_job(cp.pending_job)
        assert view.status == "cancelled"
    gate.touch()
    with anyio.fail_after(60):
        out = await ChunkedRunner(store, client, runtime="t").run(spec)
    assert out.status == "done"
    assert store.values(spec.checkpoint_name) == [(i, -i, False) for i in range(30)]
