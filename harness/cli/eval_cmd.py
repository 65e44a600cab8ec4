"""`harness eval`: score one checkpoint on one or more suites; resumes and reuses cached responses."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

from harness.cli.argtypes import adapter_options, add_backend_flags, whole_number
from harness.types import GenerationSettings

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
    p = commands.add_parser("eval", help="evaluate a checkpoint", description=__doc__)
    p.add_argument(
        "--checkpoint", required=True, metavar="REF", help="what to evaluate (see README: checkpoint forms)"
    )
    p.add_argument("--suite", action="append", metavar="NAME", help="suite to run (repeatable; default: all)")
    p.add_argument("--limit", type=_positive, help="only the first N samples of each suite")
    p.add_argument("--seed", type=int, default=0, help="sampling seed sent with every request (default 0)")
    p.add_argument("--out", metavar="DIR", help="runs folder (default: $HARNESS_RUNS_DIR or ./runs)")
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="local upstream data files (default: $HARNESS_DATA_DIR, else the hub)",
    )
    add_backend_flags(p)
    p.add_argument("--max-tokens", type=_positive, help="override the suite's pinned max new tokens")
    p.add_argument(
        "--samples",
        type=_positive,
        default=1,
        metavar="N",
        help="responses per prompt (pass@k for code); N > 1 samples at --temperature (default 0.8)",
    )
    p.add_argument(
        "--temperature", type=float, help="override the suite's decoding temperature (pinned: greedy)"
    )
    p.add_argument("--top-p", type=float, help="override top_p (default 1.0)")
    p.add_argument(
        "--judge",
        default="refusal-heuristic",
        metavar="NAME",
        help="safety judge: refusal-heuristic (default, offline) or wildguard",
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
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    p.add_argument(
        "--all-metrics",
        action="store_true",
        help="print every metric, per-category breakdowns included (default: each suite's headline metrics)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or info lines (for CI)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from adapters import create_adapter
    from harness.data import resolve_data_source
    from harness.lineage import resolve_checkpoint
    from harness.runner import EvalOutcome, EvalSpec, evaluate
    from harness.runs.store import runs_root
    from harness.suite import SuiteOptions
    from suites import default_suites, get_suite

    root = runs_root(args.out)
    # A STAGE:TAG reference runs (and stores its runs) as the concrete checkpoint it names today.
    ref, entry = resolve_checkpoint(args.checkpoint, root)
    data = resolve_data_source(args.data_dir)
    suite_options = SuiteOptions(judge=args.judge)
    suites = [get_suite(name, suite_options) for name in (args.suite or default_suites(data))]
    adapter = create_adapter(ref, adapter_options(args, args.price_table))
    progress = sys.stderr.isatty() and not args.quiet

    judge = _attach_judge(suites, args)

    async def run_all() -> list[tuple[Any, EvalOutcome]]:
        from harness.pricing import check_budget, estimate_cost, with_estimates

        outcomes = []
        try:
            specs = []
            for suite in suites:
                settings = _settings_for(suite.default_settings(), args)
                specs.append(EvalSpec(
                    ref,
                    suite,
                    settings,
                    args.limit,
                    data,
                    root,
                    not args.no_cache,
                    args.fresh,
                    lineage=None if entry is None else entry.to_record(),
                ))  # fmt: skip
            # The whole invocation is estimated (and refused) before any suite generates anything.
            estimate = await estimate_cost(adapter, specs, require_price=args.max_cost is not None)
            check_budget(estimate, args.max_cost, adapter.identity())
            if estimate is not None and estimate.requests and not args.quiet:
                print(f"harness: cost estimate: {estimate.describe()}.", file=sys.stderr)
            for spec in with_estimates(specs, estimate):
                outcomes.append((spec.suite, await evaluate(spec, adapter, progress)))
        finally:
            await adapter.aclose()
            if judge is not None:
                await judge.aclose()
        return outcomes

    outcomes = asyncio.run(run_all())
    if args.json:
        print(json.dumps([_as_json(suite, outcome) for suite, outcome in outcomes], indent=2))
    else:
        _print_table(ref.raw, outcomes, all_metrics=args.all_metrics)
    return 0


def _attach_judge(suites: list[Any], args: argparse.Namespace) -> Any:
    """A model judge (wildguard) is built once and shared by every suite that scores with one."""
    if args.judge == "refusal-heuristic" or not any(hasattr(s, "async_judge") for s in suites):
        return None
    from adapters import AdapterOptions
    from suites.safety_judges import create_judge

    judge = create_judge(args.judge, args.judge_checkpoint, AdapterOptions(timeout_s=args.timeout))
    for suite in suites:
        if hasattr(suite, "async_judge"):
            suite.async_judge = judge
    return judge


def _settings_for(pinned: GenerationSettings, args: argparse.Namespace) -> GenerationSettings:
    temperature = args.temperature
    if temperature is None:
        # N identical greedy samples would say nothing about pass@k.
        temperature = 0.8 if args.samples > 1 else pinned.temperature
    return replace(
        pinned,
        seed=args.seed,
        n=args.samples,
        temperature=temperature,
        top_p=pinned.top_p if args.top_p is None else args.top_p,
        max_tokens=args.max_tokens or pinned.max_tokens,
    )


def _as_json(suite: Any, outcome: Any) -> dict[str, Any]:
    inv = outcome.invocation
    return {
        "suite": suite.name,
        "suite_version": suite.version,
        "run_dir": str(outcome.run_dir),
        "n_samples": outcome.n_samples,
        "primary": suite.primary_metric,
        "metrics": {name: m.to_record() for name, m in outcome.metrics.items()},
        "invocation": {
            "generated": inv.generated,
            "cache_hits": inv.cache_hits,
            "resumed": inv.resumed,
            "retries": inv.retries,
            "repaired_bytes": inv.repaired_bytes,
        },
    }


def _print_table(checkpoint: str, outcomes: list[Any], all_metrics: bool) -> None:
    from harness.table import METRIC_HEADERS, metric_cells, render

    rows, hidden = [], 0
    for suite, outcome in outcomes:
        for name, metric in outcome.metrics.items():
            if not all_metrics and name not in suite.headline_metrics:
                hidden += 1
                continue
            marker = "*" if name == suite.primary_metric else ""
            rows.append([suite.name, name + marker, *metric_cells(metric)])
    print(f"checkpoint: {checkpoint}   (* primary metric; values in %, 95% CI)")
    print(render(["suite", "metric", *METRIC_HEADERS], rows, right=(2, 3, 5)))
    if hidden:
        print(f"({hidden} per-category metrics not shown: add --all-metrics, or `harness show RUN`)")
    for suite, outcome in outcomes:
        inv = outcome.invocation
        print(
            f"{suite.name}: {outcome.n_samples} samples; this run generated {inv.generated}, "
            f"cache hits {inv.cache_hits}, resumed {inv.resumed}"
            + (f", retries {inv.retries}" if inv.retries else "")
            + (f", repaired a torn last line ({inv.repaired_bytes} bytes)" if inv.repaired_bytes else "")
            + f" -> {outcome.run_dir}"
        )
