"""GPU check of the in-process vLLM backend (`vllm:BASE[+lora:PATH]`): throughput, and whether a LoRA applies.

NOT RUN in this project's CI or on the development machine: it needs a CUDA GPU, `pip install -e
'.[vllm,hf]'` (vLLM brings its own CUDA torch; peft makes the LoRA), the base model (hub access, or a local
folder), and GSM8K (the hub, or HARNESS_DATA_DIR pointing at the shared data folder). The unit tests
(tests/unit/test_vllm_adapter.py) only exercise the adapter against a stand-in vllm package.

What it does:
1. makes a small LoRA for the base model with peft: `init_lora_weights=False` (random A and B, so the
   adapter is NOT the identity), B scaled by --lora-b-scale so answers change without turning to noise;
2. runs `harness eval --checkpoint vllm:MODEL` and `vllm:MODEL+lora:DIR` on gsm8k --limit N (fresh
   runs, no response cache, so every sample is really generated);
3. prints per run: wall time (includes vLLM start-up and model load), generation time (sum of the
   adapter's per-request latency shares = time inside LLM.generate), samples/s and generated tokens/s
   over both, and the GSM8K score; then how many of the N answers the LoRA changed.

    python bench/vllm_gpu_check.py --model HuggingFaceTB/SmolLM2-135M-Instruct --limit 200
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def make_lora(model: str, out: Path, rank: int, b_scale: float, seed: int) -> Path:
    """A random, non-zero LoRA on the attention projections, saved the way training saves one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        init_lora_weights=False,  # peft: random init, "not an identity transform"
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.mul_(b_scale)
    peft_model.save_pretrained(str(out))
    return out


def run_eval(checkpoint: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "harness", "eval", "--checkpoint", checkpoint, "--suite", args.suite,
        "--limit", str(args.limit), "--json", "--quiet", "--fresh", "--no-cache", "--runs", str(out),
        "--tensor-parallel-size", str(args.tensor_parallel_size),
    ]  # fmt: skip
    if args.batch_size:
        command += ["--batch-size", str(args.batch_size)]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=os.environ.copy())
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{checkpoint} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    payload = json.loads(proc.stdout)[0]
    run_dir = Path(payload["run_dir"])
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    completions = [c for r in records for c in r["completions"]]
    tokens = sum(int(c["completion_tokens"]) for c in completions)
    generation_s = sum(float(c["latency_s"]) for c in completions)
    primary = payload["primary"]
    return {
        "checkpoint": checkpoint,
        "samples": len(records),
        "wall_s": round(wall, 1),
        "generation_s": round(generation_s, 1),
        "samples_per_s_wall": round(len(records) / wall, 2),
        "samples_per_s_generation": round(len(records) / generation_s, 2) if generation_s else None,
        "generated_tokens": tokens,
        "tokens_per_s_wall": round(tokens / wall, 1),
        "tokens_per_s_generation": round(tokens / generation_s, 1) if generation_s else None,
        primary: payload["metrics"][primary]["value"],
        "texts": {r["id"]: r["completions"][0]["texts"][0] for r in records},
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default="HuggingFaceTB/SmolLM2-135M-Instruct", help="hub id or local folder"
    )
    parser.add_argument("--suite", default="gsm8k")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument(
        "--lora-b-scale", type=float, default=0.1, help="shrinks the random B (1.0 = peft's init)"
    )
    parser.add_argument("--batch-size", type=int, help="harness --batch-size (default: the adapter's, 512)")
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--data-dir", help="harness --data-dir (default: HARNESS_DATA_DIR, else the hub)")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "vllm_gpu_check")
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    lora = make_lora(args.model, args.work / "random-lora", args.lora_rank, args.lora_b_scale, seed=0)
    runs = args.work / "runs"
    base = run_eval(f"vllm:{args.model}", args, runs)
    adapted = run_eval(f"vllm:{args.model}+lora:{lora}", args, runs)
    changed = sum(1 for sid, text in base["texts"].items() if adapted["texts"].get(sid) != text)
    for result in (base, adapted):
        print(json.dumps({k: v for k, v in result.items() if k != "texts"}))
    print(json.dumps({"lora_changed_outputs": changed, "of": len(base["texts"]), "lora": str(lora)}))
    if changed == 0:
        print("WARNING: the LoRA changed no output: it was not applied (or --lora-b-scale is too small).")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
