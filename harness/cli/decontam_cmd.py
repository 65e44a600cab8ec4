"""`harness decontam DATA...`: find training rows that overlap the registered suites' prompts.

Every string field of every row (JSONL, a JSON array, CSV, or plain text with one row per line) is
checked against every suite's test prompts and reference answers: a prompt contained verbatim, or shared
13-grams that cover at least 40% of a sample's non-boilerplate tokens (the rule and its measurements are in
training/decontam.py). Prints a table per suite and the first hits with file:line; exit 0 when clean,
12 when contaminated. Training stages run the same check and stop unless --allow-contamination is given.
"""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.argtypes import add_data_dir_flag, add_json_flag, add_quiet_flag, whole_number


def register(commands: Any) -> None:
    p = commands.add_parser(
        "decontam", help="find overlaps between training data and the suites' prompts", description=__doc__
    )
    p.add_argument("data", nargs="+", metavar="DATA", help="training files (.jsonl, .json, .csv, .txt)")
    p.add_argument(
        "--suite", action="append", metavar="NAME", help="check only this suite (repeatable; default: all)"
    )
    p.add_argument(
        "--ngram", type=whole_number(3), default=13, metavar="N", help="n-gram length (default 13)"
    )
    add_data_dir_flag(p, "benchmark data")
    p.add_argument(
        "--max-hits", type=whole_number(0), default=10, metavar="K", help="hits to list (default 10)"
    )
    add_json_flag(p, "print the report as JSON on stdout")
    add_quiet_flag(p, "print only the one-line result")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from harness.data import resolve_data_source
    from training.decontam import contamination_error, scan

    report = scan([Path(p) for p in args.data], resolve_data_source(args.data_dir), args.suite, args.ngram)
    if args.json:
        print(json.dumps(report.to_record(), indent=2, ensure_ascii=False))
    elif args.quiet:
        print(report.summary(args.max_hits).splitlines()[-1])
    else:
        print(report.summary(args.max_hits))
    if not report.clean:
        raise contamination_error(report)
    return 0
