"""Extending `--limit` upward: a new run whose settings differ from an earlier run's only in a larger
`--limit` starts from that run's finished samples instead of generating and scoring them again.

The settings hash covers `--limit`, so `--limit 3` and `--limit 5` are two run folders side by side
under `<checkpoint>/<suite>@<version>/`. Every suite selects with `--limit N` the first N samples of one
fixed order (a stratified split is interleaved once, then cut), so a smaller limit's samples are the
first ones of a larger limit's. The copy does not rely on that alone: a record is copied only when its
sample id is in the new selection and its request keys are the ones the new run would send (the same
prompt under the same settings to the same adapter). The earlier run is only read, never changed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DataError
from harness.runs.manifest import Manifest
from harness.runs.store import MANIFEST, SAMPLES, SampleRecord, SamplesFile, find_runs, read_json
from harness.types import Sample


@dataclass(frozen=True)
class Extension:
    source: Path  # the smaller run's folder
    records: tuple[SampleRecord, ...]  # its finished samples that the new run selects, in the new order


def _same_settings(a: Manifest, b: Manifest) -> bool:
    """Equal in everything the settings hash and the run's identity cover, `--limit` aside."""

    def canonical(value: Any) -> str:
        return json.dumps(value, sort_keys=True, default=str)  # tuples and lists alike, as the hash sees them

    return (
        a.checkpoint == b.checkpoint
        and a.adapter == b.adapter
        and a.suite == b.suite
        and a.suite_version == b.suite_version
        and canonical(dict(a.suite_settings)) == canonical(dict(b.suite_settings))
        and canonical(a.generation.as_record()) == canonical(b.generation.as_record())
        and a.data_sha256 == b.data_sha256
    )


def _smaller(candidate: int | None, limit: int | None) -> bool:
    """True when `candidate` selects fewer samples than `limit` (None: the whole split)."""
    return candidate is not None and (limit is None or candidate < limit)


def find_extension(
    run_dir: Path,
    manifest: Manifest,
    samples: Sequence[Sample],
    request_keys: Callable[[Sample], tuple[str, ...]],
) -> Extension | None:
    """The finished samples of the sibling run with the same settings and a smaller `--limit` that
    covers the most of `samples` (then the larger limit, then the newer run); None when there is none.

    `manifest` is the new run's; `request_keys(sample)` the keys the new run would send for a sample. A
    sibling whose files cannot be read is skipped: reusing is a saving, never a reason to fail a run."""
    order = {sample.id: index for index, sample in enumerate(samples)}
    by_id = {sample.id: sample for sample in samples}
    best: tuple[tuple[int, int, str], Extension] | None = None
    for candidate in find_runs(run_dir.parent):
        if candidate.parent != run_dir.parent or candidate == run_dir:
            continue  # only the sibling run folders, each with a manifest (find_runs)
        try:
            other = Manifest.from_record(
                read_json(candidate / MANIFEST, "run manifest"), candidate / MANIFEST
            )
            if not _smaller(other.limit, manifest.limit) or not _same_settings(other, manifest):
                continue
            finished = SamplesFile(candidate / SAMPLES).load(repair=False).records  # never repairs it
        except DataError:
            continue
        reusable = sorted(
            (r for r in finished if r.id in by_id and r.request_keys == request_keys(by_id[r.id])),
            key=lambda r: order[r.id],
        )
        if not reusable:
            continue
        rank = (len(reusable), other.limit or 0, other.created_at)
        if best is None or rank > best[0]:
            best = (rank, Extension(candidate, tuple(reusable)))
    return None if best is None else best[1]


def relative_name(source: Path, runs_root: Path) -> str:
    """How the invocation names the source run: relative to the runs folder when it is inside it."""
    try:
        return str(source.relative_to(runs_root))
    except ValueError:
        return str(source)
