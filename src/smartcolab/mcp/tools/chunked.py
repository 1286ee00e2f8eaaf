"""Tools for chunked operations: run_chunked_operation, get_checkpoint, list_checkpoints,
delete_checkpoint.

An operation runs as a task of the bridge (``mcp/chunked/ops.py``, opened with the
server's lifespan), so it goes on in the background when a tool call's wait budget
runs out; the call returns ``running`` and ``get_checkpoint`` waits for it or shows
where it is.  Cancelling the tool call (MCP cancellation) stops the operation and its
running batch; it resumes later from the last recorded batch.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from mcp.types import CallToolResult, TextContent
from pydantic import Field

from smartcolab.mcp.annotations import DELETES_LOCAL, READS_LOCAL, RUNS
from smartcolab.mcp.chunked.build import make_spec
from smartcolab.mcp.chunked.checkpoints import Checkpoint, CheckpointStore
from smartcolab.mcp.chunked.dask_runner import DaskRunner
from smartcolab.mcp.chunked.runner import DEFAULT_BATCH_TIMEOUT_S, ChunkedRunner
from smartcolab.mcp.deps import BridgeContext, BridgeDeps, deps_of
from smartcolab.mcp.params import RuntimeName, SessionName, ToolDef
from smartcolab.mcp.results import cap_text
from smartcolab.mcp.tool_errors import to_tool_error, translated
from smartcolab.shared.errors import Conflict, SmartColabError
from smartcolab.shared.protocol import NAME_PATTERN

log = logging.getLogger(__name__)

PREVIEW_VALUES = 10

CheckpointName = Annotated[str, Field(pattern=NAME_PATTERN)]
Wait = Annotated[float | None, Field(
    ge=0, le=3600, description="Seconds to wait, at most about 50 s; 0: at once.")]


def _values_text(values: list[tuple[int, Any, bool]]) -> str:
    return ", ".join(f"[{i}] {v if r else repr(v)}" for i, v, r in values)


def describe(store: CheckpointStore, cp: Checkpoint, *, live: bool, notes: list[str],
             max_chars: int, values_offset: int = 0, values_limit: int = PREVIEW_VALUES,
             ) -> CallToolResult:
    """The text and structured view of a checkpoint that every tool here returns."""
    status = "running" if live else cp.status
    interrupted = cp.status == "running" and not live
    n_values = store.count_values(cp.name)
    if values_offset == 0 and values_limit == PREVIEW_VALUES and n_values > PREVIEW_VALUES:
        values_offset = n_values - PREVIEW_VALUES  # a preview shows the latest values
    values = store.values(cp.name, offset=values_offset, limit=values_limit)
    batches = store.batches(cp.name, last=3)
    timing = store.timings(cp.name)
    lines = [f"checkpoint {cp.name!r}: {status}, {cp.completed}/{cp.total} iterations done "
             f"(batches of {cp.batch_size}, runtime {cp.runtime}, session {cp.session})"]
    lines += [f"note: {n}" for n in notes]
    nxt: str
    if live:
        nxt = (f"still running in the background; call get_checkpoint(name={cp.name!r}, wait=50) "
               "to wait for it, or delete_checkpoint to stop and discard it")
    elif interrupted or cp.status == "paused":
        nxt = ("stopped before the end (bridge restarted or call cancelled): call "
               "run_chunked_operation again with the same inputs to resume where it stopped")
    elif cp.status == "failed":
        nxt = ("fix the cause, then call run_chunked_operation again with the same inputs to "
               "retry from the failed batch (restart=true starts over from 0)")
    else:
        nxt = "complete: read results with get_checkpoint(values_offset=..., values_limit=...)"
    lines.append(f"next: {nxt}")
    err = cp.last_error if cp.status in ("failed", "paused") else None
    if err:
        where = (f"at index {err['failed_index']}" if err.get("failed_index") is not None
                 else f"in {err.get('what')}")
        lines.append(f"error {where} (job {err.get('job_id')}, {err.get('status')}): "
                     f"{err.get('ename')}: {err.get('evalue')}")
        if err.get("traceback"):
            lines.append("traceback:\n" + str(err["traceback"]))
        if err.get("output"):
            lines.append("output before the error:\n" + str(err["output"]))
    if cp.broke_at is not None:
        lines.append(f"the loop ended with 'break' at index {cp.broke_at}")
    if timing["batches"]:
        per = (timing["wall_s"] - timing["body_s"]) / timing["batches"]
        lines.append(f"timing: {timing['batches']} batches, {timing['wall_s']:.2f} s in total, "
                     f"{timing['body_s']:.2f} s in the loop body, {per * 1000:.1f} ms overhead "
                     "per batch")
    if values:
        lines.append(f"collected values {values[0][0]}..{values[-1][0]} of {n_values}: "
                     + _values_text(values))
    if batches and batches[-1].output_tail.strip():
        b = batches[-1]
        lines.append(f"output of the last batch ({b.start}-{b.stop - 1}):\n{b.output_tail}")
    text, _ = cap_text("\n".join(lines), max_chars)
    structured = {
        "checkpoint": cp.name, "status": status, "completed": cp.completed, "total": cp.total,
        "batch_size": cp.batch_size, "runtime": cp.runtime, "session": cp.session,
        "interrupted": interrupted, "broke_at": cp.broke_at, "next": nxt, "notes": notes,
        "error": err, "values_count": n_values,
        "values": [{"index": i, "value": v, "is_repr": r} for i, v, r in values],
        "last_batches": [{"start": b.start, "stop": b.stop, "job_id": b.job_id,
                          "wall_s": round(b.wall_s, 4), "body_s": round(b.body_s, 4),
                          "output_tail": b.output_tail[-1000:]} for b in batches],
        "timing": timing,
    }
    return CallToolResult(content=[TextContent(type="text", text=text)],
                          structured_content=structured, is_error=status == "failed")


def show(deps: BridgeDeps, cp: Checkpoint, notes: list[str], **kw: Any) -> CallToolResult:
    ops = deps.chunked
    return describe(ops.store, cp, live=ops.running(cp.name) is not None, notes=notes,
                    max_chars=deps.settings.max_result_chars, **kw)


async def run_chunked_operation(
    loop_code: Annotated[str, Field(min_length=1, description=(
        "Loop body for each index (continue, break allowed)."))],
    n_iterations: Annotated[int, Field(ge=0, description="Indices 0..n-1 are run.")],
    checkpoint_name: CheckpointName,
    ctx: BridgeContext,
    batch_size: Annotated[int, Field(ge=1, le=1_000_000, description=(
        "Iterations per remote job."))] = 100,
    setup_code: Annotated[str, Field(description=(
        "Run first and whenever the runtime lost its variables."))] = "",
    index_var: Annotated[str, Field(description="Index variable name.")] = "i",
    collect: Annotated[str | None, Field(description=(
        "Expression kept after each iteration, e.g. 'loss'."))] = None,
    restart: Annotated[bool, Field(description="Discard the checkpoint, start at 0.")] = False,
    batch_timeout: Annotated[float | None, Field(gt=0, description=(
        "Seconds one batch may run."))] = DEFAULT_BATCH_TIMEOUT_S,
    wait: Wait = None,
    session: SessionName = "main",
    runtime: RuntimeName = None,
    dask_scheduler: Annotated[str | None, Field(max_length=300, description=(
        "A Dask scheduler (tcp://HOST:8786) to run independent iterations on, "
        "setup_code per worker."))] = None,
) -> CallToolResult:
    """Run a loop in batches with a local checkpoint: loop_code for index_var =
    0..n_iterations-1, batch_size per job, collect values kept per good batch. A failing
    batch stops it (index, traceback); the same inputs resume after the last good batch,
    even after restarts (changed inputs need restart=true). Rerunning an index must be
    harmless. Follow with get_checkpoint.
    """
    deps = deps_of(ctx)
    ops = deps.chunked
    with translated(runtime):
        spec = make_spec(checkpoint_name=checkpoint_name, loop_code=loop_code,
                         n_iterations=n_iterations, batch_size=batch_size,
                         setup_code=setup_code, index_var=index_var, collect=collect)
        notes: list[str] = []
        op = ops.running(checkpoint_name)
        if op is not None:
            if restart or op.fingerprint != spec.fingerprint:
                raise Conflict(
                    f"checkpoint {checkpoint_name!r} is running now with other inputs or "
                    "restart=true was asked: wait for it with get_checkpoint, or stop and "
                    "discard it with delete_checkpoint first.",
                    details={"checkpoint": checkpoint_name})
            notes.append("already running in the background: waiting for it")
        elif dask_scheduler is not None:
            fan_out = DaskRunner(ops.store, scheduler=dask_scheduler,
                                 batch_timeout=batch_timeout)
            op = ops.start(fan_out, spec, fan_out.prepare(spec, restart=restart))
        else:
            rt, client = await deps.registry.client(runtime)
            runner = ChunkedRunner(ops.store, client, runtime=rt.name, session=session,
                                   batch_timeout=batch_timeout)
            # Changed inputs are refused here, before anything starts.
            op = ops.start(runner, spec, runner.prepare(spec, restart=restart))
        budget = deps.settings.wait_budget_s if wait is None else min(wait, deps.settings.wait_budget_s)
        outcome = await ops.wait(op, ctx, budget, stop_on_cancel=True)
        if outcome is not None:
            notes += outcome.notes
        return show(deps, ops.store.require(checkpoint_name), notes)


async def get_checkpoint(
    name: CheckpointName, ctx: BridgeContext, wait: Wait = 0,
    values_offset: Annotated[int, Field(ge=0, description=(
        "First value to return (default: the latest)."))] = 0,
    values_limit: Annotated[int, Field(ge=1, le=10_000)] = PREVIEW_VALUES,
) -> CallToolResult:
    """A chunked operation's status, progress, collected values (paged), last output,
    error, timing; waits only if `wait` is given.
    """
    deps = deps_of(ctx)
    ops = deps.chunked
    with translated():
        cp = ops.store.require(name)
        notes: list[str] = []
        op = ops.running(name)
        if op is not None and wait:
            outcome = await ops.wait(op, ctx, min(wait, deps.settings.wait_budget_s),
                                     stop_on_cancel=False)
            if outcome is not None:
                notes += outcome.notes
        elif name in ops.ops and ops.ops[name].done:
            finished = ops.ops[name]
            if finished.outcome is not None:
                notes += finished.outcome.notes
            elif finished.error is not None:
                exc = finished.error
                notes.append(to_tool_error(exc).args[0] if isinstance(exc, SmartColabError)
                             else f"the operation stopped: {exc!r}")
        return show(deps, ops.store.require(cp.name), notes, values_offset=values_offset,
                    values_limit=values_limit)


async def list_checkpoints(ctx: BridgeContext) -> CallToolResult:
    """Chunked-operation checkpoints on this machine: name, status, progress."""
    ops = deps_of(ctx).chunked
    items = [{**cp.summary(), "status": "running" if ops.running(cp.name) else cp.status}
             for cp in ops.store.all()]
    text = "\n".join(f"{c['name']}: {c['status']} {c['completed']}/{c['total']} "
                     f"(runtime {c['runtime']})" for c in items) or "no checkpoints"
    return CallToolResult(content=[TextContent(type="text", text=text)],
                          structured_content={"checkpoints": items})


async def delete_checkpoint(name: CheckpointName, ctx: BridgeContext) -> CallToolResult:
    """Delete a checkpoint and its values, stopping its operation; runtime variables
    stay."""
    ops = deps_of(ctx).chunked
    with translated():
        op = ops.running(name)
        if op is not None:
            await ops.stop(op)
        deleted = ops.store.delete(name)
        text = (f"checkpoint {name!r} deleted" + (" (its running operation was stopped)"
                                                  if op else "")
                if deleted else f"no checkpoint named {name!r}")
        return CallToolResult(content=[TextContent(type="text", text=text)],
                              structured_content={"checkpoint": name, "deleted": deleted})


TOOLS = [
    ToolDef(run_chunked_operation, None, RUNS),
    ToolDef(get_checkpoint, None, READS_LOCAL),
    ToolDef(list_checkpoints, None, READS_LOCAL),
    ToolDef(delete_checkpoint, None, DELETES_LOCAL),
]
