"""`harness rescore RUN`: recompute every sample's score and the metrics from stored responses.

No model is called. Use it after a scorer fix, or to check that stored scores are reproducible.
"""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.argtypes import add_data_dir_flag, add_quiet_flag, add_runs_flag


def register(commands: Any) -> None:
    p = commands.add_parser("rescore", help="re-grade a run from its stored responses", description=__doc__)
    p.add_argument(
        "run", metavar="RUN", help="run folder, or a unique part of its path under the runs folder"
    )
    add_runs_flag(p, deprecated_out=True)
    add_data_dir_flag(p)
    p.add_argument(
        "--judge-checkpoint", metavar="REF", help="the classifier, for runs scored by a model judge"
    )
    add_quiet_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.api.rescore import rescore
    from harness.table import METRIC_HEADERS, metric_cells, render

    result = rescore(args.run, runs=args.runs, data_dir=args.data_dir, judge_checkpoint=args.judge_checkpoint)
    rows = [
        [name + ("*" if name == result.primary else ""), *metric_cells(m)]
        for name, m in result.metrics.items()
    ]
    print(render(["metric", *METRIC_HEADERS], rows, right=(1, 2, 4)))
    print(f"rescored {result.n_samples} samples of {result.run_dir}; {result.changed} changed their scores")
    return 0
