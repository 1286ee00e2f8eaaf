"""The baseline of every latency bench: ``1+1`` on a bare kernel driven by jupyter_client."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def raw_kernel(prefix: str, extra_arguments: tuple[str, ...] = ()) -> Iterator[tuple[Any, Any]]:
    """A ready python3 kernel over ipc in a private temporary folder: (manager, client).
    ``extra_arguments``: the kernel's command-line options (e.g. the ones the runtime
    gives its kernels, for a baseline whose kernel does the same work)."""
    from jupyter_client.manager import KernelManager

    with tempfile.TemporaryDirectory(prefix=prefix, dir="/tmp") as tmp:
        km = KernelManager(kernel_name="python3", transport="ipc", ip=f"{tmp}/k",
                           connection_file=f"{tmp}/kernel.json")
        km.start_kernel(extra_arguments=list(extra_arguments))
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            yield km, kc
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)


def raw_samples(kc: Any, calls: int) -> list[float]:
    """Seconds per execute('1+1') -> execute_reply, one per call."""
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        reply = kc.execute_interactive("1+1", timeout=30, output_hook=lambda msg: None)
        out.append(time.perf_counter() - t0)
        assert reply["content"]["status"] == "ok"
    return out


def ms(samples: list[float], digits: int = 3) -> float:
    """The median in milliseconds."""
    return round(statistics.median(samples) * 1000, digits)
