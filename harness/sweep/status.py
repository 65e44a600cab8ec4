"""`harness sweep status FILE`: progress per checkpoint and suite, read from the run folders alone.

A (checkpoint, suite) is found under `<runs>/<checkpoint slug>/<suite>@*/<settings hash>/` among the folders
whose manifest (or a shard's) matches the sweep's limit, generation overrides and judge; the one furthest
along is shown. Samples done count the merged run's samples, else the shard folders' samples together.
Reading never writes and never locks, so it is safe while the tasks run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.checkpoints import parse_checkpoint
from harness.errors import DataError, HarnessError
from harness.runs.manifest import Manifest
from harness.runs.store import MANIFEST, SAMPLES, SHARDS_DIR, SamplesFile, read_json
from harness.shards import SHARD_FILE
from harness.sweep.slurm import served_reference
from harness.sweep.spec import SweepCheckpoint, SweepSpec

_GENERATION_FIELDS = {
    "max_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
}


@dataclass(frozen=True)
class TaskStatus:
    checkpoint: str
    suite: str
    samples_done: int
    samples_total: int | None  # None: nothing ran yet and the sweep has no limit
    shards_done: int
    shard_count: int  # 0: not sharded (or not started)
    merged: bool  # complete: the run folder holds every sample with its metrics
    run_dir: Path | None

    @property
    def state(self) -> str:
        if self.merged:
            return "complete"
        if self.shard_count and self.shards_done == self.shard_count:
            return "merging"
        return "running" if self.samples_done or self.run_dir is not None else "pending"


def sweep_status(spec: SweepSpec, runs_root: Path) -> list[TaskStatus]:
    """One row per (checkpoint, suite) of the sweep, in file order."""
    return [_status(spec, runs_root, c, suite) for c in spec.checkpoints for suite in c.suites]


def _status(spec: SweepSpec, runs_root: Path, checkpoint: SweepCheckpoint, suite: str) -> TaskStatus:
    references = [checkpoint.reference]
    if checkpoint.serve is not None:
        references.insert(0, served_reference(checkpoint))
    rows = [
        _folder_status(checkpoint.reference, suite, folder, spec.limit)
        for reference in references
        for folder in _candidates(runs_root, reference, suite)
        if _matches(folder, spec)
    ]
    if not rows:
        return TaskStatus(checkpoint.reference, suite, 0, spec.limit, 0, 0, False, None)
    return max(rows, key=lambda row: (row.merged, row.samples_done, row.shards_done))


def _candidates(runs_root: Path, reference: str, suite: str) -> list[Path]:
    try:
        slug = parse_checkpoint(reference).slug()
    except HarnessError:
        return []
    folder = runs_root / slug
    return sorted(p for p in folder.glob(f"{suite}@*/*") if p.is_dir()) if folder.is_dir() else []


def _manifests(folder: Path) -> list[Manifest]:
    found: list[Manifest] = []
    paths = [
        (folder / MANIFEST, None),
        *((p, "manifest") for p in sorted(folder.glob(f"{SHARDS_DIR}/*/{SHARD_FILE}"))),
    ]
    for path, key in paths:
        if not path.is_file():
            continue
        try:
            record = read_json(path, "manifest")
            found.append(Manifest.from_record(record if key is None else record.get(key) or {}, path))
        except DataError:
            continue
    return found


def _matches(folder: Path, spec: SweepSpec) -> bool:
    manifests = _manifests(folder)
    return bool(manifests) and _agrees(manifests[0], spec.limit, spec.generation, spec.judge)


def _agrees(manifest: Manifest, limit: int | None, generation: Mapping[str, Any], judge: str | None) -> bool:
    if manifest.limit != limit:
        return False
    settings = manifest.generation
    for key, attribute in _GENERATION_FIELDS.items():
        if generation.get(key) is not None and getattr(settings, attribute) != generation[key]:
            return False
    if generation.get("samples") is not None and settings.n != generation["samples"]:
        return False
    return judge is None or manifest.suite_settings.get("judge", judge) == judge


def _count(path: Path) -> int:
    try:
        return len(SamplesFile(path).load(repair=False).records)
    except HarnessError:
        return 0


def _folder_status(reference: str, suite: str, folder: Path, limit: int | None) -> TaskStatus:
    manifests = _manifests(folder)
    total = manifests[0].n_samples if manifests else limit
    shard_folders = sorted(p for p in folder.glob(f"{SHARDS_DIR}/*-of-*") if p.is_dir())
    counts = {int(p.name.split("-of-")[1]) for p in shard_folders if p.name.split("-of-")[-1].isdigit()}
    shard_count = max(counts) if counts else 0
    shards_done = 0
    for shard in shard_folders:
        if shard.name.endswith(f"-of-{shard_count}") and (shard / SHARD_FILE).is_file():
            try:
                shards_done += read_json(shard / SHARD_FILE, "shard status file").get("status") == "complete"
            except DataError:
                continue
    merged_path = folder / MANIFEST
    merged = False
    if merged_path.is_file():
        try:
            merged = (
                Manifest.from_record(read_json(merged_path, "manifest"), merged_path).status == "complete"
            )
        except DataError:
            merged = False
    done = _count(folder / SAMPLES)
    if not merged and shard_folders:
        done = max(
            done, sum(_count(p / SAMPLES) for p in shard_folders if p.name.endswith(f"-of-{shard_count}"))
        )
    return TaskStatus(reference, suite, done, total, shards_done, shard_count, merged, folder)


def format_status(rows: Sequence[TaskStatus]) -> str:
    """The status rows as a table, with a closing line counting complete (checkpoint, suite) pairs."""
    from harness.table import render

    table = [
        [
            row.checkpoint,
            row.suite,
            f"{row.samples_done}/{'?' if row.samples_total is None else row.samples_total}",
            f"{row.shards_done}/{row.shard_count}" if row.shard_count else "-",
            row.state,
        ]
        for row in rows
    ]
    complete = sum(row.merged for row in rows)
    footer = f"{complete} of {len(rows)} checkpoint x suite runs complete"
    return render(["checkpoint", "suite", "samples", "shards", "state"], table, right=(2, 3)) + "\n" + footer
