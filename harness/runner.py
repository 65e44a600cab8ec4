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
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.checkpoints import CheckpointRef
from harness.data import DataSource
from harness.errors import DataError, HarnessError, UsageError
from harness.runs.cache import ResponseCache
from harness.runs.manifest import Invocation, Manifest, git_state, now_iso
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
from harness.suite import LoadedData, Suite, score_sample, scoring_slots
from harness.types import Adapter, Completion, GenerationSettings, Metric, Request, Sample, Score


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


def settings_hash(suite: Suite, settings: GenerationSettings, limit: int | None) -> str:
    payload = {
        "suite": suite.name,
        "version": suite.version,
        "pinned": dict(suite.pinned_settings()),
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


def write_metrics(run_dir: Path, suite: Suite, metrics: dict[str, Metric]) -> None:
    write_json_atomic(
        run_dir / METRICS,
        {
            "suite": suite.name,
            "suite_version": suite.version,
            "primary": suite.primary_metric,
            "metrics": {name: m.to_record() for name, m in metrics.items()},
        },
    )


def record_for(
    sample: Sample, requests: Sequence[Request], completions: Sequence[Completion], score: Score
) -> SampleRecord:
    return SampleRecord(
        id=sample.id,
        prompt=sample.prompt_text,
        target=sample.target,
        request_keys=tuple(r.key() for r in requests),
        completions=tuple(completions),
        scores=dict(score.values),
        extracted=dict(score.extracted),
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
    loaded = spec.suite.load(spec.data, spec.limit)
    run_dir = run_dir_for(spec)
    created = [p for p in (run_dir, *run_dir.parents) if not p.exists()]  # deepest first
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise storage_error(error, run_dir, "create the run folder") from None
    with RunLock(run_dir):
        try:
            return await _evaluate_locked(spec, adapter, loaded, run_dir, progress)
        except BaseException:
            if created:  # only under the lock: no other writer can be using the folder we made
                remove_empty_run(run_dir, created)
            raise


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
    invocation = Invocation(
        started_at=now_iso(),
        resumed=len(records),
        repaired_bytes=existing.repaired_bytes,
        cost_estimate_usd=spec.cost_estimate_usd,
    )
    write_json_atomic(run_dir / MANIFEST, manifest.with_invocation(invocation, keep).to_record())
    sandbox_runs_before = _sandbox_runs()
    counters = Counters()
    cache: ResponseCache | None = None
    try:
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
        write_metrics(run_dir, suite, metrics)
        done = replace(
            counters.apply(invocation), finished_at=now_iso(), status="complete",
            sandbox_timing=_sandbox_record(sandbox_runs_before),
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
        status = "interrupted" if isinstance(error, KeyboardInterrupt | asyncio.CancelledError) else "failed"
        message = error.message if isinstance(error, HarnessError) else f"{type(error).__name__}: {error}"
        failed = replace(
            counters.apply(invocation), finished_at=now_iso(), status=status, error=message[:500],
            sandbox_timing=_sandbox_record(sandbox_runs_before),
        )  # fmt: skip
        # A full or read-only disk refuses this write too: the first error is the one reported.
        with contextlib.suppress(HarnessError):
            write_json_atomic(run_dir / MANIFEST, manifest.with_invocation(failed, keep).to_record())
        raise
    finally:
        samples_file.close()
        if cache is not None:
            cache.close()
    return EvalOutcome(run_dir=run_dir, metrics=metrics, invocation=done, n_samples=len(final_records))


def _sandbox_runs() -> int:
    # Looked up, not imported: a run that sandboxes nothing never loads the sandbox.
    timing = sys.modules.get("suites.sandbox.timing")
    return int(timing.runs_so_far()) if timing is not None else 0


def _sandbox_record(runs_before: int) -> dict[str, Any] | None:
    timing = sys.modules.get("suites.sandbox.timing")
    return timing.record_since(runs_before) if timing is not None else None


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
    done_ids = {r.id for r in records}
    pending = [s for s in samples if s.id not in done_ids]
    requests = {s.id: spec.suite.requests(s, spec.settings, adapter.api) for s in pending}
    identity = adapter.identity()
    answers: dict[str, Completion] = {}  # request key -> completion
    if cache is not None:
        for reqs in requests.values():
            for request in reqs:
                key = request.key()
                if key not in answers and (hit := cache.get(identity, key)) is not None:
                    answers[key] = hit
                    counters.cache_hits += 1
    unique: dict[str, Request] = {}
    for reqs in requests.values():
        for request in reqs:
            if request.key() not in answers:
                unique.setdefault(request.key(), request)
    waiting_on: dict[str, set[str]] = defaultdict(set)  # request key -> sample ids waiting for it
    for sample_id, reqs in requests.items():
        for request in reqs:
            if request.key() in unique:
                waiting_on[request.key()].add(sample_id)
    by_id = {s.id: s for s in pending}

    bar = _progress_bar(len(samples), len(records), progress)
    # Scoring runs beside generation, a bounded number of samples at a time: the code sandbox uses
    # every core and a model judge answers requests concurrently. A one-at-a-time scorer runs inline,
    # so each sample is on disk right after its response is cached (nothing is kept only in the cache).
    slots = scoring_slots(spec.suite)
    score_gate = asyncio.Semaphore(slots)
    scoring: set[asyncio.Task[None]] = set()

    async def finish(sample_id: str) -> None:
        sample, reqs = by_id[sample_id], requests[sample_id]
        completions = [answers[r.key()] for r in reqs]
        async with score_gate:
            score = await score_sample(spec.suite, sample, completions)
        record = record_for(sample, reqs, completions, score)
        samples_file.append(record)  # on the event loop's thread, so appends never interleave
        records.append(record)
        if bar is not None:
            bar.update(1)

    async def start_scoring(sample_id: str) -> None:
        if slots == 1:
            return await finish(sample_id)
        for task in [t for t in scoring if t.done()]:  # a scorer's error stops the run at once
            scoring.discard(task)
            task.result()
        scoring.add(asyncio.create_task(finish(sample_id)))

    try:
        for sample_id, reqs in requests.items():  # everything the cache answered is scored first
            if all(r.key() in answers for r in reqs):
                await start_scoring(sample_id)
        if unique:
            await adapter.preflight()
            todo = list(unique.values())
            size = max(1, adapter.batch_size)
            batches = [todo[i : i + size] for i in range(0, len(todo), size)]
            gate = asyncio.Semaphore(max(1, adapter.concurrency))

            async def run_batch(batch: list[Request]) -> tuple[list[Request], list[Completion]]:
                async with gate:
                    return batch, await adapter.generate(batch)

            tasks = [asyncio.create_task(run_batch(b)) for b in batches]
            try:
                for next_done in asyncio.as_completed(tasks):
                    batch, completions = await next_done
                    counters.generated += len(batch)
                    for request, completion in zip(batch, completions, strict=True):
                        key = request.key()
                        answers[key] = completion
                        if cache is not None:
                            cache.put(identity, key, completion)
                        for sample_id in sorted(waiting_on.pop(key, ())):
                            if all(r.key() in answers for r in requests[sample_id]):
                                await start_scoring(sample_id)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        while scoring:  # the first scorer error is raised; the rest are cancelled below
            done, _ = await asyncio.wait(scoring, return_when=asyncio.FIRST_EXCEPTION)
            for finished in done:
                scoring.discard(finished)
                finished.result()
    finally:
        for unfinished in scoring:
            unfinished.cancel()
        await asyncio.gather(*scoring, return_exceptions=True)
        if bar is not None:
            bar.close()
        counters.retries = sum(getattr(adapter, "retry_counts", {}).values())


def _progress_bar(total: int, initial: int, enabled: bool) -> Any:  # a tqdm bar; tqdm is untyped
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="sample", file=sys.stderr, dynamic_ncols=True, leave=False)
