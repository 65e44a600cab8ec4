"""`harness export inspect RUN_OR_CHECKPOINT... --out DIR`: each run as an inspect-ai `.eval` log.

Browse them with `inspect view --log-dir DIR`, or make a static viewer with
`inspect view bundle --log-dir DIR --output-dir SITE`. Each log holds the run's samples (the exact input,
target, response with any thinking apart, one score per harness score), its metrics with stderr and 95%
CI, the model reference, generation settings and git revision. Arguments are run folders, registry names
(`dpo-1`), `STAGE:TAG` references or any checkpoint reference with runs in the runs folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.cli.argtypes import add_data_dir_flag, add_runs_flag


def register(targets: Any) -> None:
    p = targets.add_parser(
        "inspect",
        help="one inspect-ai .eval log per run (for `inspect view`)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "targets", nargs="+", metavar="RUN_OR_CHECKPOINT", help="run folders or checkpoint references"
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the .eval logs")
    add_runs_flag(p, "runs folder for checkpoint references")
    add_data_dir_flag(p, "the runs' data, to rebuild each sample's exact input")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.runs.store import runs_root
    from reports.export_inspect import export_inspect

    data_dir = None if args.data_dir is None else Path(args.data_dir)
    print(export_inspect(args.targets, args.out, runs_root(args.runs), data_dir).describe())
    return 0
