"""`harness eval`: score one or more checkpoints on one or more suites; resumes and reuses cached responses.

Every suite of every checkpoint runs at once; requests to one endpoint share one bounded queue. With one
--checkpoint, --json prints a list of suite records; with several, a list of
{"checkpoint": REF, "runs": [suite records]}, one per checkpoint in the order given."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from harness.cli.argtypes import (
    adapter_options,
    add_backend_flags,
    add_data_dir_flag,
    add_json_flag,
    add_quiet_flag,
    add_reasoning_flags,
    add_runs_flag,
    reasoning_spec,
    whole_number,
)
from harness.cli.export_wandb_cmd import add_wandb_flags

if TYPE_CHECKING:
    from harness.api.evaluate import EvalResults

_positive = whole_number(1)


def _usd(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an amount in USD, got '{text}'") from None
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text}")
    return value


def register(commands: Any) -> None:
    p = commands.add_parser("eval", help="evaluate one or more checkpoints", description=__doc__)
    p.add_argument(
        "--checkpoint",
        action="append",
        required=True,
        metavar="REF",
        help="what to evaluate (docs/checkpoints.md: the forms); repeatable: all are evaluated at once, "
        "sharing a server's request queue where they share its base URL",
    )
    p.add_argument("--suite", action="append", metavar="NAME", help="suite to run (repeatable; default: all)")
    p.add_argument("--limit", type=_positive, help="only the first N samples of each suite")
    p.add_argument("--seed", type=int, help="sampling seed sent with every request (default 0)")
    p.add_argument(
        "--shard",
        metavar="I/N",
        help="only shard I of N of each suite's samples (0 <= I < N; a Slurm array task); the shards of a "
        "run are merged into the normal run layout when all are done",
    )
    add_runs_flag(p, deprecated_out=True)
    add_data_dir_flag(p)
    add_backend_flags(p)
    p.add_argument("--max-tokens", type=_positive, help="override the suite's pinned max new tokens")
    p.add_argument(
        "--samples",
        type=_positive,
        metavar="N",
        help="responses per prompt (pass@k for code; default 1); N > 1 samples at --temperature (default 0.8)",
    )
    p.add_argument(
        "--temperature", type=float, help="override the suite's decoding temperature (pinned: greedy)"
    )
    p.add_argument("--top-p", type=float, help="override top_p (default 1.0)")
    p.add_argument(
        "--logprobs",
        action="store_true",
        help="store each generated token's log-probability where the backend gives them (the report's "
        "calibration section); part of the settings hash",
    )
    p.add_argument(
        "--ask-confidence",
        action="store_true",
        help='ask the model to end each response with "Confidence: N%%" (chat models; gsm8k, alice, mbpp): '
        "the line is cut off before scoring and read by the report's calibration section; part of the "
        "settings hash",
    )
    add_reasoning_flags(p)
    p.add_argument(
        "--regime",
        metavar="NAME",
        help="evaluation regime: harness (the pinned settings, default) or tulu (OLMES's Tülu 3 prompts and "
        "limits, for GSM8K and IFEval: numbers that stand next to the OLMo 2 rows); part of the settings hash",
    )
    p.add_argument(
        "--judge",
        metavar="NAME",
        help="safety judge: refusal-heuristic (default, offline) or wildguard",
    )
    p.add_argument(
        "--class",
        dest="class_config",
        metavar="FILE",
        help="a class config (leaderboard.yaml): run its suites, limit, decoding and judge, so the runs qualify",
    )
    p.add_argument(
        "--judge-checkpoint", metavar="REF", help="the WildGuard classifier, as any --checkpoint form"
    )
    p.add_argument(
        "--max-cost",
        type=_usd,
        metavar="USD",
        help="refuse to start when the cost estimate (an upper bound) exceeds USD; Tinker checkpoints only",
    )
    p.add_argument(
        "--price-table", metavar="FILE", help='JSON {"MODEL": {"prompt": USD, "sample": USD}} per 1M tokens'
    )
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the response cache")
    p.add_argument("--fresh", action="store_true", help="discard this run's finished samples and start over")
    add_json_flag(p, "print the results as JSON on stdout")
    p.add_argument(
        "--all-metrics",
        action="store_true",
        help="print every metric, per-category breakdowns included (default: each suite's headline metrics)",
    )
    add_quiet_flag(p)
    add_wandb_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.api.evaluate import Generation
    from harness.api.evaluate_many import evaluate_many
    from harness.reasoning import NO_REASONING
    from harness.runner import Shard
    from harness.suite import DEFAULT_REGIME, SuiteOptions

    suites, limit, judge = args.suite, args.limit, args.judge or "refusal-heuristic"
    chosen = {
        "seed": args.seed, "samples": args.samples, "temperature": args.temperature, "top_p": args.top_p,
        "max_tokens": args.max_tokens, "thinking_budget": args.thinking_budget,
        "logprobs": args.logprobs or None,
    }  # fmt: skip
    reasoning = reasoning_spec(args)
    if args.class_config:
        from pathlib import Path

        from leaderboard.class_config import class_eval, load_class_config

        config = load_class_config(Path(args.class_config))
        pinned = class_eval(config, suites, limit, chosen, args.judge, reasoning=reasoning)
        suites, limit, judge, chosen, reasoning = (
            list(pinned.suites),
            pinned.limit,
            pinned.judge,
            dict(pinned.generation),
            pinned.reasoning,
        )
    generation = Generation(**{k: v for k, v in chosen.items() if v is not None})
    every = evaluate_many(
        args.checkpoint,
        suites,
        limit=limit,
        runs=args.runs,
        data_dir=args.data_dir,
        generation=generation,
        backend=adapter_options(args, args.price_table),
        scoring=SuiteOptions(
            judge,
            args.judge_checkpoint,
            judge_timeout_s=args.timeout,
            reasoning=reasoning or NO_REASONING,
            regime=args.regime or DEFAULT_REGIME,
            confidence="verbalized" if args.ask_confidence else None,
        ),
        max_cost=args.max_cost,
        cache=not args.no_cache,
        fresh=args.fresh,
        progress=not args.quiet,
        shard=None if args.shard is None else Shard.parse(args.shard),
    )
    if args.json:
        records: list[Any] = (
            every[0].to_records()
            if len(every) == 1
            else [{"checkpoint": r.checkpoint, "runs": r.to_records()} for r in every]
        )
        print(json.dumps(records, indent=2))
    else:
        for index, results in enumerate(every):
            if index:
                print()
            print_results_table(results, all_metrics=args.all_metrics)
    if args.wandb:
        from harness.cli.export_wandb_cmd import export_after

        export_after(args, [str(run.run_dir) for r in every for run in r.runs], [], {})
    return 0


def print_results_table(results: EvalResults, all_metrics: bool) -> None:
    from harness.table import METRIC_HEADERS, metric_cells, render

    rows, hidden = [], 0
    for run in results.runs:
        for name, metric in run.metrics.items():
            if not all_metrics and name not in run.headline:
                hidden += 1
                continue
            marker = "*" if name == run.primary else ""
            rows.append([run.suite, name + marker, *metric_cells(metric)])
    print(f"checkpoint: {results.checkpoint}   (* primary metric; values in %, 95% CI)")
    print(render(["suite", "metric", *METRIC_HEADERS], rows, right=(2, 3, 5)))
    if hidden:
        print(f"({hidden} per-category metrics not shown: add --all-metrics, or `harness show RUN`)")
    for run in results.runs:
        inv = run.invocation
        print(
            f"{run.suite}: {run.n_samples} samples; this run generated {inv.generated}, "
            f"cache hits {inv.cache_hits}, resumed {inv.resumed}"
            + (f", retries {inv.retries}" if inv.retries else "")
            + (f", repaired a torn last line ({inv.repaired_bytes} bytes)" if inv.repaired_bytes else "")
            + f" -> {run.run_dir}"
            + (
                f", extended from {inv.extended_from} ({inv.resumed} samples reused)"
                if inv.extended_from
                else ""
            )
        )
        if run.reasoning is not None:
            print(f"{run.suite}: {run.reasoning.describe()}")
            if run.reasoning.unterminated:
                shown = ", ".join(run.reasoning.unterminated[:10])
                more = len(run.reasoning.unterminated) - 10
                print(
                    f"{run.suite}: ended inside reasoning (no answer, scored 0): {shown}"
                    + (f" and {more} more (metrics.json lists them)" if more > 0 else "")
                )
