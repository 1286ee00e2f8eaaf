"""Platform awareness: detection from environment and files, accelerator, time left."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from smartcolab.runtime.host.platform import PlatformInfo, detect, working_dir
from smartcolab.runtime.host.probe import (
    COLAB_MAX_VM_S,
    KAGGLE_MAX_TPU_SESSION_S,
    accelerator,
    session_time_left,
)
from smartcolab.shared.protocol import GpuInfo
from support.runtime_proc import RuntimeProc, start_runtime


def fake_root(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(("env", "files", "expected"), [
    ({"COLAB_RELEASE_TAG": "release-colab_2026"}, {".dockerenv": ""}, "colab"),
    ({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, {".dockerenv": ""}, "kaggle"),
    ({}, {".dockerenv": ""}, "docker"),
    ({}, {"run/.containerenv": ""}, "docker"),
    ({}, {"proc/1/cgroup": "0::/kubepods/besteffort/pod1\n"}, "docker"),
    ({}, {"sys/class/dmi/id/sys_vendor": "Google\n",
          "sys/class/dmi/id/product_name": "Google Compute Engine\n"}, "vm"),
    ({"SSH_CONNECTION": "10.0.0.1 5000 10.0.0.2 22"}, {}, "vm"),
    ({}, {"proc/1/cgroup": "0::/\n", "sys/class/dmi/id/sys_vendor": "LENOVO\n"}, "local"),
])
def test_detect_platform(tmp_path: Path, env: dict[str, str], files: dict[str, str],
                         expected: str) -> None:
    assert detect(env, fake_root(tmp_path, files)).platform == expected


def test_vm_detail_and_tpu(tmp_path: Path) -> None:
    root = fake_root(tmp_path, {"sys/class/dmi/id/sys_vendor": "Amazon EC2", "dev/accel0": ""})
    info = detect({}, root)
    assert info == PlatformInfo("vm", "Amazon EC2", tpu=True)
    assert detect({"TPU_NAME": "local"}, fake_root(tmp_path / "x", {})).tpu


def test_the_working_dir_follows_the_platform(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    colab = fake_root(tmp_path / "colab", {"content/x": ""})
    assert working_dir({"COLAB_GPU": "1"}, colab) == Path("/content")
    kaggle = fake_root(tmp_path / "kaggle", {"kaggle/working/x": ""})
    assert working_dir({"KAGGLE_KERNEL_RUN_TYPE": "Batch"}, kaggle) == Path("/kaggle/working")
    # Colab named, but no /content under this root: the current directory.
    assert working_dir({"COLAB_RELEASE_TAG": "r"}, tmp_path / "empty") == tmp_path.resolve()
    assert working_dir({}, colab) == tmp_path.resolve()


def test_accelerator_names() -> None:
    t4 = GpuInfo(index=0, name="Tesla T4", memory_total_mb=15360, memory_used_mb=0)
    assert accelerator([], False) == "none"
    assert accelerator([], True) == "TPU"
    assert accelerator([t4], False) == "Tesla T4"
    assert accelerator([t4, t4.model_copy(update={"index": 1})], False) == "Tesla T4 x2"


def test_session_time_left_estimates() -> None:
    left, notes = session_time_left(PlatformInfo("colab"), age_s=3600.0)
    assert left == COLAB_MAX_VM_S - 3600.0 and "estimate" in notes[0]
    left, _ = session_time_left(PlatformInfo("kaggle", tpu=True), age_s=10 * 3600.0)
    assert left == 0.0 < KAGGLE_MAX_TPU_SESSION_S
    assert session_time_left(PlatformInfo("vm"), age_s=1.0) == (None, [])


def test_probe_over_http_reports_the_platform(tmp_path: Path) -> None:
    proc: RuntimeProc = start_runtime(tmp_path / "root", env={"KAGGLE_KERNEL_RUN_TYPE": "Batch"})
    try:
        body = httpx2.get(f"{proc.url}/probe", headers=proc.headers, timeout=30).json()
    finally:
        proc.stop()
    assert body["platform"] == "kaggle"
    assert 0 <= body["session_time_left_s"] <= 12 * 3600
    assert any("Kaggle" in note for note in body["notes"])
    assert body["accelerator"]
