"""The environment a reproducibility package describes: Python, OS, CPU, GPU, installed packages, and the
torch / vLLM / CUDA versions.

Nothing heavy is imported: package versions come from `importlib.metadata` (never a pip subprocess), the
CUDA version torch was built for is read from torch's own `version.py` file, and the GPU from `nvidia-smi`
when it is on PATH. No environment variable's value goes in.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

NVIDIA_SMI_TIMEOUT_S = 10
_TORCH_CUDA = re.compile(r"""^cuda\s*(?::\s*[^=]+)?=\s*['"]([^'"]+)['"]""", re.MULTILINE)
_SMI_CUDA = re.compile(r"CUDA Version:\s*([0-9.]+)")


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what the platform module says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")) and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nvidia_smi(*args: str) -> str | None:
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return None
    try:
        done = subprocess.run(
            [tool, *args], capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def gpus() -> list[dict[str, str]]:
    """Every GPU nvidia-smi lists (name, memory, driver); empty without nvidia-smi or a GPU."""
    out = _nvidia_smi("--query-gpu=name,memory.total,driver_version", "--format=csv,noheader")
    if not out:
        return []
    found = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[0]:
            found.append({"name": parts[0], "memory": parts[1], "driver": parts[2]})
    return found


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def torch_cuda() -> str | None:
    """The CUDA version the installed torch was built for (None: CPU build or no torch), read from
    torch/version.py without importing torch."""
    spec = importlib.util.find_spec("torch") if _version("torch") else None
    folders = spec.submodule_search_locations if spec is not None else None
    if not folders:
        return None
    try:
        text = (Path(folders[0]) / "version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    match = _TORCH_CUDA.search(text)
    return match.group(1) if match and match.group(1) != "None" else None


def pip_freeze() -> list[str]:
    """`pip freeze`'s lines (name==version), sorted, from the installed distributions' metadata."""
    pins = set()
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata is not None else None
        if name:
            pins.add(f"{name}=={dist.version}")
    return sorted(pins, key=str.lower)


def environment() -> dict[str, Any]:
    """What environment.json holds."""
    smi = _nvidia_smi() or ""
    driver_cuda = _SMI_CUDA.search(smi)
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable_prefix": "venv" if sys.prefix != sys.base_prefix else "system",
        "os": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": _cpu_count(),
        "gpus": gpus(),
        "versions": {
            "torch": _version("torch"),
            "torch_cuda": torch_cuda(),
            "driver_cuda": driver_cuda.group(1) if driver_cuda else None,
            "vllm": _version("vllm"),
            "transformers": _version("transformers"),
            "llama_cpp_python": _version("llama_cpp_python"),
            "tinker": _version("tinker"),
        },
        "pip_freeze": pip_freeze(),
    }


def _cpu_count() -> int | None:
    import os

    return os.cpu_count()
