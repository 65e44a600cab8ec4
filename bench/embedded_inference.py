"""Local embedded inference: useful tokens/s of the embedded adapter vs llama.cpp alone on the same prompts.

What is measured, on the first N GSM8K test problems (default 20) as the suite asks them (8-shot chat,
`GSM8K.requests`), greedy (temperature 0, top_p 1, seed 0), at most `--max-tokens` (default 128) new tokens:

- adapter: the harness's `embedded` adapter (adapters/llama_cpp.py, `create_adapter("embedded")`), one
  `generate([request])` per problem, as the runner calls it (concurrency 1, batch 1);
- llama.cpp alone: `llama_cpp.Llama(model_path=embedded_gguf_path(), n_ctx=4096, n_threads=T,
  n_threads_batch=T, seed=0)` and `create_chat_completion` on the same messages and settings (n_ctx as the
  adapter's: the default 512 cannot hold the 8-shot prompt; T = the adapter's thread count);
- `--cli`: additionally the whole `harness eval --checkpoint embedded --suite gsm8k --limit N --max-tokens M
  --no-cache --fresh` process (start-up, model load, scoring, files) as seen from outside.

Builds (issue 14: the guard and the portable build must not cost speed where the old build worked):

- `--baseline-python PY` adds the mode "baseline": the same adapter worker run by another interpreter,
  e.g. a venv whose llama-cpp-python is the old default build (`pip install llama-cpp-python`,
  `-march=native`) with this project installed. "adapter" (this venv: the portable
  `CMAKE_ARGS="-DGGML_NATIVE=OFF"` build behind the guard) over "baseline" is the old-vs-new ratio, measured
  in one run; the guard's probe runs before the timed generation in both;
- `--fallback` adds the adapter on the guard's fallback path (extra buffer types off,
  `HARNESS_LLAMA_EXTRA_BUFFERS=off`), to show what the fallback costs on this CPU.

Useful tokens/s = completion tokens / generation wall seconds (model load timed apart). The modes
alternate (A B, B A, A B ... for `--rounds`), each in a fresh Python process, so load on the machine hits
both alike; the ratio is taken per round. Also checks that both produce the same texts. Fresh processes
matter: llama.cpp here is built with OpenMP, and once one thread of a process has run it, running it from
another thread of the same process is ~35% slower (`--same-process` shows it: "alone" runs on the main
thread, the adapter in asyncio's worker thread).

Reproduce (from the repository root; nothing else using the CPUs, or say what was):

    HARNESS_DATA_DIR=../shared/data HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \\
      .venv/bin/python bench/embedded_inference.py --limit 20 --max-tokens 128 --rounds 2 --cli \\
      --json bench/out/embedded_inference.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from adapters import create_adapter
from adapters.llama_cpp import DEFAULT_N_CTX, LlamaCppAdapter, embedded_gguf_path
from adapters.llama_guard import MODE_ENV
from harness.checkpoints import parse_checkpoint
from harness.data import resolve_data_source
from harness.types import Request
from suites.gsm8k import GSM8K


def via_adapter(requests: list[Request], mode: str = "adapter") -> dict[str, Any]:
    adapter = create_adapter(parse_checkpoint("embedded"))
    assert isinstance(adapter, LlamaCppAdapter)
    start = time.perf_counter()
    adapter._load()  # what the first generate() would do; timed apart from generation
    load_s = time.perf_counter() - start

    async def generate_all() -> list[Any]:  # one event loop, one request per generate(): as the runner
        outs = [(await adapter.generate([request]))[0] for request in requests]
        await adapter.aclose()
        return outs

    start = time.perf_counter()
    outs = asyncio.run(generate_all())
    seconds = time.perf_counter() - start
    texts = [o.text for o in outs]
    prompt, completion = sum(o.prompt_tokens for o in outs), sum(o.completion_tokens for o in outs)
    assert adapter.native_verdict is not None
    return {**result(mode, load_s, seconds, prompt, completion, texts, adapter.threads),
            "llama_cpp_path": adapter.native_verdict.path}  # fmt: skip


def via_llama_cpp(requests: list[Request], threads: int) -> dict[str, Any]:
    from llama_cpp import Llama

    start = time.perf_counter()
    llm = Llama(model_path=str(embedded_gguf_path()), n_ctx=DEFAULT_N_CTX, n_threads=threads,
                n_threads_batch=threads, seed=0, verbose=False)  # fmt: skip
    load_s = time.perf_counter() - start
    texts, prompt, completion = [], 0, 0
    start = time.perf_counter()
    for request in requests:
        assert request.messages is not None
        s = request.settings
        out: Any = llm.create_chat_completion(
            messages=[{"role": m.role, "content": m.content} for m in request.messages],  # type: ignore[misc]
            max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p, seed=s.seed,
        )  # fmt: skip
        texts.append(out["choices"][0]["message"]["content"] or "")
        prompt += out["usage"]["prompt_tokens"]
        completion += out["usage"]["completion_tokens"]
    seconds = time.perf_counter() - start
    llm.close()
    return result("llama.cpp alone", load_s, seconds, prompt, completion, texts, threads)


def result(mode: str, load_s: float, seconds: float, prompt: int, completion: int, texts: list[str],
           threads: int) -> dict[str, Any]:  # fmt: skip
    return {
        "mode": mode,
        "threads": threads,
        "load_s": round(load_s, 2),
        "generate_s": round(seconds, 2),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "completion_tokens_per_s": round(completion / seconds, 1),
        "texts": texts,
    }


def via_cli(limit: int, max_tokens: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="embedded-bench-") as tmp:
        command = [sys.executable, "-m", "harness", "eval", "--checkpoint", "embedded", "--suite", "gsm8k",
                   "--limit", str(limit), "--max-tokens", str(max_tokens), "--no-cache", "--fresh",
                   "--runs", tmp, "--json", "--quiet"]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - start
        (outcome,) = json.loads(done.stdout)
        manifest = json.loads((Path(outcome["run_dir"]) / "manifest.json").read_text())
        records = [json.loads(line) for line in (Path(outcome["run_dir"]) / "samples.jsonl").open()]
    completion = int(manifest["usage"]["completion_tokens"])
    generate_s = sum(c["latency_s"] for r in records for c in r["completions"])
    return {
        "mode": "harness eval (whole process)",
        "wall_s": round(seconds, 2),
        "generate_s": round(generate_s, 2),  # the adapter's own per-request latencies, summed
        "generate_tokens_per_s": round(completion / generate_s, 1),
        "prompt_tokens": int(manifest["usage"]["prompt_tokens"]),
        "completion_tokens": completion,
        "completion_tokens_per_s": round(completion / seconds, 1),
    }


def in_fresh_process(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    python = args.baseline_python if mode == "baseline" else sys.executable
    env = dict(os.environ)
    if mode == "fallback":
        env[MODE_ENV] = "off"
    command = [
        python,
        __file__,
        "--worker",
        "adapter" if mode == "baseline" else mode,
        "--limit",
        str(args.limit),
        "--max-tokens",
        str(args.max_tokens),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    result["python"] = python
    result["mode"] = mode
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=20, help="GSM8K test problems")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2, help="adapter / llama.cpp alternations")
    parser.add_argument("--cli", action="store_true", help="also time the whole harness eval process")
    parser.add_argument(
        "--same-process",
        action="store_true",
        help="run both modes in this one process (shows the OpenMP thread interference)",
    )
    parser.add_argument(
        "--baseline-python", metavar="PY", help="also run the adapter under this interpreter (another build)"
    )
    parser.add_argument(
        "--fallback", action="store_true", help="also time the adapter with extra buffer types off"
    )
    parser.add_argument("--worker", choices=("adapter", "alone", "fallback"), help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the results (with texts) as JSON here")
    args = parser.parse_args()

    suite = GSM8K()
    settings = replace(
        suite.default_settings(), max_tokens=args.max_tokens, temperature=0.0, top_p=1.0, seed=0
    )
    samples = suite.load(resolve_data_source(None), args.limit).samples
    requests = [suite.requests(s, settings, "chat")[0] for s in samples]
    threads = LlamaCppAdapter(embedded_gguf_path(), "embedded").threads
    modes = {
        "adapter": lambda: via_adapter(requests),
        "baseline": lambda: via_adapter(requests, "adapter, baseline build"),
        "alone": lambda: via_llama_cpp(requests, threads),
        "fallback": lambda: via_adapter(requests, "adapter, extra buffer types off"),
    }
    if args.worker:
        print(json.dumps(modes[args.worker]()))
        return 0
    order = ["adapter", "alone", *(["baseline"] if args.baseline_python else []),
             *(["fallback"] if args.fallback else [])]  # fmt: skip
    rounds = []
    for number in range(args.rounds):
        got = {}
        for mode in order if number % 2 == 0 else order[::-1]:  # A B C, then C B A
            got[mode] = modes[mode]() if args.same_process else in_fresh_process(mode, args)
            print(json.dumps({k: v for k, v in got[mode].items() if k != "texts"}), flush=True)
        this_round: dict[str, Any] = {"round": number + 1, **got}
        pairs = [(mode, "alone") for mode in order if mode != "alone"]
        pairs += [("adapter", "baseline")] if args.baseline_python else []
        for mode, reference in pairs:
            ratio = got[mode]["completion_tokens_per_s"] / got[reference]["completion_tokens_per_s"]
            same = sum(a == b for a, b in zip(got[mode]["texts"], got[reference]["texts"], strict=True))
            this_round[f"{mode}/{reference}"] = {"ratio": round(ratio, 3), "identical_texts": same}
        rounds.append(this_round)
        print(json.dumps({k: v for k, v in this_round.items() if k not in modes}))
    summary: dict[str, Any] = {
        "problems": len(requests),
        "max_tokens": args.max_tokens,
        "same_process": args.same_process,
        "baseline_python": args.baseline_python,
        "median_ratios": {
            key: round(statistics.median(r[key]["ratio"] for r in rounds), 3)
            for key in rounds[0]
            if "/" in key
        },
        "rounds": rounds,
    }
    # kept for earlier readers of this file's output
    summary["median_ratio"] = summary["median_ratios"]["adapter/alone"]
    if args.cli:
        summary["cli"] = via_cli(args.limit, args.max_tokens)
        print(json.dumps(summary["cli"]))
    print(json.dumps({"median_ratios": summary["median_ratios"]}))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
