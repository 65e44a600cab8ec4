"""Shards of a run: `harness eval --shard I/N` (one Slurm array task) evaluates the samples whose position
in the suite's limited sample list is I mod N, in its own folder, and the last shard to finish merges them
into the normal run layout.

    <run_dir>/shards/I-of-N/samples.jsonl   the shard's samples, appended and fsync'd like a run's
    <run_dir>/shards/I-of-N/shard.json      status (running | complete | failed | interrupted) + manifest
    <run_dir>/shards/I-of-N/.lock           the shard's writer (harness.runs.locks.FileLock, not flock)
    <run_dir>/.merge.lock                   held while merging

Shards never write the same file; a re-run (requeue, resubmission) resumes its shard by sample id. The
merge writes `samples.jsonl` (in the suite's sample order), `metrics.json` (computed exactly as an
unsharded run computes them) and `manifest.json` (written last: a run is complete only once all three are
in place), each to a temporary file renamed over the old one. It is idempotent: a complete run holding
every sample is left alone, and racing merges queue on the lock, so the last shard always merges.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from harness.errors import DataError, HarnessError, UsageError
from harness.reasoning_stats import ReasoningSummary
from harness.runs.locks import FileLock
from harness.runs.manifest import Invocation, Manifest, how_it_ended, now_iso
from harness.runs.store import (
    LOCK,
    MANIFEST,
    SAMPLES,
    SHARDS_DIR,
    SampleRecord,
    SamplesFile,
    read_json,
    sorted_by_ids,
    storage_error,
    write_json_atomic,
)
from harness.suite import LoadedData, Suite
from harness.types import Metric, Sample, Score

SHARD_FILE, MERGE_LOCK = "shard.json", ".merge.lock"
MERGE_WAIT_S = 900.0  # a merge takes seconds; a queued merger waits this long before giving up

Finish = Callable[[Path, Suite, Sequence[SampleRecord]], tuple[dict[str, Metric], ReasoningSummary | None]]


class ShardIndex(Protocol):  # harness.runner.Shard
    @property
    def index(self) -> int: ...

    @property
    def count(self) -> int: ...


def shard_dir(run_dir: Path, index: int, count: int) -> Path:
    return run_dir / SHARDS_DIR / f"{index}-of-{count}"


def read_shard_state(folder: Path) -> dict[str, Any] | None:
    """A shard folder's shard.json (status, shard, manifest), or None when it has none yet."""
    path = folder / SHARD_FILE
    return read_json(path, "shard status file") if path.is_file() else None


@dataclass(frozen=True)
class MergeResult:
    merged: bool  # the run folder now holds the merged run (by this call or an earlier one)
    already: bool = False  # it already did: nothing was written
    waiting_for: tuple[int, ...] = ()  # shards not complete yet
    metrics: dict[str, Metric] | None = None
    reasoning: ReasoningSummary | None = None


@dataclass(frozen=True)
class ShardSteps:
    """What the runner lends a shard (harness.runner builds it), so this module never imports the runner."""

    new_manifest: Callable[[Path], Manifest]  # the manifest an unsharded run would start (folder: where)
    generate: Callable[[Sequence[Sample], list[SampleRecord], SamplesFile], Awaitable[None]]
    account: Callable[[Invocation], Invocation]  # the invocation with what generation counted
    finish: Finish  # metrics over records, metrics.json written into a folder


@dataclass(frozen=True)
class ShardOutcome:
    run_dir: Path  # the merged run, or the shard's folder while others are missing
    metrics: dict[str, Metric]
    invocation: Invocation
    n_samples: int
    reasoning: ReasoningSummary | None = None


async def run_shard(
    shard: ShardIndex,
    suite: Suite,
    loaded: LoadedData,
    run_dir: Path,
    adapter: str,
    fresh: bool,
    steps: ShardSteps,
) -> ShardOutcome:
    """Evaluate one shard into its folder (resuming by sample id), then try to merge the run."""
    folder = shard_dir(run_dir, shard.index, shard.count)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise storage_error(error, folder, "create the shard folder") from None
    order = [s.id for s in loaded.samples]
    samples = list(loaded.samples[shard.index :: shard.count])
    with FileLock(folder / LOCK):
        if fresh:
            for name in (SAMPLES, SHARD_FILE):
                (folder / name).unlink(missing_ok=True)
        manifest = _shard_manifest(folder, adapter, loaded, run_dir, steps)
        samples_file = SamplesFile(folder / SAMPLES)
        existing = samples_file.load(repair=True)
        selected = {s.id for s in samples}
        records = [r for r in existing.records if r.id in selected]
        invocation = Invocation(
            started_at=now_iso(), resumed=len(records), repaired_bytes=existing.repaired_bytes
        )
        label = f"{shard.index}/{shard.count}"
        _write_state(folder, label, manifest.with_invocation(invocation))
        mark = suite.measurement_mark()
        try:
            if not _merged_already(run_dir, order):  # a complete run needs nothing but the merge attempt
                await steps.generate(samples, records, samples_file)
            samples_file.close()
            final = SamplesFile(folder / SAMPLES).load(repair=False).records
            shard_records = sorted_by_ids([r for r in final if r.id in selected], order)
            if len(shard_records) != len(samples) and not _merged_already(run_dir, order):
                raise DataError(
                    f"{folder / SAMPLES} holds {len(shard_records)} of {len(samples)} samples after the run.",
                    "This is a bug; re-run the same command to complete the shard.",
                )
            done = replace(
                steps.account(invocation), finished_at=now_iso(), status="complete",
                sandbox_timing=suite.measurement_since(mark),
            )  # fmt: skip
            _write_state(folder, label, _with_usage(manifest.with_invocation(done), shard_records))
        except BaseException as error:
            status, message = how_it_ended(error)
            failed = replace(
                steps.account(invocation), finished_at=now_iso(), status=status, error=message,
                sandbox_timing=suite.measurement_since(mark),
            )  # fmt: skip
            with contextlib.suppress(HarnessError):
                _write_state(folder, label, manifest.with_invocation(failed))
            raise
        finally:
            samples_file.close()
    merge = merge_run(run_dir, suite, order, shard.count, steps.finish)
    if merge.merged and merge.metrics is not None:
        return ShardOutcome(run_dir, merge.metrics, done, len(order), merge.reasoning)
    if merge.merged:  # merged before: its metrics are on disk
        merged_records = SamplesFile(run_dir / SAMPLES).load(repair=False).records
        return ShardOutcome(run_dir, suite_metrics(suite, merged_records), done, len(merged_records))
    return ShardOutcome(folder, suite_metrics(suite, shard_records), done, len(shard_records))


def suite_metrics(suite: Suite, records: Sequence[SampleRecord]) -> dict[str, Metric]:
    return suite.metrics([Score(values=r.scores, extracted=r.extracted) for r in records])


def _shard_manifest(
    folder: Path, adapter: str, loaded: LoadedData, run_dir: Path, steps: ShardSteps
) -> Manifest:
    """The manifest this shard contributes (the run's, as an unsharded run would write it), checked against
    what an earlier attempt of the shard recorded, exactly as a resumed run is checked."""
    state = read_shard_state(folder)
    if state is None:
        return replace(steps.new_manifest(folder), settings_hash=run_dir.name)
    path = folder / SHARD_FILE
    manifest = Manifest.from_record(state.get("manifest") or {}, path)
    if manifest.adapter != adapter:
        raise UsageError(
            f"The shard {folder} holds responses from '{manifest.adapter}', but this checkpoint is now "
            f"'{adapter}' (the weights or backend changed).",
            "Pass --fresh to start this shard over, or use another runs folder.",
        )
    if manifest.data_sha256 != loaded.sha256:
        raise DataError(
            f"The data behind {folder} changed (sha256 {manifest.data_sha256[:12]} then, {loaded.sha256[:12]} now).",
            "Point --data-dir at the data the run used, or pass --fresh to start the shard over.",
        )
    return manifest


def _write_state(folder: Path, shard: str, manifest: Manifest) -> None:
    record = {"shard": shard, "status": manifest.status, "manifest": manifest.to_record()}
    write_json_atomic(folder / SHARD_FILE, record)


def _with_usage(manifest: Manifest, records: Sequence[SampleRecord]) -> Manifest:
    usage = [c for r in records for c in r.completions]
    return replace(
        manifest,
        prompt_tokens=sum(c.prompt_tokens for c in usage),
        completion_tokens=sum(c.completion_tokens for c in usage),
        cost_usd=round(sum(c.cost_usd for c in usage), 6),
    )


def _merged_already(run_dir: Path, order: Sequence[str]) -> bool:
    """The run folder holds a complete run with exactly these samples."""
    path = run_dir / MANIFEST
    if not path.is_file() or not (run_dir / SAMPLES).is_file():
        return False
    try:
        if Manifest.from_record(read_json(path, "run manifest"), path).status != "complete":
            return False
        ids = [r.id for r in SamplesFile(run_dir / SAMPLES).load(repair=False).records]
    except DataError:
        return False  # a damaged merge is redone
    return sorted(ids) == sorted(order)


def merge_run(run_dir: Path, suite: Suite, order: Sequence[str], count: int, finish: Finish) -> MergeResult:
    """Merge the `count` shards of the run in `run_dir` if every one is complete (see the module doc);
    `finish` computes the metrics and writes metrics.json (harness.runner.finish_metrics)."""
    with FileLock(run_dir / MERGE_LOCK, wait_s=MERGE_WAIT_S):
        if _merged_already(run_dir, order):
            return MergeResult(merged=True, already=True)
        folders = [shard_dir(run_dir, i, count) for i in range(count)]
        states = [read_shard_state(folder) for folder in folders]
        waiting = tuple(i for i, s in enumerate(states) if s is None or s.get("status") != "complete")
        if waiting:
            return MergeResult(merged=False, waiting_for=waiting)
        manifests = [
            Manifest.from_record(s.get("manifest") or {}, f / SHARD_FILE)
            for s, f in zip(states, folders, strict=True)
            if s is not None
        ]
        for field in ("adapter", "data_sha256", "settings_hash", "suite_version"):
            values = {getattr(m, field) for m in manifests}
            if len(values) > 1:
                raise DataError(
                    f"The shards of {run_dir} disagree on {field} ({', '.join(sorted(map(str, values)))}).",
                    "Re-run the odd shards with --fresh (same checkpoint, data and settings as the others).",
                )
        records = _shard_records(folders, set(order))
        if len(records) != len(order):
            missing = sorted(set(order) - {r.id for r in records})[:5]
            raise DataError(
                f"The shards of {run_dir} are complete but lack {len(order) - len(records)} samples ({missing}).",
                "Re-run the shards that lack them (each resumes by sample id).",
            )
        ordered = sorted_by_ids(records, order)
        SamplesFile(run_dir / SAMPLES).rewrite(ordered)
        metrics, reasoning = finish(run_dir, suite, ordered)
        invocations = sorted((i for m in manifests for i in m.invocations), key=lambda i: i.started_at)
        merged = _with_usage(
            replace(
                manifests[0],
                status="complete",
                invocations=tuple(invocations),
                created_at=min(m.created_at for m in manifests),
                n_samples=len(order),
            ),
            ordered,
        )
        write_json_atomic(run_dir / MANIFEST, merged.to_record())  # last: only now is the run complete
        return MergeResult(merged=True, metrics=metrics, reasoning=reasoning)


def _shard_records(folders: Sequence[Path], wanted: set[str]) -> list[SampleRecord]:
    seen: dict[str, Path] = {}
    records: list[SampleRecord] = []
    for folder in folders:
        for record in SamplesFile(folder / SAMPLES).load(repair=False).records:
            if record.id not in wanted:
                continue
            if record.id in seen:
                raise DataError(
                    f"Sample {record.id} is in two shards ({seen[record.id]} and {folder}).",
                    "Each shard must be run with the same --limit and shard count; delete the odd shard folder.",
                )
            seen[record.id] = folder
            records.append(record)
    return records
