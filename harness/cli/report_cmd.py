"""`harness report`: a Markdown and a self-contained HTML report on runs or checkpoints.

Arguments are run folders (or folders holding runs), registry names (`dpo-1`), `STAGE:TAG` references
(`sft:latest`) or any checkpoint reference that has runs in the runs folder (`embedded`, `replay:F`).
A checkpoint and its parent, or exactly two checkpoints, are compared sample by sample.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.cli.argtypes import add_runs_flag, whole_number

_non_negative = whole_number(0)


def register(commands: Any) -> None:
    p = commands.add_parser(
        "report",
        help="Markdown + HTML report: metrics, plots, comparison, examples, model card",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "targets", nargs="+", metavar="RUN_OR_CHECKPOINT", help="run folders or checkpoint references"
    )
    p.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="folder for report.md and report.html"
    )
    add_runs_flag(p, "runs folder for checkpoint references")
    p.add_argument(
        "--card",
        type=Path,
        metavar="FILE",
        help="model card fields (YAML or JSON: training_data, intended_use, limitations, ...)",
    )
    p.add_argument(
        "--examples",
        type=_non_negative,
        default=3,
        metavar="N",
        help="wins and losses shown per suite (default 3)",
    )
    p.add_argument(
        "--sweep-key",
        default="beta",
        metavar="KEY",
        help="registry detail that orders a family of checkpoints (same parent and stage) into a tradeoff "
        "curve of refusal rate vs task performance (default beta; dotted keys reach into nested details)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.runs.store import runs_root
    from reports.report import build_report

    summary = build_report(
        args.targets, args.out, runs_root(args.runs), args.card, args.examples, sweep_key=args.sweep_key
    )
    print(summary.describe())
    return 0
