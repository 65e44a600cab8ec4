"""`harness package CHECKPOINT --kaggle`: write submission.zip for the Kaggle NVIDIA Nemotron reasoning
challenge: adapter_config.json and the adapter weights at the zip's root, deterministic bytes.

CHECKPOINT: hf:BASE+lora:DIR, vllm:BASE+lora:DIR, a registry tag naming one (sft:latest, dpo:best), or the
LoRA folder itself. Refused (exit 2 or 4, nothing written): a rank above 32 (r or rank_pattern), weights
whose LoRA shapes disagree with the config, missing or unreadable weights, DoRA/modules_to_save/biases,
and references that hold no LoRA (GGUF, endpoints, Tinker samplers: download the adapter first).

`harness package CHECKPOINT... --repro OUT.zip [--subset-limit N]`: a reproducibility package of the named
checkpoints' runs (code, registry, commands, seeds, environment, model card, metrics, examples and a
reproduce.sh that re-runs the first N samples of each suite; docs/reproducibility.md). Refused (exit 2,
nothing written): an incomplete run, or any file holding the value of a secret-looking environment variable.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from harness.cli.argtypes import add_json_flag, add_runs_flag, whole_number


def register(commands: Any) -> None:
    p = commands.add_parser(
        "package",
        help="package a LoRA adapter for submission (--kaggle), or runs for reproduction (--repro)",
        description=__doc__,
    )
    p.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        nargs="+",
        help="--kaggle: a LoRA reference, registry tag or adapter folder; --repro: checkpoints or run folders",
    )
    p.add_argument(
        "--kaggle", action="store_true", help="the Kaggle Nemotron reasoning challenge's submission.zip"
    )
    p.add_argument(
        "--repro", metavar="OUT.zip", help="write a reproducibility package of the checkpoints' runs"
    )
    p.add_argument(
        "--subset-limit",
        type=whole_number(1),
        default=50,
        metavar="N",
        help="--repro: reproduce.sh re-runs the first N samples of each suite (default 50)",
    )
    p.add_argument(
        "--card", metavar="FILE", help="--repro: model card fields (YAML), as harness report --card"
    )
    p.add_argument(
        "--examples",
        type=whole_number(0),
        default=3,
        metavar="K",
        help="--repro: examples per run (default 3)",
    )
    p.add_argument(
        "--out", default="submission.zip", metavar="FILE", help="the zip to write (default submission.zip)"
    )
    p.add_argument(
        "--max-rank",
        type=whole_number(1),
        default=32,
        metavar="R",
        help="highest LoRA rank accepted (default 32)",
    )
    add_runs_flag(p, "runs folder holding the registry")
    add_json_flag(p, "print the result as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.checkpoints import redact_reference
    from harness.errors import UsageError
    from harness.runs.store import runs_root
    from training.package import KAGGLE_BASE_MODEL, KAGGLE_MAX_RANK, package_kaggle

    if args.repro is not None:
        if args.kaggle:
            raise UsageError("--kaggle and --repro write different packages.", "Pass one of them.")
        return _repro(args)
    if not args.kaggle:
        raise UsageError(
            "harness package needs a target: --kaggle (the Kaggle NVIDIA Nemotron reasoning challenge's "
            "submission.zip) or --repro OUT.zip (a reproducibility package of the checkpoints' runs).",
            f"Run: harness package {redact_reference(args.checkpoint[0])} --kaggle",
        )
    if len(args.checkpoint) > 1:
        raise UsageError(
            f"--kaggle packages one LoRA adapter, but {len(args.checkpoint)} checkpoints were named.",
            "Name one checkpoint.",
        )
    out = Path(args.out).expanduser().resolve()
    result = package_kaggle(args.checkpoint[0], out, args.max_rank, runs_root(args.runs))
    adapter = result.adapter
    if args.json:
        payload = {
            "target": "kaggle", "zip": str(result.path), "size_bytes": result.size_bytes, "sha256": result.sha256,
            "files": [{"name": name, "size_bytes": size} for name, size in result.files],
            "checkpoint": result.checkpoint, "adapter_folder": str(adapter.folder), "rank": adapter.rank,
            "max_module_rank": adapter.max_rank, "rank_limit": args.max_rank, "lora_modules": adapter.lora_modules,
            "base_model": adapter.base_model, "warnings": list(result.warnings),
        }  # fmt: skip
        print(json.dumps(payload, indent=2))
        return 0
    print(f"wrote {result.path} ({_size(result.size_bytes)}, sha256 {result.sha256})")
    for name, size in result.files:
        print(f"  {name:<28} {size:>14,} bytes")
    ranks = f"r={adapter.rank}" + (
        f", up to {adapter.max_rank} in rank_pattern" if adapter.max_rank != adapter.rank else ""
    )
    print(
        f"LoRA {ranks} (limit {args.max_rank}; the evaluator's max_lora_rank is {KAGGLE_MAX_RANK}), "
        f"{adapter.lora_modules} modules, from {adapter.folder}"
    )
    print(
        f"Kaggle evaluates it with vLLM on {KAGGLE_BASE_MODEL}: upload {result.path.name} as the submission."
    )
    for warning in result.warnings:
        print(f"harness: warning: {warning}", file=sys.stderr)
    return 0


def _repro(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.runs.store import runs_root
    from reports.repro_package import write_repro_package

    result = write_repro_package(
        args.checkpoint, Path(args.repro).expanduser().resolve(), runs_root(args.runs),
        subset_limit=args.subset_limit, card_file=None if args.card is None else Path(args.card).expanduser(),
        examples=args.examples,
    )  # fmt: skip
    if args.json:
        payload = {
            "target": "repro", "zip": str(result.path), "size_bytes": result.size_bytes, "sha256": result.sha256,
            "files": result.files, "subset_limit": result.subset_limit, "git_revision": result.git_revision,
            "git_dirty": result.git_dirty, "runs": [r.to_record() for r in result.runs],
            "missing_card_fields": list(result.missing_card_fields),
        }  # fmt: skip
        print(json.dumps(payload, indent=2))
        return 0
    print(f"wrote {result.path} ({_size(result.size_bytes)}, {result.files} files, sha256 {result.sha256})")
    revision = result.git_revision or "no git checkout: the installed version"
    print(f"  code: {revision}" + (" + uncommitted changes" if result.git_dirty else ""))
    for r in result.runs:
        value = "n/a" if r.value is None else f"{r.value:.4f}"
        print(f"  {r.checkpoint}  {r.suite}  {r.primary}={value}  n={r.n_samples}  ({r.path})")
    print(
        f"reproduce.sh re-runs the first {result.subset_limit} samples of each suite: harness reproduce {result.path.name}"
    )
    if result.missing_card_fields:
        print(
            f"harness: warning: model card fields not provided: {', '.join(result.missing_card_fields)} "
            "(--card FILE or the registry entry's details)",
            file=sys.stderr,
        )
    return 0


def _size(n: int) -> str:
    if n < 1024:
        return f"{n:,} bytes"
    if n < 1024**2:
        return f"{n / 1024:.1f} KiB"
    if n < 1024**3:
        return f"{n / 1024**2:.1f} MiB"
    return f"{n / 1024**3:.2f} GiB"
