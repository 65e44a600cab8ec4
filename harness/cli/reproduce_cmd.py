"""`harness reproduce PACKAGE [--subset SUITE[:LIMIT] ...] [--runs DIR]`: verify a reproducibility package
(`harness package CHECKPOINT... --repro OUT.zip`, or the folder it was extracted to), re-run its declared
subset, and compare with the packaged results (docs/reproducibility.md).

Exit codes: 0 every suite reproduced; 4 the package was tampered with or is malformed (the message names
the file); 13 a suite differs (named); 3 or 5 a checkpoint cannot be re-run here (endpoint unreachable,
backend not installed), reported as "not reproducible here".
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from harness.cli.argtypes import add_data_dir_flag, add_json_flag, add_quiet_flag


def register(commands: Any) -> None:
    p = commands.add_parser(
        "reproduce", help="verify a reproducibility package and re-run its subset", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("package", metavar="PACKAGE", help="the package zip, or the folder it was extracted to")
    p.add_argument(
        "--subset",
        action="append",
        default=[],
        metavar="SUITE[:LIMIT]",
        help="re-run this suite on its first LIMIT samples (repeatable; default: the package's declared subset)",
    )
    p.add_argument(
        "--runs", metavar="DIR", help="runs folder for the re-runs (default: a temporary one, removed after)"
    )
    add_data_dir_flag(p)
    add_quiet_flag(p)
    add_json_flag(p, "print the comparison as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from reports.repro_rerun import reproduce

    runs = None if args.runs is None else Path(args.runs).expanduser().resolve()
    result = reproduce(
        Path(args.package).expanduser().resolve(), args.subset, runs=runs, data_dir=args.data_dir,
        progress=not args.quiet,
    )  # fmt: skip
    if args.json:
        payload = {
            "exit_code": result.exit_code, "files_verified": result.files_verified, "notes": list(result.notes),
            "checks": [
                {"checkpoint": c.checkpoint, "suite": c.suite, "limit": c.limit, "n": c.n, "identical": c.identical,
                 "packaged": c.packaged, "rerun": c.rerun, "ci": None if c.ci is None else list(c.ci),
                 "compared_by": c.compared_by, "verdict": c.verdict, "detail": c.detail}
                for c in result.checks
            ],
        }  # fmt: skip
        print(json.dumps(payload, indent=2))
    else:
        print(f"verified {result.files_verified} files against MANIFEST.json; packaged metrics re-graded")
        for note in result.notes:
            print(f"  note: {note}")
        print(result.table())
    if result.exit_code:
        print(f"harness: error: {_failure(result)}", file=sys.stderr)
    return result.exit_code


def _failure(result: Any) -> str:
    from reports.repro_rerun import DIFFERS, NOT_HERE

    differ = sorted({c.suite for c in result.checks if c.verdict == DIFFERS})
    if differ:
        return f"the re-run differs from the package on: {', '.join(differ)}."
    missing = [f"{c.checkpoint} / {c.suite}: {c.detail}" for c in result.checks if c.verdict == NOT_HERE]
    return "; ".join(missing)
