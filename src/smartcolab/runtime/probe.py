"""The environment probe: what this runtime can do, answered in well under a second.

Package versions come from ``importlib.metadata`` (no import of torch or tensorflow
into the server process, which the original did, costing seconds and gigabytes).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform as _platform
import shutil
import sys
import time
from pathlib import Path
from typing import Literal

import psutil

from .. import __version__
from ..protocol import Probe
from . import resources

IMPORTANT_PACKAGES = (
    "numpy", "pandas", "scipy", "scikit-learn", "torch", "torchvision", "tensorflow",
    "jax", "jaxlib", "transformers", "datasets", "accelerate", "xgboost", "lightgbm",
    "matplotlib", "polars", "ipykernel", "jupyter_client",
)
# Colab VMs are recycled after at most ~12 hours (FACTS.md).
COLAB_MAX_VM_S = 12 * 3600.0
KAGGLE_MAX_SESSION_S = 12 * 3600.0

Platform = Literal["colab", "kaggle", "docker", "vm", "local"]


def detect_platform(environ: dict[str, str] | None = None,
                    dockerenv: Path = Path("/.dockerenv")) -> Platform:
    env = os.environ if environ is None else environ
    if "COLAB_RELEASE_TAG" in env or "COLAB_GPU" in env or "COLAB_BACKEND_VERSION" in env:
        return "colab"
    if "KAGGLE_KERNEL_RUN_TYPE" in env:
        return "kaggle"
    if dockerenv.exists() or "SMARTCOLAB_IN_DOCKER" in env:
        return "docker"
    if "SSH_CONNECTION" in env or "SMARTCOLAB_VM" in env:
        return "vm"
    return "local"


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
    plat = detect_platform()
    gpus = resources.gpus()
    ram = resources.ram()
    try:
        disk = shutil.disk_usage(working_root)
        disk_total, disk_free = int(disk.total), int(disk.free)
    except OSError:
        disk_total = disk_free = 0
    machine_uptime = max(0.0, now - psutil.boot_time())
    notes: list[str] = []
    time_left: float | None = None
    if plat == "colab":
        time_left = max(0.0, COLAB_MAX_VM_S - machine_uptime)
        notes.append("Colab time left is an estimate: 12 h per VM at most, idle runtimes "
                     "are disconnected sooner (about 90 min without notebook activity)")
    elif plat == "kaggle":
        time_left = max(0.0, KAGGLE_MAX_SESSION_S - machine_uptime)
        notes.append("Kaggle sessions last at most 12 h (9 h with a GPU on some plans)")
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    accelerator = gpus[0].name if gpus else "none"
    return Probe(
        platform=plat, accelerator=accelerator,
        python=f"{sys.version.split()[0]} ({_platform.python_implementation()})",
        cpu_count=os.cpu_count() or 1, load_avg=load,
        ram_total_bytes=ram.total, ram_available_bytes=ram.available,
        disk_root=str(working_root), disk_total_bytes=disk_total, disk_free_bytes=disk_free,
        gpus=gpus, packages=package_versions(), machine_uptime_s=round(machine_uptime, 1),
        server_uptime_s=round(now - server_started_at, 1), session_time_left_s=time_left,
        epoch=epoch, version=__version__, notes=notes,
    )
