"""A guard for llama.cpp's native code: run it in a child process before this process loads it.

Why. llama-cpp-python compiles llama.cpp from source, by default for the build host's CPU
(`-march=native`), and pip caches the wheel by version, not by CPU. Two failures follow, both a SIGILL
that kills the process with no message:
- a library compiled for CPU features this CPU lacks (an AVX-512 build from another host's cache);
- a feature the CPU advertises but the OS or hypervisor does not enable: AMX tiles, reached through
  llama.cpp's "extra buffer types" (ggml-org/llama.cpp issues 28756, 28328). A one-token prompt passes;
  a few hundred tokens die.

What it does. `native_verdict()` runs `adapters.llama_probe` (load the GGUF, a ~500-token prompt, a few
decode steps) in a child: first with the extra buffer types on (weight repacking, AMX: the fast path
where it works), then, only if that child was killed by a signal, with them off. The first path that
survives is the one loaded in process; if none does, `NativeLibraryError` says which CPU feature the
build assumes and the command that rebuilds it portably. A passing verdict is cached per (library files,
model file, CPU flags, host), so the probe costs about a second once per install and model.
`HARNESS_LLAMA_EXTRA_BUFFERS=on|off` skips the choice (the probe still runs on the forced path).

Not covered: a fault that only a longer context, another quantization type or more threads reach.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from adapters.common import file_fingerprint
from harness.errors import MissingExtraError, UsageError

log = logging.getLogger("harness")

MODE_ENV = "HARNESS_LLAMA_EXTRA_BUFFERS"
MODES = ("auto", "on", "off")
# A ~500-token prompt on CPU: seconds for the embedded model, minutes for a 70B GGUF on a slow machine.
PROBE_TIMEOUT_BASE_S, PROBE_TIMEOUT_PER_GB_S = 120.0, 60.0
PROBE_VERSION = 1  # bump when the probe's program or the verdict's meaning changes
STAGES = ("start", "imported", "loaded", "prompt", "decoded")
# llama.cpp's compiled-in feature names (llama_print_system_info) -> the Linux /proc/cpuinfo flag.
FEATURE_FLAGS = {
    "SSE3": "pni",
    "SSSE3": "ssse3",
    "AVX": "avx",
    "AVX_VNNI": "avx_vnni",
    "AVX2": "avx2",
    "F16C": "f16c",
    "FMA": "fma",
    "BMI2": "bmi2",
    "AVX512": "avx512f",
    "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16",
    "AMX_INT8": "amx_int8",
}
# What `-DGGML_NATIVE=OFF` compiles in on x86-64 (ggml/CMakeLists.txt: INS_ENB), so runs on any AVX2 CPU.
PORTABLE_X86 = frozenset({"SSE3", "SSSE3", "AVX", "AVX2", "F16C", "FMA", "BMI2"})


class NativeLibraryError(MissingExtraError):
    """llama.cpp's compiled library cannot run on this CPU: exit 5, like a missing extra (the fix is a reinstall)."""


@dataclass(frozen=True)
class ProbeAttempt:
    extra_buffers: bool
    passed: bool
    stage: str  # the last stage the child reported (STAGES)
    detail: str  # "" when passed; else "killed by SIGILL (illegal instruction)", "exit 1: ...", "timed out"
    seconds: float
    crashed: bool  # killed by a signal: the native code, not a Python error


@dataclass(frozen=True)
class NativeVerdict:
    extra_buffers: bool  # the path to load in process
    mode: str  # auto | on | off
    attempts: tuple[ProbeAttempt, ...]
    system_info: str  # llama.cpp's compiled-in features, as it prints them
    from_cache: bool

    @property
    def path(self) -> str:
        return "extra buffer types on" if self.extra_buffers else "extra buffer types off (fallback)"


def probe_mode() -> str:
    mode = os.environ.get(MODE_ENV, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise UsageError(
            f"{MODE_ENV}={os.environ[MODE_ENV]!r} is not a valid setting.", f"Use one of: {', '.join(MODES)}."
        )
    return mode


def cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def compiled_features(system_info: str) -> list[str]:
    """`CPU : SSE3 = 1 | AVX2 = 1 | ... |` -> ["SSE3", "AVX2", ...] (the features whose value is 1)."""
    out = []
    for part in system_info.replace("\n", "|").split("|"):
        name, _, value = part.partition("=")
        name = name.split(":")[-1].strip()
        if name and value.strip() == "1":
            out.append(name)
    return out


def missing_features(system_info: str, flags: frozenset[str]) -> list[str]:
    """Features the library was compiled with that this CPU does not advertise (empty when unknown)."""
    if not flags:
        return []
    return [f for f in compiled_features(system_info) if f in FEATURE_FLAGS and FEATURE_FLAGS[f] not in flags]


def library_dir() -> Path | None:
    spec = importlib.util.find_spec("llama_cpp")  # finds the package without loading its native code
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


def _library_fingerprint() -> str:
    folder = library_dir()
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*")) if folder and folder.is_dir() else []:
        stat = path.stat()
        digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "post-train-harness" / "llama-probe"


def _cache_key(model_path: Path, mode: str) -> str:
    try:
        version = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    parts = [
        str(PROBE_VERSION), version, str(library_dir()), _library_fingerprint(), file_fingerprint(model_path),
        mode, platform.node(), platform.machine(), " ".join(sorted(cpu_flags())),
    ]  # fmt: skip
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def probe_command(model_path: Path, extra_buffers: bool, threads: int) -> list[str]:
    return [
        sys.executable, "-m", "adapters.llama_probe", str(model_path),
        "--extra-buffers", "on" if extra_buffers else "off", "--threads", str(threads),
    ]  # fmt: skip


def _signal_text(number: int) -> str:
    try:
        name = signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
    return f"{name} (illegal instruction)" if name == "SIGILL" else name


def run_probe(model_path: Path, extra_buffers: bool, threads: int) -> tuple[ProbeAttempt, str]:
    """One child: returns the attempt and llama.cpp's system info (empty if it died before printing it)."""
    root = Path(__file__).resolve().parents[1]  # so `-m adapters.llama_probe` imports this checkout
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    }
    timeout = PROBE_TIMEOUT_BASE_S + PROBE_TIMEOUT_PER_GB_S * model_path.stat().st_size / 1e9
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            code = subprocess.run(
                probe_command(model_path, extra_buffers, threads), stdin=subprocess.DEVNULL,
                stdout=out, stderr=err, env=env, timeout=timeout, check=False,
            ).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            code = None
        out.seek(0)
        err.seek(0)
        lines, err_tail = (
            out.read(1 << 20).decode(errors="replace"),
            err.read()[-2000:].decode(errors="replace"),
        )
    seconds = round(time.perf_counter() - start, 2)
    stage, info = "none", ""
    for line in lines.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("stage") in STAGES:
            stage = str(record["stage"])
            info = str(record.get("system_info") or info)
    crashed = code is not None and code < 0
    if code == 0 and stage == "decoded":
        detail = ""
    elif code is None:
        detail = f"timed out after {timeout:.0f} s"
    elif crashed:
        detail = f"killed by {_signal_text(-code)}"
    else:
        last = err_tail.strip().splitlines()[-1:] or [""]
        detail = f"exit {code}: {last[0][:300]}"
    return ProbeAttempt(extra_buffers, detail == "", stage, detail, seconds, crashed), info


def _read_cache(path: Path) -> NativeVerdict | None:
    try:
        record = json.loads(path.read_text())
        attempts = tuple(ProbeAttempt(**a) for a in record["attempts"])
        return NativeVerdict(
            bool(record["extra_buffers"]), str(record["mode"]), attempts, str(record["system_info"]), True
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(path: Path, verdict: NativeVerdict) -> None:
    record: dict[str, Any] = {**asdict(verdict), "from_cache": False}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(json.dumps(record))
        os.replace(temporary, path)
    except OSError as error:  # a read-only home only costs a probe per process
        log.debug("could not cache the llama.cpp probe verdict at %s: %s", path, error)


def native_verdict(model_path: Path, threads: int, use_cache: bool = True) -> NativeVerdict:
    """Which llama.cpp path this process may load `model_path` with; raises NativeLibraryError if none."""
    mode = probe_mode()
    cached = cache_dir() / f"{_cache_key(model_path, mode)}.json"
    if use_cache and (verdict := _read_cache(cached)) is not None:
        return verdict
    ladder = {"auto": (True, False), "on": (True,), "off": (False,)}[mode]
    attempts: list[ProbeAttempt] = []
    info = ""
    for extra in ladder:
        attempt, seen = run_probe(model_path, extra, threads)
        attempts.append(attempt)
        info = seen or info
        if attempt.passed:
            verdict = NativeVerdict(extra, mode, tuple(attempts), info, False)
            if len(attempts) > 1:
                log.warning(
                    "llama.cpp's extra buffer types (weight repacking%s) were %s in a probe on this CPU; "
                    "running without them (`harness doctor` shows the build).",
                    ", AMX" if "AMX_INT8" in compiled_features(info) else "",
                    attempts[0].detail,
                )
            _write_cache(cached, verdict)
            return verdict
        if not attempt.crashed:
            break  # a Python error or a timeout is not a CPU fault: the other path would not fix it
    raise _unusable(model_path, attempts, info)


def fix_command(needs_native: bool = False) -> str:
    try:
        version = f"=={importlib.metadata.version('llama-cpp-python')}"
    except importlib.metadata.PackageNotFoundError:
        version = ""
    # LLAVA_BUILD=OFF: the multimodal library, which the harness never loads, is a third of the compile.
    flags = ("-DGGML_NATIVE=ON" if needs_native else "-DGGML_NATIVE=OFF") + " -DLLAVA_BUILD=OFF"
    return (
        f'CMAKE_ARGS="{flags}" {sys.executable} -m pip install --force-reinstall --no-cache-dir '
        f'--no-deps "llama-cpp-python{version}"'
    )


def _unusable(model_path: Path, attempts: list[ProbeAttempt], info: str) -> NativeLibraryError:
    tried = "; ".join(
        f"with extra buffer types {'on' if a.extra_buffers else 'off'}: {a.detail} (after stage '{a.stage}')"
        for a in attempts
    )
    if not any(a.crashed for a in attempts):
        return NativeLibraryError(
            f"llama.cpp could not run {model_path.name} in a probe process ({tried}).",
            "Check the file with `harness doctor`; if the error names llama.cpp, reinstall it: "
            + fix_command(),
        )
    flags = cpu_flags()
    missing = missing_features(info, flags)
    no_avx2 = platform.machine() in ("x86_64", "AMD64") and bool(flags) and "avx2" not in flags
    if missing:
        cause = (
            f"the installed llama.cpp library was compiled for CPU features this CPU ({cpu_name()}) does not "
            f"have: {', '.join(missing)} (a build made on another machine, e.g. reused from pip's wheel cache)"
        )
    elif not info:
        cause = (
            f"the library crashed while loading, before it could report its build, on this CPU ({cpu_name()})"
        )
    else:
        cause = (
            f"the library crashed although this CPU ({cpu_name()}) advertises every feature it was compiled "
            f"with ({', '.join(compiled_features(info)) or 'none reported'}); the OS or hypervisor may not "
            "enable one of them"
        )
    rebuild = "for this CPU only (it lacks AVX2, which the portable build needs)" if no_avx2 else "portably"
    return NativeLibraryError(
        f"llama.cpp cannot run on this machine: {cause}. Probes in a child process: {tried}. No sample was "
        "generated with it; finished samples of earlier runs are kept.",
        f"Rebuild llama-cpp-python {rebuild}, then re-run the same command: {fix_command(no_avx2)}",
    )


def load_llama(model_path: Path, threads: int, **kwargs: Any) -> tuple[Any, NativeVerdict]:
    """`llama_cpp.Llama(model_path, ...)` on the path the guard chose (the only way this project loads one)."""
    verdict = native_verdict(model_path, threads)
    from llama_cpp import Llama

    from adapters.llama_probe import extra_buffers
    from adapters.llama_replay import install

    install()  # a retried or resumed prompt gets the answer it got the first time

    with extra_buffers(verdict.extra_buffers):
        llm = Llama(model_path=str(model_path), n_threads=threads, n_threads_batch=threads, **kwargs)
    if bool(llm.model_params.use_extra_bufts) != verdict.extra_buffers:
        llm.close()
        raise RuntimeError("llama_cpp.Llama ignored use_extra_bufts; the llama.cpp guard needs updating")
    return llm, verdict
