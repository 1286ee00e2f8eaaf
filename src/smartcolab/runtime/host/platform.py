"""Where this runtime runs: the one platform detection (Colab, Kaggle, a container, a VM,
or a local machine), and the working directory that goes with it.

Used by the probe, ``smartcolab serve``, ``smartcolab.serve()`` and the notebook helper.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from smartcolab.shared import env as env_names

__all__ = ["WORKING_DIRS", "Platform", "PlatformInfo", "detect", "detect_platform",
           "working_dir"]

_CONTAINER_MARKERS = ("docker", "containerd", "kubepods", "libpod", "lxc")
# DMI vendor/product strings of the common clouds and hypervisors.
_VM_MARKERS = ("google compute engine", "amazon ec2", "microsoft corporation", "digitalocean",
               "hetzner", "openstack", "qemu", "kvm", "vmware", "virtualbox", "xen",
               "oracle cloud", "scaleway", "linode", "alibaba cloud", "bochs")
_TPU_ENV = ("COLAB_TPU_ADDR", "TPU_NAME", "TPU_ACCELERATOR_TYPE", "TPU_WORKER_ID")

Platform = Literal["colab", "kaggle", "docker", "vm", "local"]


@dataclass(frozen=True)
class PlatformInfo:
    """Where this runtime runs, and what that implies."""

    platform: Platform
    detail: str = ""
    tpu: bool = False


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[:4096]
    except OSError:
        return ""


def detect(environ: Mapping[str, str] | None = None, root: Path = Path("/")) -> PlatformInfo:
    """Detect the platform from environment variables and a few files under ``root``.

    Order matters: Colab and Kaggle run in containers on cloud VMs, so the hosted
    notebooks are recognised first, then containers, then VMs.
    """
    env = os.environ if environ is None else environ
    tpu = any(name in env for name in _TPU_ENV) or any((root / "dev").glob("accel[0-9]*"))
    if "COLAB_RELEASE_TAG" in env or "COLAB_GPU" in env or "COLAB_BACKEND_VERSION" in env:
        return PlatformInfo("colab", env.get("COLAB_RELEASE_TAG", ""), tpu)
    if "KAGGLE_KERNEL_RUN_TYPE" in env:
        return PlatformInfo("kaggle", env.get("KAGGLE_KERNEL_RUN_TYPE", ""), tpu)
    if env_names.IN_DOCKER in env or (root / ".dockerenv").exists():
        return PlatformInfo("docker", "docker", tpu)
    if (root / "run" / ".containerenv").exists():
        return PlatformInfo("docker", "podman", tpu)
    cgroup = _read(root / "proc" / "1" / "cgroup").lower()
    marker = next((m for m in _CONTAINER_MARKERS if m in cgroup), None)
    if marker:
        return PlatformInfo("docker", marker, tpu)
    dmi = root / "sys" / "class" / "dmi" / "id"
    vendor = " ".join(_read(dmi / name).strip() for name in ("sys_vendor", "product_name"))
    if any(m in vendor.lower() for m in _VM_MARKERS):
        return PlatformInfo("vm", vendor.strip(), tpu)
    if "SSH_CONNECTION" in env or env_names.ON_VM in env:
        return PlatformInfo("vm", "reached over ssh", tpu)
    return PlatformInfo("local", "", tpu)


def detect_platform(environ: Mapping[str, str] | None = None, root: Path = Path("/")) -> Platform:
    return detect(environ, root).platform


# The directory a hosted notebook's files live in (and survive in, on Kaggle).
WORKING_DIRS: dict[Platform, Path] = {"colab": Path("/content"),
                                      "kaggle": Path("/kaggle/working")}


def working_dir(environ: Mapping[str, str] | None = None, root: Path = Path("/")) -> Path:
    """The default working root: /content on Colab, /kaggle/working on Kaggle (when they
    exist), else the current directory."""
    place = WORKING_DIRS.get(detect_platform(environ, root))
    if place is not None and (root / place.relative_to("/")).is_dir():
        return place
    return Path.cwd().resolve()
