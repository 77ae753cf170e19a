"""Describe the machine a benchmark ran on (stored in every benchmark's JSON).

Only reads: /proc/cpuinfo, ``lscpu``, /proc/meminfo, package metadata and ``git``.
Heavy packages (torch, ...) are looked up through their installed metadata, never imported.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

DEFAULT_PACKAGES = (
    "taskcodec",
    "numpy",
    "constriction",
    "compressai",
    "torch",
    "matplotlib",
    "tqdm",
)

_SIMD_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "bmi2",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "neon",
    "asimd",
    "sve",
)


def _run(cmd: Iterable[str], cwd: Optional[Path] = None) -> Optional[str]:
    exe = shutil.which(next(iter(cmd)))
    if exe is None:
        return None
    try:
        out = subprocess.run(
            list(cmd), cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def _lscpu() -> Dict[str, str]:
    out = _run(["lscpu"])
    if not out:
        return {}
    info = {}
    for line in out.splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
    return info


def _cpuinfo() -> Dict[str, str]:
    """First processor block of /proc/cpuinfo (Linux only)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info: Dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    return info


def _mem_total_gib() -> Optional[float]:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    m = re.search(r"^MemTotal:\s+(\d+)\s+kB", text, re.M)
    return round(int(m.group(1)) / 2**20, 2) if m else None


def package_versions(names: Iterable[str] = DEFAULT_PACKAGES) -> Dict[str, Optional[str]]:
    """Installed version of each distribution (None when it is not installed)."""
    versions: Dict[str, Optional[str]] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision(repo: Optional[Path] = None) -> Dict[str, Any]:
    """Commit and dirty flag of the checkout the benchmark ran from (if it is one)."""
    repo = repo or Path(__file__).resolve().parent.parent
    head = _run(["git", "rev-parse", "HEAD"], cwd=repo)
    if not head:
        return {"commit": None, "dirty": None}
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo)
    return {"commit": head.strip(), "dirty": bool(status and status.strip())}


def describe_machine(packages: Iterable[str] = DEFAULT_PACKAGES) -> Dict[str, Any]:
    """A JSON-able description of this machine and software stack."""
    lscpu = _lscpu()
    cpuinfo = _cpuinfo()
    model = (
        lscpu.get("Model name")
        or cpuinfo.get("model name")
        or cpuinfo.get("Hardware")
        or platform.processor()
        or None
    )
    flags = set(
        (lscpu.get("Flags") or cpuinfo.get("flags") or cpuinfo.get("Features") or "").split()
    )
    physical = None
    try:
        physical = int(lscpu["Core(s) per socket"]) * int(lscpu["Socket(s)"])
    except (KeyError, ValueError):
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    try:
        import numpy as np

        numpy_version: Optional[str] = np.__version__
    except ImportError:  # pragma: no cover - numpy is a hard dependency
        numpy_version = None
    return {
        "cpu_model": model,
        "logical_cpus": os.cpu_count(),
        "physical_cores": physical,
        "usable_cpus": usable,
        "threads_per_core": lscpu.get("Thread(s) per core"),
        "hypervisor": lscpu.get("Hypervisor vendor"),
        "l2_cache": lscpu.get("L2 cache"),
        "l3_cache": lscpu.get("L3 cache"),
        "simd": sorted(f for f in _SIMD_FLAGS if f in flags),
        "memory_gib": _mem_total_gib(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "numpy": numpy_version,
        "packages": package_versions(packages),
        "git": git_revision(),
        "executable": Path(sys.executable).name,
    }


def machine_summary(m: Dict[str, Any]) -> str:
    """One line for printed reports."""
    cores = m.get("physical_cores") or m.get("logical_cpus")
    pk = m.get("packages", {})
    parts = [
        f"{m.get('cpu_model') or 'unknown CPU'}",
        f"{cores} cores ({m.get('usable_cpus')} usable)",
        f"{m.get('memory_gib')} GiB",
        f"Python {m.get('python')}",
        f"numpy {m.get('numpy')}",
    ]
    for name in ("taskcodec", "constriction", "compressai", "torch"):
        if pk.get(name):
            parts.append(f"{name} {pk[name]}")
    return ", ".join(parts)


if __name__ == "__main__":
    import json

    print(json.dumps(describe_machine(), indent=2))
