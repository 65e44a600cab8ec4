"""`harness curate`: build an RL prompt pool. Samples k completions of every prompt with a checkpoint and
keeps the prompts whose pass rate lies in --band (both edges included), so GRPO groups carry a signal.

Prompts: --prompts gsm8k:train | mbpp:train | alice:train | alice-synth:SEED, or --data FILE (open-instruct
RLVR rows, filtered by --datasets, or a pool written by an earlier curate). Sampling runs through the
evaluation runner: an interrupted curate resumes, and a re-run with another --band sends no request. The
pool (--out) loads with `data.path:` in an RLVR stage config.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from harness.cli.argtypes import (
    adapter_options,
    add_backend_flags,
    add_data_dir_flag,
    add_json_flag,
    add_quiet_flag,
    add_runs_flag,
    whole_number,
)

_positive = whole_number(1)


def register(commands: Any) -> None:
    p = commands.add_parser(
        "curate", help="keep RL prompts whose pass rate lies in a band", description=__doc__
    )
    p.add_argument(
        "--checkpoint", required=True, metavar="REF", help="the policy that samples (any reference)"
    )
    p.add_argument(
        "--prompts", metavar="SOURCE", help="gsm8k:train, mbpp:train, alice:train, alice-synth:SEED"
    )
    p.add_argument("--data", metavar="FILE", help="JSONL of open-instruct RLVR rows, or a curated pool")
    p.add_argument(
        "--datasets",
        action="append",
        metavar="NAME",
        help="with --data: keep rows of this dataset (repeatable)",
    )
    p.add_argument("-k", type=_positive, default=8, metavar="K", help="completions per prompt (default 8)")
    p.add_argument(
        "--band", nargs=2, type=float, default=[0.2, 0.8], metavar=("LOW", "HIGH"),
        help="keep pass rates in [LOW, HIGH], edges included (default 0.2 0.8)",
    )  # fmt: skip
    p.add_argument("--limit", type=_positive, help="only the first N prompts")
    p.add_argument("--out", required=True, metavar="FILE", help="the pool to write (JSONL)")
    add_runs_flag(p, "runs folder")
    p.add_argument("--seed", type=int, default=0, help="sampling seed sent with every request (default 0)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    p.add_argument("--top-p", type=float, default=1.0, help="top_p (default 1.0)")
    p.add_argument("--max-tokens", type=_positive, help="max new tokens (default: the suite's pinned value)")
    add_data_dir_flag(p, "local upstream data files")
    add_backend_flags(p)
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the response cache")
    p.add_argument("--fresh", action="store_true", help="discard the finished samples and sample again")
    add_json_flag(p, "print a JSON summary on stdout")
    add_quiet_flag(p, "no progress bar or lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.api.evaluate import evaluate_suites, run_sync
    from harness.data import resolve_data_source
    from harness.lineage import resolve_checkpoint
    from harness.runs.store import runs_root
    from training.curate import Band, curate_settings, load_prompt_set, rate_run, write_curated_pool

    band = Band(args.band[0], args.band[1])
    root = runs_root(args.runs)
    ref, entry = resolve_checkpoint(args.checkpoint, root)
    data = resolve_data_source(args.data_dir)
    prompt_set = load_prompt_set(args.prompts, args.data, args.datasets, data, args.limit)
    suite = prompt_set.suite()
    settings = curate_settings(suite, args.k, args.temperature, args.top_p, args.max_tokens, args.seed)
    started = time.perf_counter()
    results = run_sync(
        evaluate_suites(
            ref, entry, [(suite, settings)], limit=None, root=root, data=data, backend=adapter_options(args),
            cache=not args.no_cache, fresh=args.fresh, progress=not args.quiet,
        ),
        "evaluate",
    )  # fmt: skip
    seconds = time.perf_counter() - started
    (outcome,) = results.runs
    curation = rate_run(suite, outcome.run_dir, args.k, band)
    out = Path(args.out).expanduser().resolve()
    kept = write_curated_pool(out, curation, ref.raw)
    counts = curation.counts()
    inv = outcome.invocation
    if args.json:
        from training.curate import histogram

        summary = {
            "checkpoint": ref.raw, "source": prompt_set.source, "k": args.k, "band": [band.low, band.high],
            "prompts": len(curation.rated), "kept": kept, "too_easy": counts["too_easy"],
            "too_hard": counts["too_hard"], "mean_pass_rate": round(curation.mean_pass_rate(), 6),
            "histogram": [{"label": r.label, "count": r.count, "verdict": r.verdict} for r in histogram(curation)],
            "out": str(out), "run_dir": str(outcome.run_dir), "seconds": round(seconds, 3),
            "invocation": {"generated": inv.generated, "cache_hits": inv.cache_hits, "resumed": inv.resumed},
        }  # fmt: skip
        print(json.dumps(summary, indent=2))
        return 0
    _print_summary(args, ref.raw, prompt_set.source, curation, kept, out, outcome, seconds)
    return 0


def _print_summary(
    args: argparse.Namespace, checkpoint: str, source: str, curation: Any, kept: int, out: Any,
    outcome: Any, seconds: float,
) -> None:  # fmt: skip
    from training.curate import render_histogram

    counts, band, inv = curation.counts(), curation.band, outcome.invocation
    print(
        f"curate: {len(curation.rated)} prompts from {source}, k={args.k} completions each by {checkpoint} "
        f"(temperature {args.temperature:g}); mean pass rate {curation.mean_pass_rate():.3f}"
    )
    print(render_histogram(curation))
    print(
        f"kept {kept} (pass rate {band.describe()}), too easy {counts['too_easy']} (above {band.high:g}), "
        f"too hard {counts['too_hard']} (below {band.low:g}) -> {out}"
    )
    print(
        f"sampling: generated {inv.generated} requests, cache hits {inv.cache_hits}, resumed {inv.resumed} "
        f"samples, {seconds:.1f} s -> {outcome.run_dir}"
    )
    if kept == 0:
        print("note: no prompt lies in the band; widen --band, raise -k, or curate with another checkpoint.")
