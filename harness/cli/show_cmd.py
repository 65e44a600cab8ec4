"""`harness show RUN`: a run's settings, metrics with 95% CIs, and a few samples."""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from harness.cli.argtypes import add_runs_flag


def register(commands: Any) -> None:
    p = commands.add_parser("show", help="show one run", description=__doc__)
    p.add_argument(
        "run", metavar="RUN", help="run folder, or a unique part of its path under the runs folder"
    )
    add_runs_flag(p, deprecated_out=True)
    p.add_argument(
        "--samples", type=int, default=3, metavar="K", help="how many samples to print (default 3)"
    )
    p.set_defaults(func=run)


def _clip(text: str, width: int = 400) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _pct(value: float | None) -> str:
    from harness.table import pct

    return pct(float("nan") if value is None else value)


def run(args: argparse.Namespace) -> int:
    from harness.runs.manifest import Manifest
    from harness.runs.store import (
        MANIFEST,
        METRICS,
        SAMPLES,
        SamplesFile,
        read_json,
        read_metrics,
        resolve_run,
        runs_root,
    )
    from harness.table import render

    run_dir = resolve_run(args.run, runs_root(args.runs))
    manifest = Manifest.from_record(read_json(run_dir / MANIFEST, "run manifest"), run_dir / MANIFEST)
    print(f"run        {run_dir}")
    print(f"suite      {manifest.suite}@{manifest.suite_version}  {manifest.suite_settings}")
    print(f"checkpoint {manifest.checkpoint}  ({manifest.adapter})")
    print(f"generation {manifest.generation.as_record()}  limit={manifest.limit}")
    print(f"data       {manifest.data_source}  sha256 {manifest.data_sha256[:16]}")
    print(
        f"status     {manifest.status}; tokens {manifest.prompt_tokens} prompt + {manifest.completion_tokens} completion"
    )
    if (run_dir / METRICS).is_file():
        primary, metrics = read_metrics(run_dir)
        rows = []
        for name, m in metrics.items():
            lo, hi = m["ci95"]
            rows.append(
                [
                    name + ("*" if name == primary else ""),
                    _pct(m["value"]),
                    _pct(m["stderr"]),
                    f"[{_pct(lo)}, {_pct(hi)}]",
                    str(m["n"]),
                ]
            )
        print()
        print(render(["metric", "%", "stderr", "95% CI", "n"], rows, right=(1, 2, 4)))
    records = SamplesFile(run_dir / SAMPLES).load(repair=False).records
    for record in records[: max(0, args.samples)]:
        verdict = ", ".join(f"{k}={v:g}" for k, v in record.scores.items())
        print(f"\n--- {record.id}  target={record.target}  extracted={dict(record.extracted)}  {verdict}")
        print(textwrap.indent("prompt:   " + _clip(record.prompt), "  "))
        print(
            textwrap.indent(
                "response: " + _clip(record.completions[0].text if record.completions else ""), "  "
            )
        )
    return 0
