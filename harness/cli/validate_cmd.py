"""`harness validate CHECKPOINT --reference NAME`: a deployment's numbers next to the published ones.

For each suite the reference entry (leaderboard/reference_scores.json, by `name` or `model`) scores, runs
the suite, or reuses its finished run, under the regime the entry names for it, and prints ours, the
published number, the delta in points, our 95% CI and a verdict: `ok` (the CI lies within --tolerance
points of the published number), `differs` (wholly beyond it: exit code 14), `inconclusive` (too few
samples to tell: exit code 11) or `regime differs` (published under a regime we do not run: flagged,
never counted either way).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.cli.argtypes import add_json_flag, add_quiet_flag, add_runs_flag, whole_number

DEFAULT_TOLERANCE = 2.0  # harness.api.validate.DEFAULT_TOLERANCE (not imported: the CLI starts fast)


def register(commands: Any) -> None:
    p = commands.add_parser(
        "validate",
        help="compare a checkpoint with published numbers (ours, published, delta, CI, verdict)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint reference or STAGE:TAG")
    p.add_argument("--reference", required=True, metavar="NAME", help="reference entry: its name or model")
    p.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        metavar="POINTS",
        help=f"largest |ours - published| in percentage points that is ok (default {DEFAULT_TOLERANCE:g})",
    )
    p.add_argument("--limit", type=whole_number(1), metavar="N", help="only the first N samples per suite")
    p.add_argument("--references", type=Path, metavar="FILE", help="reference scores file (default: shipped)")
    add_runs_flag(p)
    add_json_flag(p)
    add_quiet_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.api.validate import validate

    result = validate(
        args.checkpoint, args.reference, tolerance=args.tolerance, limit=args.limit, runs=args.runs,
        references_path=args.references, progress=not args.quiet,
    )  # fmt: skip
    if args.json:
        import json

        print(json.dumps(result.to_record(), indent=2, ensure_ascii=False))
    else:
        from reports.validate_table import render_validation

        print(render_validation(result))
    return int(result.exit_code)
