"""A background sampler of RAM, CPU and GPU use, kept for the last minutes.

The /ui page draws its charts from ``GET /resources``; sampling in the server (not
on request) means the history is there when the page opens, and one sampler serves
any number of open pages.  A sample costs a psutil call and, where there is a GPU,
one ``nvidia-smi`` run in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

import psutil

from smartcolab.runtime.host import resources
from smartcolab.shared.protocol import GpuSample, ResourceHistory, ResourceSample

DEFAULT_INTERVAL_S = 2.0
DEFAULT_WINDOW_S = 600.0


class ResourceSampler:
    """Samples every ``interval_s`` into a ring buffer covering ``window_s``."""

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S,
                 window_s: float = DEFAULT_WINDOW_S) -> None:
        self.interval_s = interval_s
        self.window_s = window_s
        self._samples: deque[ResourceSample] = deque(maxlen=max(1, int(window_s / interval_s)))
        self._gpu_names: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def sample_now(self) -> ResourceSample:
        """Take one sample (blocking: runs nvidia-smi where there is one)."""
        vm = psutil.virtual_memory()
        found = resources.gpus()
        self._gpu_names = [g.name for g in found]
        sample = ResourceSample(
            t=time.time(),
            cpu_percent=float(psutil.cpu_percent(interval=None)),
            ram_used_bytes=int(vm.total - vm.available),
            ram_total_bytes=int(vm.total),
            gpus=[GpuSample(index=g.index, memory_used_mb=g.memory_used_mb,
                            memory_total_mb=g.memory_total_mb,
                            utilization_pct=g.utilization_pct) for g in found],
        )
        self._samples.append(sample)
        return sample

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await asyncio.to_thread(self.sample_now)

    async def start(self) -> None:
        # cpu_percent(None) measures since its previous call: prime it, then sample.
        psutil.cpu_percent(interval=None)
        await asyncio.to_thread(self.sample_now)
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def history(self, since: float = 0.0) -> ResourceHistory:
        """Samples newer than ``since`` (unix time), oldest first."""
        return ResourceHistory(
            interval_s=self.interval_s, window_s=self.window_s, gpu_names=list(self._gpu_names),
            samples=[s for s in self._samples if s.t > since],
        )
