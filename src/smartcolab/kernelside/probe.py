"""Describe the machine a kernel runs on: platform, CPUs, RAM, disk, GPUs, packages.

Sent to kernels of a plain Jupyter Server, which has nothing of ours installed (our
runtime server measures this in its own process).  The result is ``Probe``-shaped.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from typing import Any

PACKAGES = ("torch", "tensorflow", "jax", "numpy", "pandas", "scikit-learn", "transformers",
            "matplotlib", "ipykernel")
GPU_QUERY = ["nvidia-smi", "--query-gpu=index,name,memory.total,memory.used,utilization.gpu",
             "--format=csv,noheader,nounits"]


def platform_name(env: dict[str, str], modules: dict[str, Any]) -> str:
    if "google.colab" in modules or "COLAB_RELEASE_TAG" in env or "COLAB_GPU" in env:
        return "colab"
    if "KAGGLE_KERNEL_RUN_TYPE" in env:
        return "kaggle"
    if os.path.exists("/.dockerenv"):
        return "docker"
    return "vm"


def memory_and_times() -> tuple[int, int, float, float]:
    """(RAM total, RAM available, boot time, this process's start time)."""
    try:
        psutil: Any = importlib.import_module("psutil")
        vm = psutil.virtual_memory()
        return (int(vm.total), int(vm.available), float(psutil.boot_time()),
                float(psutil.Process().create_time()))
    except Exception:
        total = avail = 0
        try:
            with open("/proc/meminfo") as fh:
                info = {line.split(":")[0]: int(line.split()[1]) * 1024
                        for line in fh if line.split()[1:]}
            total, avail = info.get("MemTotal", 0), info.get("MemAvailable", 0)
        except Exception:
            pass
        now = time.time()
        return total, avail, now, now


def parse_gpus(csv_text: str) -> list[dict[str, Any]]:
    """nvidia-smi's CSV (no header, no units) as ``GpuInfo``-shaped dicts."""
    gpus = []
    for line in csv_text.strip().splitlines():
        p = [x.strip() for x in line.split(",")]
        gpus.append({"index": int(p[0]), "name": p[1], "memory_total_mb": int(float(p[2])),
                     "memory_used_mb": int(float(p[3])),
                     "utilization_pct": float(p[4]) if p[4].replace(".", "").isdigit() else None})
    return gpus


def gpus() -> list[dict[str, Any]]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        query = subprocess.run(GPU_QUERY, capture_output=True, text=True, timeout=10)
        return parse_gpus(query.stdout)
    except Exception:
        return []


def packages() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        with contextlib.suppress(Exception):
            found[name] = metadata.version(name)
    return found


def probe() -> dict[str, Any]:
    """Entry point in a kernel."""
    ram_total, ram_avail, boot, started = memory_and_times()
    found = gpus()
    disk = shutil.disk_usage(os.getcwd())
    return {
        "platform": platform_name(dict(os.environ), dict(sys.modules)),
        "accelerator": "gpu" if found else "cpu",
        "python": sys.version.split()[0] + " (" + platform.python_implementation() + ")",
        "cpu_count": os.cpu_count() or 1,
        "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else [],
        "ram_total_bytes": ram_total, "ram_available_bytes": ram_avail,
        "disk_root": os.getcwd(), "disk_total_bytes": disk.total, "disk_free_bytes": disk.free,
        "gpus": found, "packages": packages(), "machine_uptime_s": time.time() - boot,
        "server_uptime_s": time.time() - started}
