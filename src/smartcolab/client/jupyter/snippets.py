"""Code that runs inside a Jupyter Server's kernel: variables, cleanup, probe, epoch marker.

A Jupyter Server has nothing of ours installed, so what the runtime server computes
in its own process (probe) or with its kernel snippets (variables, cleanup) is sent
here as code.  The variables and cleanup snippets, ``wrap`` and ``parse`` are shared
with the runtime server in ``smartcolab.shared.kernel_snippets``; the probe and the epoch
marker are the bridge's own.
"""

from __future__ import annotations

from smartcolab.shared.kernel_snippets import CLEANUP_SRC, MARKER, VARIABLES_SRC, parse, wrap

__all__ = ["CLEANUP_SRC", "EPOCH_SRC", "MARKER", "PROBE_SRC", "VARIABLES_SRC", "parse", "wrap"]

PROBE_SRC = r"""
import json as _json, os as _os, sys as _sys, platform as _platform, shutil as _shutil
import subprocess as _sp, time as _time
_env = _os.environ
if "google.colab" in _sys.modules or "COLAB_RELEASE_TAG" in _env or "COLAB_GPU" in _env:
    _plat = "colab"
elif "KAGGLE_KERNEL_RUN_TYPE" in _env:
    _plat = "kaggle"
elif _os.path.exists("/.dockerenv"):
    _plat = "docker"
else:
    _plat = "vm"
try:
    import psutil as _ps
    _vm = _ps.virtual_memory()
    _ram_total, _ram_avail = int(_vm.total), int(_vm.available)
    _boot = float(_ps.boot_time())
    _started = float(_ps.Process().create_time())
except Exception:
    _ram_total = _ram_avail = 0
    try:
        with open("/proc/meminfo") as _fh:
            _mi = {l.split(":")[0]: int(l.split()[1]) * 1024 for l in _fh if l.split()[1:]}
        _ram_total, _ram_avail = _mi.get("MemTotal", 0), _mi.get("MemAvailable", 0)
    except Exception:
        pass
    _boot = _started = _time.time()
_gpus = []
if _shutil.which("nvidia-smi"):
    try:
        _q = _sp.run(["nvidia-smi", "--query-gpu=index,name,memory.total,memory.used,utilization.gpu",
                      "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
        for _line in _q.stdout.strip().splitlines():
            _p = [x.strip() for x in _line.split(",")]
            _gpus.append({"index": int(_p[0]), "name": _p[1], "memory_total_mb": int(float(_p[2])),
                          "memory_used_mb": int(float(_p[3])),
                          "utilization_pct": float(_p[4]) if _p[4].replace(".", "").isdigit() else None})
    except Exception:
        pass
from importlib import metadata as _md
_pk = {}
for _n in ("torch", "tensorflow", "jax", "numpy", "pandas", "scikit-learn", "transformers",
           "matplotlib", "ipykernel"):
    try:
        _pk[_n] = _md.version(_n)
    except Exception:
        pass
_du = _shutil.disk_usage(_os.getcwd())
print(MARKER + _json.dumps({
    "platform": _plat, "accelerator": "gpu" if _gpus else "cpu",
    "python": _sys.version.split()[0] + " (" + _platform.python_implementation() + ")",
    "cpu_count": _os.cpu_count() or 1,
    "load_avg": list(_os.getloadavg()) if hasattr(_os, "getloadavg") else [],
    "ram_total_bytes": _ram_total, "ram_available_bytes": _ram_avail,
    "disk_root": _os.getcwd(), "disk_total_bytes": _du.total, "disk_free_bytes": _du.free,
    "gpus": _gpus, "packages": _pk, "machine_uptime_s": _time.time() - _boot,
    "server_uptime_s": _time.time() - _started}))
"""

# One expression: read (or, in a fresh kernel, draw) a token kept in builtins.  A kernel
# restart or crash drops it, so a new token means every variable is gone.
EPOCH_SRC = r"""
import builtins as _b, uuid as _u
print(MARKER + _json.dumps(_b.__dict__.setdefault("__smartcolab_epoch__", _u.uuid4().hex[:12])))
"""

SHA256_SRC = r"""
import hashlib as _h, os as _os
_d = _h.sha256()
with open(_args["path"], "rb") as _f:
    for _c in iter(lambda: _f.read(1 << 20), b""):
        _d.update(_c)
print(MARKER + _json.dumps({"sha256": _d.hexdigest(), "size": _os.path.getsize(_args["path"])}))
"""
