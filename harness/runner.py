"""The evaluation pipeline: load -> skip finished samples -> cache -> generate concurrently -> score
-> append each sample as soon as it is scored -> metrics.

Resume is by sample id: re-running the same command reads `samples.jsonl` and only works on what is
missing. Generation goes through the response cache, so a deleted or re-scored run costs no requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.checkpoints import CheckpointRef
from harness.data import DataSource
from harness.errors import DataError, HarnessError, UsageError
from harness.eval_plan import Answers, plan_generation
from harness.generate_loop import generate_in_batches
from harness.progress import progress_for, showing
from harness.reasoning import NO_REASONING, ReasoningSpec
from harness.reasoning_stats import ReasoningSummary, record_parts, summarize_reasoning
from harness.runs.cache import ResponseCache
from harness.runs.extend import find_extension, relative_name
from harness.runs.manifest import Invocation, Manifest, git_state, how_it_ended, now_iso
from harness.runs.store import (
    MANIFEST,
    METRICS,
    SAMPLES,
    RunLock,
    SampleRecord,
    SamplesFile,
    read_json,
    remove_empty_run,
    sorted_by_ids,
    storage_error,
    write_json_atomic,
)
from harness.scoring_pool import ScoringPool
from harness.shards import ShardSteps, run_shard
from harness.suite import LoadedData, Suite
from harness.types import Adapter, Completion, GenerationSettings, Metric, Request, Sample, Score


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based): the samples whose position in the suite's (limited) sample list
    is `index` modulo `count`. A sharded run writes its own folder under the run's and is merged into the
    normal run layout when every shard is done (harness.shards)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise UsageError(
                f"Shard {self.index}/{self.count} does not exist.",
                "Shards are I/N with 0 <= I < N (e.g. --shard 0/4 ... --shard 3/4).",
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        index, slash, count = text.partition("/")
        if not slash or not index.strip().isdigit() or not count.strip().isdigit():
            raise UsageError(f"Cannot read the shard '{text}'.", "Write it as I/N, e.g. --shard 0/4.")
        return cls(int(index), int(count))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class EvalSpec:
    checkpoint: CheckpointRef
    suite: Suite
    settings: GenerationSettings
    limit: int | None
    data: DataSource
    runs_root: Path
    use_cache: bool = True
    fresh: bool = False
    lineage: Mapping[str, Any] | None = None  # registry entry when the reference was STAGE:TAG
    cost_estimate_usd: float | None = None  # --max-cost upper bound for this suite (priced adapters)
    shard: Shard | None = None  # evaluate only this shard of the samples (Slurm array tasks)


@dataclass
class Counters:
    """What this invocation did so far; mutable so a failure still reports it."""

    generated: int = 0
    cache_hits: int = 0
    retries: int = 0

    def apply(self, invocation: Invocation) -> Invocation:
        return replace(invocation, generated=self.generated, cache_hits=self.cache_hits, retries=self.retries)


@dataclass(frozen=True)
class EvalOutcome:
    run_dir: Path
    metrics: dict[str, Metric]
    invocation: Invocation
    n_samples: int
    reasoning: ReasoningSummary | None = None  # reasoning runs: what thinking cost


def settings_hash(suite: Suite, settings: GenerationSettings, limit: int | None) -> str:
    return settings_hash_of(suite.name, suite.version, suite.pinned_settings(), settings, limit)


def settings_hash_of(
    name: str, version: str, pinned: Mapping[str, Any], settings: GenerationSettings, limit: int | None
) -> str:
    """The run folder's name: everything that makes two runs of a suite comparable, hashed."""
    payload = {
        "suite": name,
        "version": version,
        "pinned": dict(pinned),
        "generation": settings.as_record(),
        "limit": limit,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def run_dir_for(spec: EvalSpec) -> Path:
    suite = spec.suite
    return (
        spec.runs_root
        / spec.checkpoint.slug()
        / f"{suite.name}@{suite.version}"
        / settings_hash(suite, spec.settings, spec.limit)
    )


def metrics_of(suite: Suite, records: Sequence[SampleRecord]) -> dict[str, Metric]:
    return suite.metrics([Score(values=r.scores, extracted=r.extracted) for r in records])


def write_metrics(
    run_dir: Path, suite: Suite, metrics: dict[str, Metric], records: Sequence[SampleRecord] = ()
) -> ReasoningSummary | None:
    record: dict[str, Any] = {
        "suite": suite.name,
        "suite_version": suite.version,
        "primary": suite.primary_metric,
        "metrics": {name: m.to_record() for name, m in metrics.items()},
    }
    reasoning = summarize_reasoning(suite.reasoning, records)
    if reasoning is not None:  # beside the metrics, never among them: a gate or a column compares metrics
        record["reasoning"] = reasoning.to_record()
    write_json_atomic(run_dir / METRICS, record)
    return reasoning


def record_for(
    sample: Sample,
    requests: Sequence[Request],
    completions: Sequence[Completion],
    score: Score,
    reasoning: ReasoningSpec = NO_REASONING,
) -> SampleRecord:
    return SampleRecord(
        id=sample.id,
        prompt=sample.prompt_text,
        target=sample.target,
        request_keys=tuple(r.key() for r in requests),
        completions=tuple(completions),
        scores=dict(score.values),
        extracted=dict(score.extracted),
        reasoning=record_parts(reasoning, completions),
    )


def _open_manifest(
    spec: EvalSpec,
    run_dir: Path,
    adapter: Adapter,
    loaded_source: str,
    data_sha: str,
    n_samples: int,
    n_total: int,
) -> Manifest:
    path = run_dir / MANIFEST
    if path.exists():
        manifest = Manifest.from_record(read_json(path, "run manifest"), path)
        if manifest.adapter != adapter.identity():
            raise UsageError(
                f"The run folder {run_dir} holds responses from '{manifest.adapter}', but this checkpoint "
                f"is now '{adapter.identity()}' (the weights or backend changed).",
                "Pass --fresh to start this run over, or --out to keep both runs.",
            )
        if manifest.data_sha256 != data_sha:
            raise DataError(
                f"The data behind {run_dir} changed (sha256 {manifest.data_sha256[:12]} then, {data_sha[:12]} now).",
                "Point --data-dir at the data the run used, or pass --fresh to start over on the new data.",
            )
        if spec.lineage is not None and manifest.lineage != spec.lineage:
            # Registered (or re-registered) since the run began: the registry is current, and a submitted
            # bundle carries the manifest's copy, not the registry.
            return replace(manifest, lineage=spec.lineage)
        return manifest
    revision, dirty = git_state()
    return Manifest(
        suite=spec.suite.name,
        suite_version=spec.suite.version,
        suite_settings=dict(spec.suite.pinned_settings()),
        checkpoint=spec.checkpoint.raw,
        adapter=adapter.identity(),
        generation=spec.settings,
        limit=spec.limit,
        settings_hash=run_dir.name,
        data_source=loaded_source,
        data_sha256=data_sha,
        n_samples=n_samples,
        n_total=n_total,
        created_at=now_iso(),
        git_revision=revision,
        git_dirty=dirty,
        lineage=spec.lineage,
    )


async def evaluate(spec: EvalSpec, adapter: Adapter, progress: bool = False) -> EvalOutcome:
    # In a thread: with every suite of an invocation starting at once, the first suite's requests go out
    # while the others still read and parse their data.
    loaded = await asyncio.to_thread(spec.suite.load, spec.data, spec.limit)
    run_dir = run_dir_for(spec)
    created = [p for p in (run_dir, *run_dir.parents) if not p.exists()]  # deepest first
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise storage_error(error, run_dir, "create the run folder") from None
    if spec.shard is not None:  # its own folder and lock (no flock: shards run on shared file systems)
        return await _evaluate_shard(spec, adapter, loaded, run_dir, progress)
    with RunLock(run_dir):
        try:
            return await _evaluate_locked(spec, adapter, loaded, run_dir, progress)
        except BaseException:
            if created:  # only under the lock: no other writer can be using the folder we made
                remove_empty_run(run_dir, created)
            raise


def finish_metrics(
    run_dir: Path, suite: Suite, records: Sequence[SampleRecord]
) -> tuple[dict[str, Metric], ReasoningSummary | None]:
    """Metrics over `records`, written to `run_dir`'s metrics.json: what a run and a shard merge both do."""
    metrics = metrics_of(suite, records)
    return metrics, write_metrics(run_dir, suite, metrics, records)


async def _evaluate_shard(
    spec: EvalSpec, adapter: Adapter, loaded: LoadedData, run_dir: Path, progress: bool
) -> EvalOutcome:
    """One shard (harness.shards), generating and scoring exactly as an unsharded run does."""
    assert spec.shard is not None
    counters = Counters()

    def new_manifest(folder: Path) -> Manifest:
        n_samples, n_total = len(loaded.samples), loaded.total
        return _open_manifest(spec, folder, adapter, loaded.source, loaded.sha256, n_samples, n_total)

    async def generate(samples: Sequence[Sample], records: list[SampleRecord], file: SamplesFile) -> None:
        cache = ResponseCache.in_runs_folder(spec.runs_root) if spec.use_cache else None
        try:
            await _generate_and_score(spec, adapter, samples, records, file, cache, counters, progress)
        finally:
            if cache is not None:
                cache.close()

    steps = ShardSteps(new_manifest, generate, counters.apply, finish_metrics)
    done = await run_shard(spec.shard, spec.suite, loaded, run_dir, adapter.identity(), spec.fresh, steps)
    return EvalOutcome(done.run_dir, done.metrics, done.invocation, done.n_samples, done.reasoning)


async def _evaluate_locked(
    spec: EvalSpec, adapter: Adapter, loaded: LoadedData, run_dir: Path, progress: bool
) -> EvalOutcome:
    suite = spec.suite
    if spec.fresh:
        for name in (SAMPLES, METRICS, MANIFEST):
            (run_dir / name).unlink(missing_ok=True)
    manifest = _open_manifest(
        spec, run_dir, adapter, loaded.source, loaded.sha256, len(loaded.samples), loaded.total
    )
    keep = manifest.status == "complete"  # a re-run never downgrades a complete run, even if it fails
    samples_file = SamplesFile(run_dir / SAMPLES)
    existing = samples_file.load(repair=True)
    selected = {s.id for s in loaded.samples}
    records = [r for r in existing.records if r.id in selected]
    # A run with no samples of its own starts from a smaller --limit run of the same settings, if any.
    extension = None if spec.fresh or existing.records else find_extension(
        run_dir, manifest, loaded.samples,
        lambda sample: tuple(r.key() for r in suite.requests(sample, spec.settings, adapter.api)),
    )  # fmt: skip
    invocation = Invocation(
        started_at=now_iso(),
        resumed=len(records) + (len(extension.records) if extension else 0),
        repaired_bytes=existing.repaired_bytes,
        cost_estimate_usd=spec.cost_estimate_usd,
        extended_from=relative_name(extension.source, spec.runs_root) if extension else None,
    )
    write_json_atomic(run_dir / MANIFEST, manifest.with_invocation(invocation, keep).to_record())
    measurement_mark = suite.measurement_mark()  # what scoring measures (sandbox timing) goes in the manifest
    counters = Counters()
    cache: ResponseCache | None = None
    try:
        for record in extension.records if extension else ():
            samples_file.append(record)  # copied as they were: the source run is only read
            records.append(record)
        cache = ResponseCache.in_runs_folder(spec.runs_root) if spec.use_cache else None
        await _generate_and_score(
            spec, adapter, loaded.samples, records, samples_file, cache, counters, progress
        )
        samples_file.close()
        final = SamplesFile(run_dir / SAMPLES).load(repair=False).records
        final_records = sorted_by_ids([r for r in final if r.id in selected], [s.id for s in loaded.samples])
        if len(final_records) != len(loaded.samples):
            raise DataError(
                f"{run_dir / SAMPLES} holds {len(final_records)} of {len(loaded.samples)} samples after the run.",
                "This is a bug; re-run the same command to complete the run.",
            )
        metrics = metrics_of(suite, final_records)
        reasoning = write_metrics(run_dir, suite, metrics, final_records)
        done = replace(
            counters.apply(invocation), finished_at=now_iso(), status="complete",
            sandbox_timing=suite.measurement_since(measurement_mark),
        )  # fmt: skip
        usage = [c for r in final_records for c in r.completions]
        manifest = replace(
            manifest.with_invocation(done),
            prompt_tokens=sum(c.prompt_tokens for c in usage),
            completion_tokens=sum(c.completion_tokens for c in usage),
            cost_usd=round(sum(c.cost_usd for c in usage), 6),
        )
        write_json_atomic(run_dir / MANIFEST, manifest.to_record())
    except BaseException as error:
        status, message = how_it_ended(error)
        failed = replace(
            counters.apply(invocation), finished_at=now_iso(), status=status, error=message,
            sandbox_timing=suite.measurement_since(measurement_mark),
        )  # fmt: skip
        # A full or read-only disk refuses this write too: the first error is the one reported.
        with contextlib.suppress(HarnessError):
            write_json_atomic(run_dir / MANIFEST, manifest.with_invocation(failed, keep).to_record())
        raise
    finally:
        samples_file.close()
        if cache is not None:
            cache.close()
    return EvalOutcome(run_dir, metrics, done, len(final_records), reasoning)


async def _generate_and_score(
    spec: EvalSpec,
    adapter: Adapter,
    samples: Sequence[Sample],
    records: list[SampleRecord],
    samples_file: SamplesFile,
    cache: ResponseCache | None,
    counters: Counters,
    progress: bool,
) -> None:
    """Plan what is left to generate, then generate it while a scoring pool scores and writes each sample
    as its last response arrives (the samples the cache answered first), then wait for the pool."""
    identity = adapter.identity()

    def cached(key: str) -> Completion | None:
        hit = cache.get(identity, key) if cache is not None else None
        counters.cache_hits += hit is not None
        return hit

    plan = plan_generation(
        samples,
        {r.id for r in records},
        lambda sample: spec.suite.requests(sample, spec.settings, adapter.api),
        cached if cache is not None else None,
    )
    answers = Answers(plan)
    shown = progress_for(spec.checkpoint.raw, spec.suite.name, len(samples), len(records), progress)

    def write(sample: Sample, completions: Sequence[Completion], score: Score) -> None:
        record = record_for(sample, plan.requests[sample.id], completions, score, spec.suite.reasoning)
        samples_file.append(record)  # called on the event loop's thread, so appends never interleave
        records.append(record)
        shown.advance()

    pool = ScoringPool(spec.suite, write)

    async def answer(batch: list[Request], completions: list[Completion]) -> None:
        counters.generated += len(batch)
        for request, completion in zip(batch, completions, strict=True):
            completed = answers.add(request.key(), completion)
            if cache is not None:
                cache.put(identity, request.key(), completion)
            for sample_id in completed:
                await pool.submit(plan.samples[sample_id], answers.completions_for(sample_id))

    try:
        async with showing(shown), pool:
            for sample_id in plan.answered_by_cache:
                await pool.submit(plan.samples[sample_id], answers.completions_for(sample_id))
            await generate_in_batches(adapter, plan.to_generate, answer)
            await pool.drain()
    finally:
        counters.retries = sum(getattr(adapter, "retry_counts", {}).values())
