"""The environment probe: what this runtime can do, answered in well under a second.

Package versions come from ``importlib.metadata`` (no import of torch or tensorflow
into the server process, which the original did, costing seconds and gigabytes).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform as _platform
import shutil
import sys
import time
from pathlib import Path

import psutil

from smartcolab import __version__
from smartcolab.runtime.host import resources
from smartcolab.runtime.host.platform import PlatformInfo, detect
from smartcolab.shared.protocol import GpuInfo, Probe

IMPORTANT_PACKAGES = (
    "numpy", "pandas", "scipy", "scikit-learn", "torch", "torchvision", "tensorflow",
    "jax", "jaxlib", "transformers", "datasets", "accelerate", "xgboost", "lightgbm",
    "matplotlib", "polars", "ipykernel", "jupyter_client",
)
# Colab VMs are recycled after at most ~12 hours on the free tier (docs/platforms.md).
COLAB_MAX_VM_S = 12 * 3600.0
KAGGLE_MAX_SESSION_S = 12 * 3600.0
KAGGLE_MAX_TPU_SESSION_S = 9 * 3600.0
def accelerator(gpus: list[GpuInfo], tpu: bool) -> str:
    """A short name: the GPU model (with a count when several), "TPU", or "none"."""
    if gpus:
        names = sorted({g.name for g in gpus})
        return ", ".join(names) + (f" x{len(gpus)}" if len(gpus) > 1 else "")
    return "TPU" if tpu else "none"


def runtime_age_s(now: float) -> float:
    """Seconds since this VM or container started: PID 1's start, else the boot time.

    In a container (Colab, Kaggle) the kernel's boot time is the host's; PID 1 started
    when the container did, which is what a session limit counts from.
    """
    started = float(psutil.boot_time())
    with contextlib.suppress(psutil.Error, OSError):
        started = max(started, float(psutil.Process(1).create_time()))
    return max(0.0, now - started)


def session_time_left(info: PlatformInfo, age_s: float) -> tuple[float | None, list[str]]:
    """An estimate of the session time left on a hosted notebook, with what it rests on."""
    if info.platform == "colab":
        return max(0.0, COLAB_MAX_VM_S - age_s), [
            "Colab time left is an estimate: at most ~12 h per VM on the free tier (more on "
            "paid plans), and idle runtimes are disconnected sooner (about 90 min without "
            "notebook activity). Save what matters (save_colab_variables, Drive)."]
    if info.platform == "kaggle":
        limit = KAGGLE_MAX_TPU_SESSION_S if info.tpu else KAGGLE_MAX_SESSION_S
        return max(0.0, limit - age_s), [
            f"Kaggle time left is an estimate: sessions last at most {limit / 3600:.0f} h; "
            "files outside /kaggle/working are lost when the session ends."]
    return None, []


def package_versions(names: tuple[str, ...] = IMPORTANT_PACKAGES) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def probe(*, working_root: Path, server_started_at: float, epoch: str) -> Probe:
    now = time.time()
    info = detect()
    gpus = resources.gpus()
    ram = resources.ram()
    try:
        disk = shutil.disk_usage(working_root)
        disk_total, disk_free = int(disk.total), int(disk.free)
    except OSError:
        disk_total = disk_free = 0
    age = runtime_age_s(now)
    time_left, notes = session_time_left(info, age)
    if info.detail and info.platform in ("vm", "docker"):
        notes.append(f"{info.platform}: {info.detail}")
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return Probe(
        platform=info.platform, accelerator=accelerator(gpus, info.tpu),
        python=f"{sys.version.split()[0]} ({_platform.python_implementation()})",
        cpu_count=os.cpu_count() or 1, load_avg=load,
        ram_total_bytes=ram.total, ram_available_bytes=ram.available,
        disk_root=str(working_root), disk_total_bytes=disk_total, disk_free_bytes=disk_free,
        gpus=gpus, packages=package_versions(), machine_uptime_s=round(age, 1),
        server_uptime_s=round(now - server_started_at, 1),
        session_time_left_s=None if time_left is None else round(time_left, 1),
        epoch=epoch, version=__version__, notes=notes,
    )
