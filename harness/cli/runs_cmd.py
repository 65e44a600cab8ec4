"""`harness runs`: list the runs under the runs folder with their status, the settings that tell them
apart (limit, max_tokens, temperature, judge) and their primary metric; as a table, JSON or CSV."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from harness.cli.argtypes import add_json_flag, add_runs_flag

if TYPE_CHECKING:
    from harness.runs.listing import RunListing

STATUSES = ("running", "complete", "interrupted", "failed")


def register(commands: Any) -> None:
    p = commands.add_parser("runs", help="list runs", description=__doc__)
    add_runs_flag(p, deprecated_out=True)
    p.add_argument("--checkpoint", metavar="TEXT", help="only runs whose checkpoint reference contains TEXT")
    p.add_argument("--suite", metavar="NAME", help="only runs of this suite")
    p.add_argument("--status", choices=STATUSES, help="only runs with this status")
    output = p.add_mutually_exclusive_group()
    add_json_flag(output, "print the runs as a JSON list on stdout")
    output.add_argument("--csv", action="store_true", help="print the runs as CSV on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.runs.listing import FIELDS, list_runs
    from harness.runs.store import runs_root

    root = runs_root(args.runs)
    listed = list_runs(root, checkpoint=args.checkpoint, suite=args.suite, status=args.status)
    if args.json:
        import json

        print(json.dumps([row.to_record() for row in listed], indent=2, ensure_ascii=False))
    elif args.csv:
        import csv
        import sys

        writer = csv.DictWriter(sys.stdout, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(row.to_record() for row in listed)
    elif not listed:
        filtered = args.checkpoint is not None or args.suite is not None or args.status is not None
        if filtered:
            print(f"No runs under {root} match the filters (--checkpoint, --suite, --status).")
        else:
            print(f"No runs under {root}. Start one with: harness eval --checkpoint embedded --limit 20")
    else:
        print(f"runs under {root}")
        print(_table(listed))
    return 0


def _table(listed: list[RunListing]) -> str:
    from harness.runs.listing import any_reasoning
    from harness.table import pct, render

    reasoning = any_reasoning(listed)  # a column only once some run has a mode
    headers = ["run", "status", "samples", "limit", "max_tokens", "temp", "judge"]
    headers += ["reasoning"] * reasoning + ["primary metric (%)", "created (UTC)"]
    rows = []
    for row in listed:
        primary = "-" if row.primary_value is None else f"{row.primary_metric} {pct(row.primary_value)}"
        cells = [
            row.run,
            row.status,
            f"{row.samples_done}/{row.samples_total}",
            "all" if row.limit is None else str(row.limit),
            str(row.max_tokens),
            f"{row.temperature:g}",
            row.judge,
        ]
        cells += [row.reasoning] * reasoning + [primary, row.created_at[:19].replace("T", " ")]
        rows.append(cells)
    return render(headers, rows, right=(3, 4, 5))
