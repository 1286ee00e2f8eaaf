"""Chunked operations fanned out over a Dask cluster (``engine="dask"``), same checkpoint.

Batches are Dask futures (``chunked_dask_task.run_batch``), several in flight at once.
They finish in any order, but the checkpoint only ever advances over a contiguous
prefix, exactly like the single-kernel path:

* a finished batch is first written to ``dask_batches`` (same SQLite file, its own
  table, keyed by checkpoint name, run id and batch start), then every batch that now
  starts where the checkpoint stands is moved into the checkpoint with
  ``record_batch`` (compare-and-set: never counted twice, never skipped);
* a worker that dies mid-batch: Dask runs the batch again on another worker (its
  partial work is discarded, since nothing is recorded before the batch returns);
* a bridge that dies: finished batches are in ``dask_batches``; the next call records
  them and submits only the batches that never finished.

Limits, said in the docs too: a running Dask task cannot be interrupted, so
``batch_timeout`` makes the bridge give up on a batch (failed, ``timed_out``) while
the worker thread runs on; ``setup_code`` runs once per worker process and must be
plain Python (no ``%magics``); batches run in parallel, so a body must not depend on
state left by earlier indices, and after a ``break`` later batches may already have
run (their values are discarded).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any, cast

from smartcolab.client.backend import RuntimeBackend
from smartcolab.mcp.chunked.build import ChunkSpec, build_batch, marker_for, parse_report
from smartcolab.mcp.chunked.checkpoints import Checkpoint, CheckpointStore
from smartcolab.mcp.chunked.runner import ChunkedRunner, Outcome, ProgressFn, batch_job_id
from smartcolab.shared.errors import InvalidInput, RuntimeUnreachable
from smartcolab.shared.sqlite import open_db

DEFAULT_CONNECT_TIMEOUT_S = 30.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS dask_batches (
    name TEXT NOT NULL, run_id TEXT NOT NULL, start INTEGER NOT NULL, stop INTEGER NOT NULL,
    result TEXT NOT NULL, wall_s REAL NOT NULL, PRIMARY KEY (name, run_id, start))
"""


class DaskRunner(ChunkedRunner):
    """Runs a chunked operation's batches on a Dask cluster; records them like the kernel path."""

    def __init__(self, store: CheckpointStore, *, scheduler: str,
                 batch_timeout: float | None = None, in_flight: int | None = None,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S) -> None:
        if not scheduler.startswith(("tcp://", "tls://", "ws://", "wss://", "inproc://")):
            raise InvalidInput(f"scheduler {scheduler[:100]!r} must be a Dask scheduler address "
                               "such as tcp://10.0.0.5:8786")
        # No runtime client: the batches run on Dask workers, not in a kernel.
        super().__init__(store, cast(RuntimeBackend, None), runtime=f"dask:{scheduler}",
                         session="dask", batch_timeout=batch_timeout)
        self.scheduler = scheduler
        self.in_flight = in_flight
        self.connect_timeout = connect_timeout
        # Its own connection to the checkpoint database, for the side table of batches
        # that finished out of order.
        self._db = open_db(store.path)
        self._db.execute(_SCHEMA)

    # ------------------------------------------------------------ the side table
    def _finished(self, cp: Checkpoint) -> dict[int, tuple[int, dict[str, Any], float]]:
        self._db.execute("DELETE FROM dask_batches WHERE name = ? AND run_id != ?",
                         (cp.name, cp.run_id))
        rows = self._db.execute("SELECT start, stop, result, wall_s FROM dask_batches WHERE "
                                "name = ? AND run_id = ?", (cp.name, cp.run_id)).fetchall()
        return {int(r[0]): (int(r[1]), json.loads(r[2]), float(r[3])) for r in rows}

    def _keep(self, cp: Checkpoint, start: int, stop: int, result: dict[str, Any],
              wall: float) -> None:
        self._db.execute("INSERT OR REPLACE INTO dask_batches VALUES (?, ?, ?, ?, ?, ?)",
                         (cp.name, cp.run_id, start, stop, json.dumps(result), wall))

    def _drain(self, spec: ChunkSpec, notes: list[str]) -> Outcome | None:
        """Move finished batches that continue the checkpoint into it, in order."""
        name = spec.checkpoint_name
        while True:
            cp = self.store.require(name)
            if cp.status != "running" or cp.completed >= cp.total:
                return None
            row = self._db.execute("SELECT stop, result, wall_s FROM dask_batches WHERE name = ? "
                                   "AND run_id = ? AND start = ?",
                                   (name, cp.run_id, cp.completed)).fetchone()
            if row is None:
                return None
            start, stop, result, wall = cp.completed, int(row[0]), json.loads(row[1]), float(row[2])
            failed = self._record(spec, cp, start, stop, result, wall, notes)
            self._db.execute("DELETE FROM dask_batches WHERE name = ? AND run_id = ? AND start = ?",
                             (name, cp.run_id, start))
            if failed is not None:
                return failed

    def _record(self, spec: ChunkSpec, cp: Checkpoint, start: int, stop: int,
                result: dict[str, Any], wall: float, notes: list[str]) -> Outcome | None:
        job_id = batch_job_id(cp, start)
        report, stdout = parse_report(result.get("stdout", ""), marker_for(job_id))
        error = result.get("error")
        if error is None and report is not None:
            self.store.record_batch(
                spec.checkpoint_name, start=start, stop=stop, done=report.done, job_id=job_id,
                output=stdout, wall_s=wall, body_s=report.elapsed_s, broke=report.broke,
                values=[(i, json.dumps(v), r) for i, v, r in report.values])
            return None
        what = "setup_code" if result.get("setup_failed") else "loop_code"
        status = "timed_out" if result.get("timed_out") else "failed"
        self.store.record_failure(spec.checkpoint_name, {
            "what": what, "job_id": job_id, "status": status, "batch_start": start,
            "batch_stop": stop, "failed_index": report.failed if report else None,
            "iterations_run_in_batch": report.done if report else None,
            "ename": error.get("ename") if error else None,
            "evalue": error.get("evalue") if error else None,
            "traceback": ((report.traceback if report and report.traceback else None)
                          or "".join(error.get("traceback", []) if error else []))[-4000:],
            "output": stdout[-4000:], "message": result.get("message"), "state_lost": False,
            "worker": result.get("worker")})
        where = (f"at index {report.failed}" if report and report.failed is not None
                 else f"in batch {start}-{stop - 1}")
        return Outcome("failed", self.store.require(spec.checkpoint_name), [
            *notes, f"the loop {status} {where} on Dask worker {result.get('worker')}; the "
            f"checkpoint stays at {self.store.require(spec.checkpoint_name).completed}/"
            f"{spec.n_iterations}. Fix the cause, then call again with the same inputs."])

    # ------------------------------------------------------------ the loop
    async def _drive(self, spec: ChunkSpec, cp: Checkpoint, notes: list[str],
                     progress: ProgressFn | None) -> Outcome:
        import cloudpickle
        from distributed import Client

        from smartcolab.kernelside.chunked import dask_task as chunked_dask_task

        # Workers need nothing of ours installed: the task travels by value.
        cloudpickle.register_pickle_by_value(chunked_dask_task)
        name = spec.checkpoint_name
        self.store.update(name, pending_job=None, pending_start=None, pending_kind=None,
                          setup_epoch="dask")
        try:
            pending = Client(  # type: ignore[no-untyped-call]
                self.scheduler, asynchronous=True, timeout=self.connect_timeout,
                set_as_default=False)
            client = await asyncio.wait_for(pending, self.connect_timeout + 5)
        except (OSError, asyncio.TimeoutError) as exc:
            raise RuntimeUnreachable(f"cannot reach the Dask scheduler at {self.scheduler} "
                                     f"({type(exc).__name__}: {exc}); check the address and "
                                     "that the scheduler runs.",
                                     details={"scheduler": self.scheduler}) from exc
        try:
            return await self._fan_out(client, spec, notes, progress)
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    async def _fan_out(self, client: Any, spec: ChunkSpec, notes: list[str],
                       progress: ProgressFn | None) -> Outcome:
        from smartcolab.kernelside.chunked.dask_task import run_batch

        name = spec.checkpoint_name
        failed = self._drain(spec, notes)
        if failed is not None:
            return failed
        cp = self.store.require(name)
        done_starts = set(self._finished(cp))
        if done_starts:
            notes.append(f"{len(done_starts)} batch(es) finished before the last call ended "
                         "were used, not run again")
        queue = [s for s in range(cp.completed, cp.total, cp.batch_size) if s not in done_starts]
        window = self.in_flight or 2 * (len(client.scheduler_info()["workers"]) or 1)
        key = f"{name}-{cp.run_id}-{spec.fingerprint[:12]}"
        started: dict[asyncio.Task[Any], tuple[int, int, float, Any]] = {}

        def submit(start: int) -> None:
            stop = min(start + cp.batch_size, cp.total)
            program = build_batch(spec, start, stop, marker=marker_for(batch_job_id(cp, start)))
            fut = client.submit(run_batch, key, spec.setup_code, program, pure=False,
                                key=f"sc-{batch_job_id(cp, start)}")
            started[asyncio.ensure_future(_await(fut))] = (start, stop, time.monotonic(), fut)

        while queue and len(started) < window:
            submit(queue.pop(0))
        try:
            while started:
                task = await self._next(started)
                start, stop, t0, fut = started.pop(task)
                result = await self._result(task, fut, start, stop)
                self._keep(cp, start, stop, result, time.monotonic() - t0)
                failed = self._drain(spec, notes)
                if failed is not None:
                    return failed
                cp = self.store.require(name)
                if cp.status != "running":
                    break  # done (maybe by a break): the rest is not needed
                if queue:
                    submit(queue.pop(0))
                if progress is not None:
                    await progress(cp.completed, cp.total,
                                   f"{cp.completed}/{cp.total} iterations ({name}, Dask)")
        finally:
            for task, (_, _, _, fut) in started.items():
                task.cancel()
                with contextlib.suppress(Exception):
                    await fut.cancel()
        cp = self.store.require(name)
        if cp.broke_at is not None:
            notes.append(f"the loop body ran 'break' at index {cp.broke_at}: the operation "
                         "ended there (batches after it may have run on other workers; their "
                         "values were discarded)")
        return Outcome("done" if cp.status == "done" else "failed", cp, notes, False)

    async def _next(self, started: dict[asyncio.Task[Any], tuple[int, int, float, Any]]
                    ) -> asyncio.Task[Any]:
        """The next finished batch; one past ``batch_timeout`` counts as finished."""
        timeout = None
        if self.batch_timeout is not None:
            oldest = min(t0 for _, _, t0, _ in started.values())
            timeout = max(0.01, oldest + self.batch_timeout - time.monotonic())
        done, _ = await asyncio.wait(started, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if done:
            return min(done, key=lambda t: started[t][0])
        return min(started, key=lambda t: started[t][2])

    async def _result(self, task: asyncio.Task[Any], fut: Any, start: int,
                      stop: int) -> dict[str, Any]:
        if not task.done():  # given up on by batch_timeout: Dask cannot interrupt it
            task.cancel()
            with contextlib.suppress(Exception):
                await fut.cancel()
            return {"stdout": "", "timed_out": True, "error": {
                "ename": "TimeoutError", "evalue": f"batch {start}-{stop - 1} ran longer than "
                f"batch_timeout ({self.batch_timeout} s); Dask cannot interrupt a running task, "
                "so its worker thread may still be busy", "traceback": []}}
        try:
            result: dict[str, Any] = task.result()
        except Exception as exc:  # e.g. KilledWorker: the batch killed every worker it tried
            return {"stdout": "", "error": {"ename": type(exc).__name__, "evalue": str(exc),
                                            "traceback": []},
                    "message": "Dask gave up on this batch (its workers died while running it)"}
        return result

    def close(self) -> None:
        self._db.close()


async def _await(fut: Any) -> Any:
    return await fut
