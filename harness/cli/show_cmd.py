"""`harness show RUN`: a run's settings, metrics with 95% CIs, and a few samples (reasoning runs: what
thinking cost, the samples that ended inside their thinking, and each response's thinking and answer apart)."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harness.cli.argtypes import add_runs_flag

if TYPE_CHECKING:
    from harness.runs.store import SampleRecord

MAX_IDS_SHOWN = 20  # unterminated sample ids printed; the rest are counted


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


def _unterminated_line(ids: Sequence[str], ended: int) -> str:
    shown = ", ".join(ids[:MAX_IDS_SHOWN])
    more = max(len(ids), ended) - min(len(ids), MAX_IDS_SHOWN)
    return f"unterminated (no answer, scored 0): {shown}" + (f" ... and {more} more" if more else "")


def _response_lines(record: SampleRecord) -> list[str]:
    """The first response, or for a reasoning run each response's thinking and answer apart."""
    if not record.reasoning:
        return ["response: " + _clip(record.completions[0].text if record.completions else "")]
    lines = []
    for number, part in enumerate(record.reasoning, start=1):
        which = f" {number}" if len(record.reasoning) > 1 else ""
        answer = "(none: ended inside reasoning)" if part.answer is None else _clip(part.answer)
        lines += [
            f"thinking{which}: " + (_clip(part.reasoning, 200) or "(none)"),
            f"answer{which}:   {answer}",
        ]
    return lines


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
        from harness.runs.catalog import parse_reasoning

        reasoning = parse_reasoning(read_json(run_dir / METRICS, "metrics file"))
        if reasoning is not None:
            rate = reasoning.ended_inside
            print()
            print(reasoning.describe())
            if reasoning.unterminated:
                print(_unterminated_line(reasoning.unterminated, round((rate.value or 0) * rate.n)))
    records = SamplesFile(run_dir / SAMPLES).load(repair=False).records
    for record in records[: max(0, args.samples)]:
        verdict = ", ".join(f"{k}={v:g}" for k, v in record.scores.items())
        print(f"\n--- {record.id}  target={record.target}  extracted={dict(record.extracted)}  {verdict}")
        print(textwrap.indent("prompt:   " + _clip(record.prompt), "  "))
        for line in _response_lines(record):
            print(textwrap.indent(line, "  "))
    return 0
