"""The chunked operations one bridge process drives, and their lifetime.

An operation runs as a task of the bridge's task group (opened and closed with the
MCP server's lifespan), not of the tool call that started it: it goes on in the
background when a call's wait budget runs out, and it is stopped (its checkpoint
``paused``, its remote batch cancelled) when the bridge closes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup
from mcp.server.mcpserver import Context

from smartcolab.mcp.chunked.build import ChunkSpec
from smartcolab.mcp.chunked.checkpoints import Checkpoint, CheckpointStore
from smartcolab.mcp.chunked.runner import ChunkedRunner, Outcome

log = logging.getLogger(__name__)

STOP_GRACE_S = 15.0


@dataclass
class RunningOp:
    """One operation driven by this bridge process."""

    name: str
    fingerprint: str
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    finished: anyio.Event = field(default_factory=anyio.Event)
    outcome: Outcome | None = None
    error: Exception | None = None
    listeners: list[Context[Any, Any]] = field(default_factory=list)
    last_progress: float = -1.0

    @property
    def done(self) -> bool:
        return self.finished.is_set()


class ChunkedOps:
    """The running operations of one bridge, by checkpoint name, in one task group."""

    def __init__(self, store: CheckpointStore, task_group: TaskGroup) -> None:
        self.store = store
        self._tg = task_group
        self.ops: dict[str, RunningOp] = {}

    def running(self, name: str) -> RunningOp | None:
        op = self.ops.get(name)
        return op if op is not None and not op.done else None

    def start(self, runner: ChunkedRunner, spec: ChunkSpec,
              prepared: tuple[Checkpoint, list[str]]) -> RunningOp:
        op = RunningOp(spec.checkpoint_name, spec.fingerprint)
        self.ops[op.name] = op
        self._tg.start_soon(self._drive, op, runner, spec, prepared, name=f"chunked:{op.name}")
        return op

    async def _drive(self, op: RunningOp, runner: ChunkedRunner, spec: ChunkSpec,
                     prepared: tuple[Checkpoint, list[str]]) -> None:
        async def progress(done: int, total: int, message: str) -> None:
            if done <= op.last_progress:
                return
            op.last_progress = done
            for ctx in list(op.listeners):
                try:
                    await ctx.report_progress(done, total, message)
                except Exception as exc:  # a listener gone away must not stop the work
                    log.debug("progress report failed: %s", exc)
                    op.listeners.remove(ctx)

        try:
            with op.scope:
                op.outcome = await runner.run(spec, progress=progress, prepared=prepared)
        except Exception as exc:  # kept for get_checkpoint; must not end the task group
            op.error = exc
        finally:
            op.finished.set()

    async def wait(self, op: RunningOp, ctx: Context[Any, Any] | None, budget: float, *,
                   stop_on_cancel: bool) -> Outcome | None:
        """Wait up to ``budget`` s; None if still running. The operation itself is not stopped
        by the wait's end; with ``stop_on_cancel`` a cancelled call stops the operation."""
        if ctx is not None:
            op.listeners.append(ctx)
        try:
            with anyio.move_on_after(budget):
                await op.finished.wait()
        except anyio.get_cancelled_exc_class():
            if stop_on_cancel and not op.done:
                await self.stop(op)
            raise
        finally:
            if ctx is not None and ctx in op.listeners:
                op.listeners.remove(ctx)
        if op.error is not None:
            raise op.error
        return op.outcome

    async def stop(self, op: RunningOp) -> None:
        """Stop ``op`` and wait (shielded, bounded) until its runner has recorded the pause."""
        op.scope.cancel()
        with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_GRACE_S):
            await op.finished.wait()

    async def aclose(self) -> None:
        """Stop every running operation (the bridge is closing)."""
        for op in list(self.ops.values()):
            if not op.done:
                await self.stop(op)
