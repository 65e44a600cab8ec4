"""The child side of the llama.cpp guard (adapters/llama_guard.py): load a GGUF and run it, reporting each step.

Run as `python -m adapters.llama_probe MODEL --extra-buffers on|off --threads N`. It prints one JSON line
per stage reached (`imported` with llama.cpp's compiled-in features, `loaded`, `prompt`, `decoded`), so
when the native code kills this process (SIGILL) the parent knows how far it got and what the build was.
It imports nothing from the harness: it must start fast and must not depend on anything but llama_cpp.

`use_extra_bufts` (llama_model_params) turns llama.cpp's "extra buffer types" on or off: weight repacking
for the CPU's SIMD kernels and, where compiled in, the AMX tile kernels. llama-cpp-python's `Llama` does
not expose it, so `extra_buffers(False)` patches the default params that `Llama.__init__` starts from.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

# Longer than one llama.cpp micro-batch would need to reach the batched (matrix-matrix) kernels: the
# AMX failure this guards against passes a one-token prompt and dies on a few hundred tokens.
PROBE_PROMPT_WORDS = 420
PROBE_DECODE_TOKENS = 8
_PATCH_LOCK = threading.Lock()


def _patch_default_params(enabled: bool) -> Any:
    """Make llama_cpp.Llama(...) load models with `use_extra_bufts = enabled`; returns the original."""
    import llama_cpp.llama_cpp as low

    if "use_extra_bufts" not in {name for name, *_ in low.llama_model_params._fields_}:
        raise RuntimeError(
            "this llama-cpp-python has no use_extra_bufts; install the [local] extra's version"
        )
    original = low.llama_model_default_params

    def patched() -> Any:
        params = original()
        params.use_extra_bufts = enabled
        return params

    low.llama_model_default_params = patched
    return original


@contextlib.contextmanager
def extra_buffers(enabled: bool) -> Iterator[None]:
    """While active, llama_cpp.Llama(...) loads models with `use_extra_bufts = enabled`."""
    import llama_cpp.llama_cpp as low

    with _PATCH_LOCK:
        original = _patch_default_params(enabled)
        try:
            yield
        finally:
            low.llama_model_default_params = original


def set_extra_buffers_for_process(enabled: bool) -> None:
    """For a process that loads one model and keeps it (the OpenAI-compatible server)."""
    _patch_default_params(enabled)


def system_info() -> str:
    import llama_cpp

    return str(llama_cpp.llama_print_system_info().decode("utf-8", "replace")).strip()


def _say(stage: str, **fields: Any) -> None:
    print(json.dumps({"stage": stage, **fields}), flush=True)


def probe(model: str, enabled: bool, threads: int) -> None:
    _say("start")
    import llama_cpp

    _say("imported", version=llama_cpp.__version__, system_info=system_info())
    with extra_buffers(enabled):
        llm = llama_cpp.Llama(
            model_path=model, n_ctx=2048, n_threads=threads, n_threads_batch=threads, seed=0, verbose=False
        )
    if bool(llm.model_params.use_extra_bufts) != enabled:
        raise RuntimeError("llama_cpp.Llama ignored use_extra_bufts; the guard cannot choose the path")
    _say("loaded", extra_buffers=enabled)
    words = " ".join(["the quick brown fox jumps over the lazy dog"] * (PROBE_PROMPT_WORDS // 9))
    start = time.perf_counter()
    tokens = llm.tokenize(words.encode(), add_bos=True)
    llm.eval(tokens)  # prompt processing: the batched kernels
    _say("prompt", tokens=len(tokens), seconds=round(time.perf_counter() - start, 3))
    for _ in range(PROBE_DECODE_TOKENS):  # decoding: the one-row kernels
        token = llm.sample(temp=0.0)
        llm.eval([token])
    _say("decoded", tokens=PROBE_DECODE_TOKENS)
    llm.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--extra-buffers", choices=("on", "off"), required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    probe(args.model, args.extra_buffers == "on", args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
