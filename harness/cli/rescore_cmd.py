"""`harness rescore RUN`: recompute every sample's score and the metrics from stored responses.

No model is called. Use it after a scorer fix, or to check that stored scores are reproducible.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: Any) -> None:
    p = commands.add_parser("rescore", help="re-grade a run from its stored responses", description=__doc__)
    p.add_argument(
        "run", metavar="RUN", help="run folder, or a unique part of its path under the runs folder"
    )
    p.add_argument("--out", metavar="DIR", help="runs folder (default: $HARNESS_RUNS_DIR or ./runs)")
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="local upstream data files (default: $HARNESS_DATA_DIR, else the hub)",
    )
    p.add_argument(
        "--judge-checkpoint", metavar="REF", help="the classifier, for runs scored by a model judge"
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    from dataclasses import replace

    from harness.data import resolve_data_source
    from harness.errors import DataError
    from harness.runner import metrics_of, write_metrics
    from harness.runs.manifest import Invocation, Manifest, now_iso
    from harness.runs.store import (
        MANIFEST,
        SAMPLES,
        RunLock,
        SamplesFile,
        read_json,
        resolve_run,
        runs_root,
        write_json_atomic,
    )
    from harness.suite import SuiteOptions
    from harness.table import METRIC_HEADERS, metric_cells, render
    from suites import get_suite

    run_dir = resolve_run(args.run, runs_root(args.out))
    manifest = Manifest.from_record(read_json(run_dir / MANIFEST, "run manifest"), run_dir / MANIFEST)
    judge_name = str(manifest.suite_settings.get("judge", SuiteOptions().judge))
    suite = get_suite(manifest.suite, SuiteOptions(judge=judge_name))
    started = now_iso()
    loaded = suite.load(resolve_data_source(args.data_dir), manifest.limit)
    if loaded.sha256 != manifest.data_sha256:
        raise DataError(
            f"The data now loaded ({loaded.source}) differs from the data of run {run_dir}.",
            "Point --data-dir at the data the run used.",
        )
    samples = {s.id: s for s in loaded.samples}
    with RunLock(run_dir):
        samples_file = SamplesFile(run_dir / SAMPLES)
        old = samples_file.load(repair=False).records
        if not old:  # n=0 metrics over a "complete" run would hide that the responses are gone
            raise DataError(
                f"The run {run_dir} has no stored samples"
                + ("" if samples_file.path.exists() else f" ({SAMPLES} is missing)")
                + ", so there is nothing to rescore; the run is left as it was.",
                "Re-run the evaluation (`harness eval` with the run's settings) to regenerate them; "
                "the response cache makes that free where it still holds the responses.",
            )
        for record in old:
            if record.id not in samples:
                raise DataError(f"{run_dir / SAMPLES} has sample {record.id}, which the data does not have.")
        scores = asyncio.run(_rescore_all(suite, judge_name, args.judge_checkpoint, samples, old))
        new, changed = [], 0
        for record, score in zip(old, scores, strict=True):
            rescored = replace(record, scores=dict(score.values), extracted=dict(score.extracted))
            changed += rescored.scores != record.scores
            new.append(rescored)
        samples_file.rewrite(new)
        metrics = metrics_of(suite, new)
        write_metrics(run_dir, suite, metrics)
        invocation = Invocation(started_at=started, finished_at=now_iso(), status="rescored")
        status = manifest.status
        write_json_atomic(
            run_dir / MANIFEST, replace(manifest.with_invocation(invocation), status=status).to_record()
        )
    rows = [
        [name + ("*" if name == suite.primary_metric else ""), *metric_cells(m)]
        for name, m in metrics.items()
    ]
    print(render(["metric", *METRIC_HEADERS], rows, right=(1, 2, 4)))
    print(f"rescored {len(new)} samples of {run_dir}; {changed} changed their scores")
    return 0


async def _rescore_all(
    suite: Any, judge_name: str, judge_checkpoint: str | None, samples: Any, records: Any
) -> Any:
    """Scores in record order; a model judge (wildguard) is attached for the run and closed after."""
    from harness.suite import SuiteOptions, score_many

    judge = None
    if hasattr(suite, "async_judge") and judge_name != SuiteOptions().judge:
        from adapters import AdapterOptions
        from suites.safety_judges import create_judge

        judge = create_judge(judge_name, judge_checkpoint, AdapterOptions())
        suite.async_judge = judge
    try:
        return await score_many(suite, [(samples[r.id], r.completions) for r in records])
    finally:
        if judge is not None:
            await judge.aclose()
