"""`harness.rescore`: recompute every sample's score and the metrics of a run from its stored responses.

No model is called (except a model judge, for runs a judge such as wildguard scored). Use it after a
scorer fix, or to check that stored scores are reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from harness.api.evaluate import run_sync
from harness.data import resolve_data_source
from harness.errors import DataError
from harness.reasoning_stats import record_parts
from harness.runner import metrics_of, write_metrics
from harness.runs.manifest import Invocation, Manifest, now_iso
from harness.runs.store import (
    MANIFEST,
    SAMPLES,
    RunLock,
    SampleRecord,
    SamplesFile,
    read_json,
    resolve_run,
    runs_root,
    write_json_atomic,
)
from harness.suite import Suite, SuiteOptions, score_many
from harness.types import Metric, Sample, Score


@dataclass(frozen=True)
class RescoreResult:
    run_dir: Path
    primary: str
    metrics: Mapping[str, Metric]
    n_samples: int
    changed: int  # samples whose scores differ from the stored ones


async def score_records(
    suite_name: str, options: SuiteOptions, samples: Mapping[str, Sample], records: Sequence[SampleRecord]
) -> tuple[Suite, list[Score]]:
    """Stored responses scored again, in record order, by a freshly built suite (and its model judge,
    built for this and closed after)."""
    from suites import build_suites

    suite_set = build_suites([suite_name], options)
    try:
        (suite,) = suite_set.suites
        return suite, await score_many(suite, [(samples[r.id], r.completions) for r in records])
    finally:
        await suite_set.aclose()


def rescore(
    run: str | Path,
    *,
    runs: str | Path | None = None,
    data_dir: str | Path | None = None,
    judge_checkpoint: str | None = None,
) -> RescoreResult:
    """Re-grade `run` (a run folder, or a unique part of its path under the runs folder) in place: the
    samples file, metrics.json and a `rescored` invocation in the manifest. The data must be the data
    the run used; a run scored by a model judge needs `judge_checkpoint`."""
    run_dir = resolve_run(str(run), runs_root(None if runs is None else str(runs)))
    manifest = Manifest.from_record(read_json(run_dir / MANIFEST, "run manifest"), run_dir / MANIFEST)
    options = SuiteOptions.of_run(manifest.suite_settings, judge_checkpoint, str(run_dir / MANIFEST))
    started = now_iso()
    from suites import get_suite

    loaded = get_suite(manifest.suite, options).load(
        resolve_data_source(None if data_dir is None else str(data_dir)), manifest.limit
    )
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
        suite, scores = run_sync(score_records(manifest.suite, options, samples, old), "rescore")
        new, changed = [], 0
        for record, score in zip(old, scores, strict=True):
            rescored = replace(
                record, scores=dict(score.values), extracted=dict(score.extracted),
                reasoning=record_parts(suite.reasoning, record.completions),
            )  # fmt: skip
            changed += rescored.scores != record.scores
            new.append(rescored)
        samples_file.rewrite(new)
        metrics = metrics_of(suite, new)
        write_metrics(run_dir, suite, metrics, new)
        invocation = Invocation(started_at=started, finished_at=now_iso(), status="rescored")
        write_json_atomic(
            run_dir / MANIFEST,
            replace(manifest.with_invocation(invocation), status=manifest.status).to_record(),
        )
    return RescoreResult(run_dir, suite.primary_metric, metrics, len(new), changed)
