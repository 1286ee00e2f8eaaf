"""Machine resources seen from the server process: RAM, disk, GPUs via nvidia-smi.

Nothing here imports a framework: a probe must stay fast and light in the server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from dataclasses import dataclass

import psutil

from smartcolab.shared.protocol import GpuInfo

NVIDIA_SMI_TIMEOUT_S = 5.0
_GPU_QUERY = "index,name,memory.total,memory.used,utilization.gpu"


@dataclass(frozen=True)
class RamSnapshot:
    total: int
    available: int
    percent: float


_MEMINFO = "/proc/meminfo"


def ram() -> RamSnapshot:
    """Total and available RAM, as ``psutil.virtual_memory`` counts them.

    Read three times per job (the free-RAM floor, before and after): on Linux the two
    lines needed are read from /proc/meminfo directly, a fraction of psutil's cost,
    which parses and derives every field; elsewhere, or on an unusual kernel, psutil.
    """
    fast = _meminfo_ram()
    if fast is not None:
        return fast
    vm = psutil.virtual_memory()
    return RamSnapshot(total=int(vm.total), available=int(vm.available), percent=float(vm.percent))


# (path, descriptor) of the meminfo file, kept open: a read at offset 0 of a /proc file
# makes the kernel write it afresh, and saves an open and a close per reading.
_meminfo_fd: tuple[str, int] | None = None
_meminfo_lock = threading.Lock()


def _read_meminfo() -> bytes:
    global _meminfo_fd
    held = _meminfo_fd
    if held is None or held[0] != _MEMINFO:
        with _meminfo_lock:
            held = _meminfo_fd
            if held is None or held[0] != _MEMINFO:
                if held is not None:
                    os.close(held[1])
                held = _meminfo_fd = (_MEMINFO, os.open(_MEMINFO, os.O_RDONLY))
    # MemTotal, MemFree, MemAvailable are the first lines.
    return os.pread(held[1], 512, 0)


def _meminfo_ram() -> RamSnapshot | None:
    try:
        head = _read_meminfo()
    except OSError:
        return None
    total = available = 0
    for line in head.split(b"\n")[:3]:
        name, _, rest = line.partition(b":")
        if name == b"MemTotal":
            total = int(rest.split()[0]) * 1024
        elif name == b"MemAvailable":
            available = int(rest.split()[0]) * 1024
    if total <= 0 or not 0 < available <= total:
        return None  # what psutil estimates or repairs itself
    return RamSnapshot(total=total, available=available,
                       percent=round((total - available) / total * 100, 1))


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_nvidia_smi(csv_text: str) -> list[GpuInfo]:
    """Parse ``nvidia-smi --query-gpu=... --format=csv,noheader,nounits`` output."""
    gpus: list[GpuInfo] = []
    for line in csv_text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 5:
            continue
        idx, name, total, used, util = parts[:5]
        total_f, used_f = _float_or_none(total), _float_or_none(used)
        if not idx.isdigit() or total_f is None or used_f is None:
            continue
        gpus.append(GpuInfo(index=int(idx), name=name, memory_total_mb=int(total_f),
                            memory_used_mb=int(used_f), utilization_pct=_float_or_none(util)))
    return gpus


def gpus() -> list[GpuInfo]:
    """GPUs seen by ``nvidia-smi``; empty when there is none or it fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, f"--query-gpu={_GPU_QUERY}", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_nvidia_smi(out.stdout) if out.returncode == 0 else []


def gpu_memory_used_mb() -> list[int] | None:
    found = gpus()
    return [g.memory_used_mb for g in found] if found else None
