"""`harness export table RUN_OR_CHECKPOINT... --out DIR`: samples.FORMAT (one row per sample: prompt,
target, response, every score as `score.NAME`, every extracted value as `extracted.NAME`) and
metrics.FORMAT (one row per run and metric: value, stderr, ci_low, ci_high, n, primary), as CSV, Parquet
or JSON Lines. The same frames as `harness.load_runs(DIR).samples_df()` and `.metrics_df()`.

Arguments resolve as in `harness report`: run folders, folders holding runs, registry names, STAGE:TAG, or
any checkpoint reference with runs in the runs folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.cli.argtypes import add_runs_flag

FORMATS = ("csv", "parquet", "jsonl")  # reports.export_table.FORMATS (not imported: the CLI starts fast)


def register(targets: Any) -> None:
    p = targets.add_parser(
        "table",
        help="samples and metrics as CSV, Parquet or JSON Lines tables",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "targets", nargs="+", metavar="RUN_OR_CHECKPOINT", help="run folders or checkpoint references"
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the two tables")
    p.add_argument("--format", choices=FORMATS, default="csv", help="table format (default csv)")
    add_runs_flag(p, "runs folder for checkpoint references")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.runs.store import runs_root
    from reports.export_table import export_tables

    print(export_tables(args.targets, args.out, args.format, runs_root(args.runs)).describe())
    return 0
