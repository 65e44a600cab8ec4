"""`harness train sft|dpo|rlvr --backend local|tinker --config FILE`: train one stage, register the
checkpoint with its lineage, evaluate it, gate it against its parent and rebuild the leaderboard.

The config is YAML; `harness train sft --example-config` prints every key with its default and meaning.
Flags override the file. Contaminated training data (an exact or 13-gram overlap with any registered
suite's prompts, see `harness decontam`) stops the stage before training unless --allow-contamination is
given; the waiver is recorded in the registry entry. Exit codes: 0 trained (whatever the gate said, unless
--require-pass), the gate's 10 / 11 with --require-pass, 12 contaminated data, 2 bad config or flags.
"""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.argtypes import add_data_dir_flag, add_json_flag, add_quiet_flag, add_runs_flag, whole_number
from harness.cli.export_wandb_cmd import add_wandb_flags


def register(commands: Any) -> None:
    p = commands.add_parser("train", help="train a stage (sft, dpo, rlvr) and evaluate, gate, publish it",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("stage", choices=("sft", "dpo", "rlvr"), help="what to train")
    p.add_argument(
        "--backend",
        choices=("local", "tinker"),
        default="local",
        help="local: TRL + peft; tinker: the Tinker SDK",
    )
    p.add_argument("--config", metavar="FILE", help="stage config (YAML); see --example-config")
    p.add_argument(
        "--example-config", action="store_true", help="print a commented config with every default and exit"
    )
    p.add_argument("--base", metavar="REF", help="start from this checkpoint (overrides `base`)")
    p.add_argument("--name", help="registry name of the new checkpoint (overrides `name`)")
    p.add_argument("--output-dir", metavar="DIR", help="checkpoints folder (overrides `output_dir`)")
    p.add_argument(
        "--max-steps", type=whole_number(1), metavar="N", help="sft/dpo: stop after N optimizer steps"
    )
    p.add_argument(
        "--rl-steps", type=whole_number(1), metavar="N", help="rlvr: optimizer steps (overrides rl.steps)"
    )
    p.add_argument(
        "--allow-contamination", action="store_true", help="train on data that overlaps a suite (recorded)"
    )
    add_runs_flag(p, "runs folder and registry")
    add_data_dir_flag(p, "benchmark data for evaluation and decontamination")
    p.add_argument("--no-eval", action="store_true", help="train and register only")
    p.add_argument(
        "--require-pass", action="store_true", help="exit with the gate's code unless it says PASS"
    )
    add_json_flag(p, "print the stage summary as JSON on stdout")
    add_quiet_flag(p, "no progress lines")
    add_wandb_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    from harness.errors import UsageError
    from training.config import StageConfig, TrainRequest, load_stage_config, with_overrides
    from training.schema import example_yaml

    if args.example_config:
        print(f"# harness train {args.stage} --backend {args.backend} --config FILE\n"
              + example_yaml(StageConfig))  # fmt: skip
        return 0
    if not args.config:
        raise UsageError(
            "harness train needs --config FILE.", "`harness train sft --example-config` prints one."
        )
    path = Path(args.config).expanduser()
    config = with_overrides(
        load_stage_config(path), base=args.base, name=args.name, output_dir=args.output_dir,
        max_steps=args.max_steps, rl_steps=args.rl_steps,
    )  # fmt: skip
    if args.no_eval:
        config = replace(config, eval=replace(config.eval, suites=(), gate=False, leaderboard=None))
    request = TrainRequest(args.stage, args.backend, config, str(path), args.allow_contamination)
    return report(request, args, path.parent)


def report(request: Any, args: argparse.Namespace, base_dir: Any) -> int:
    import json

    from harness.data import resolve_data_source
    from harness.runs.store import runs_root
    from training.stage import run_stage

    outcome = run_stage(
        request, runs_root(args.runs), resolve_data_source(args.data_dir), args.quiet, base_dir
    )
    if args.json:
        print(json.dumps(outcome.to_record(), indent=2))
    else:
        print(describe(outcome))
    if args.wandb:
        from harness.cli.export_wandb_cmd import export_after

        record = outcome.to_record()
        export_after(args, [e.run_dir for e in outcome.evals], [outcome.entry.name],
                     {outcome.entry.name: {**record["gate"], "against": outcome.entry.parent}})  # fmt: skip
    if args.require_pass and outcome.gate_exit not in (None, 0):
        return int(outcome.gate_exit)
    return 0


def describe(outcome: Any) -> str:
    from harness.table import render

    entry = outcome.entry
    lines = [
        f"{'trained' if outcome.trained else 'already trained'}: {entry.name} [{entry.stage}] {entry.reference}",
        f"  parent {entry.parent}; steps {entry.details.get('steps')}; data sha256 {str(entry.data_sha256)[:12]}; "
        f"contamination {entry.details.get('data', {}).get('contamination', {}).get('status', '?')}",
    ]
    rows = [[e.suite, e.primary, _pct(e.primary_value()), e.run_dir] for e in outcome.evals]
    if rows:
        lines.append(render(["suite", "primary", "%", "run"], rows, right=(2,)))
    if outcome.gate_verdict is not None:
        lines.append(f"gate vs {entry.parent}: {outcome.gate_verdict}")
    if outcome.site:
        lines.append(f"leaderboard: {outcome.site}/index.html")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"
