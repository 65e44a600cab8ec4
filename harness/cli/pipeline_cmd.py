"""`harness pipeline FILE`: run a training recipe stage by stage (base -> SFT -> DPO, or SFT -> RLVR rounds),
evaluating, gating and publishing each checkpoint, and tag the best one by a declared validation metric.

See training/pipeline.py (or the README) for the file format. Re-running the same file resumes: stages
already in the registry are not trained again. Exit codes: 0 done, 12 contaminated data, 2 bad file.
"""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.argtypes import add_data_dir_flag, add_json_flag, add_quiet_flag, add_runs_flag
from harness.cli.export_wandb_cmd import add_wandb_flags


def register(commands: Any) -> None:
    p = commands.add_parser("pipeline", help="run a training recipe and keep the best checkpoint",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("file", metavar="FILE", help="pipeline YAML")
    add_runs_flag(p, "runs folder and registry")
    add_data_dir_flag(p, "benchmark data for evaluation and decontamination")
    p.add_argument(
        "--allow-contamination", action="store_true", help="train on data that overlaps a suite (recorded)"
    )
    add_json_flag(p, "print the summary as JSON on stdout")
    add_quiet_flag(p, "no progress lines")
    add_wandb_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from harness.data import resolve_data_source
    from harness.runs.store import runs_root
    from harness.table import render
    from training.pipeline import run_pipeline

    summary = run_pipeline(Path(args.file).expanduser().resolve(), runs_root(args.runs),
                           resolve_data_source(args.data_dir), args.allow_contamination, args.quiet)  # fmt: skip
    if args.wandb:
        from harness.cli.export_wandb_cmd import export_after

        stages = summary["stages"]
        export_after(args, [e["run_dir"] for stage in stages for e in stage["evals"]],
                     [stage["checkpoint"]["name"] for stage in stages],
                     {stage["checkpoint"]["name"]: {**stage["gate"], "against": stage["checkpoint"]["parent"]}
                      for stage in stages if stage["gate"]["verdict"] is not None})  # fmt: skip
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    rows = []
    values = {v["name"]: v["value"] for v in summary.get("validation", [])}
    for stage in summary["stages"]:
        entry = stage["checkpoint"]
        value = values.get(entry["name"])
        rows.append([entry["name"], entry["stage"], entry["parent"] or "-", str(stage["gate"]["verdict"]),
                     "-" if value is None else f"{100 * value:.1f}"])  # fmt: skip
    print(f"pipeline {summary['pipeline']}")
    print(render(["checkpoint", "stage", "parent", "gate", "validation %"], rows, right=(4,)))
    if "best" in summary:
        best = summary["best"]
        print(f"best: {best['name']} ({best['tag']}) = {best['value']}")
    print(f"summary: {summary['summary_file']}")
    return 0
