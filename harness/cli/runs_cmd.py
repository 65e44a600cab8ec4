"""`harness runs`: list the runs under the runs folder with their status and primary metric."""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.argtypes import add_runs_flag


def register(commands: Any) -> None:
    p = commands.add_parser("runs", help="list runs", description=__doc__)
    add_runs_flag(p, deprecated_out=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.runs.manifest import Manifest
    from harness.runs.store import (
        MANIFEST,
        METRICS,
        SAMPLES,
        SamplesFile,
        find_runs,
        read_json,
        read_metrics,
        runs_root,
    )
    from harness.table import pct, render

    root = runs_root(args.runs)
    runs = find_runs(root)
    if not runs:
        print(f"No runs under {root}. Start one with: harness eval --checkpoint embedded --limit 20")
        return 0
    rows = []
    for run_dir in runs:
        manifest = Manifest.from_record(read_json(run_dir / MANIFEST, "run manifest"), run_dir / MANIFEST)
        primary = "-"
        if (run_dir / METRICS).is_file():
            name, metrics = read_metrics(run_dir)
            value = metrics.get(name, {}).get("value")
            primary = f"{name} {pct(value)}" if value is not None else "-"
        # Counted as the runner and the gate read them: a repeated sample id or a bad line is an error.
        done = len(SamplesFile(run_dir / SAMPLES).load(repair=False).records)
        rows.append(
            [
                str(run_dir.relative_to(root)),
                manifest.status,
                f"{done}/{manifest.n_samples}",
                primary,
                manifest.created_at[:19].replace("T", " "),
            ]
        )
    print(f"runs under {root}")
    print(render(["run", "status", "samples", "primary metric (%)", "created (UTC)"], rows))
    return 0
