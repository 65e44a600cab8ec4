"""`harness export wandb RUN_OR_CHECKPOINT...`: runs as Weights & Biases runs (metrics with CIs, a per-sample
table, the manifest as config, the gate verdict) and registered checkpoints as `model` artifacts with their
lineage (base -> sft -> dpo), each eval run using the artifact it evaluated.

Arguments are read like `harness report`'s: run folders, runs folders, registry names, STAGE:TAG or any
checkpoint reference with runs under --runs. W&B's own settings apply: WANDB_API_KEY or `wandb login` for
the key (never written by the harness), WANDB_MODE=offline to write local runs for `wandb sync`,
WANDB_DIR for where they go. Needs the `wandb` extra.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.cli.argtypes import add_runs_flag, whole_number


def add_target_flags(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """--project/--entity (`--wandb-project`/`--wandb-entity` on eval, train and pipeline)."""
    p.add_argument(f"--{prefix}project", metavar="P", help="W&B project (default: harness)")
    p.add_argument(f"--{prefix}entity", metavar="E", help="W&B entity (default: your W&B default entity)")


def register(targets: Any) -> None:
    p = targets.add_parser(
        "wandb", help="runs and checkpoint lineage to Weights & Biases", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("arguments", nargs="+", metavar="RUN_OR_CHECKPOINT", help="what to export")
    add_target_flags(p)
    add_runs_flag(p)
    p.add_argument(
        "--clip",
        type=whole_number(0),
        default=1000,
        metavar="CHARS",
        help="cut table texts (prompt, response, thinking) to CHARS characters (default 1000; 0: whole)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.runs.store import runs_root
    from reports.export_wandb import DEFAULT_PROJECT, WandbTarget, export_to_wandb
    from reports.select import select

    root = runs_root(args.runs)
    selection = select(args.arguments, root)
    runs = [run for checkpoint in selection.order for run in checkpoint.runs.values()]
    target = WandbTarget(args.project or DEFAULT_PROJECT, args.entity, args.clip)
    for done in export_to_wandb(runs, root, target):
        print(done.describe())
    return 0


def export_after(args: argparse.Namespace, run_dirs: list[str], checkpoints: list[str],
                 gates: dict[str, dict[str, Any]]) -> None:  # fmt: skip
    """`--wandb` on eval, train and pipeline: export the runs just made (and the checkpoints trained, with
    their gate verdicts) once the work is done."""
    from pathlib import Path

    from harness.runs.catalog import load_run, registered_entries, with_registered
    from harness.runs.store import runs_root
    from reports.export_wandb import DEFAULT_PROJECT, WandbTarget, export_to_wandb

    root = runs_root(args.runs)
    entries = registered_entries(root, submitted=False) if root.is_dir() else {}
    runs = with_registered([load_run(Path(d).resolve()) for d in dict.fromkeys(run_dirs)], entries)
    target = WandbTarget(args.wandb_project or DEFAULT_PROJECT, args.wandb_entity)
    for done in export_to_wandb(runs, root, target, checkpoints=checkpoints, gates=gates):
        print(f"wandb: {done.describe()}", file=sys.stderr)  # stdout may be --json


def add_wandb_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--wandb", action="store_true", help="export the runs (and trained checkpoints) to W&B when done"
    )
    add_target_flags(p, "wandb-")
