"""`harness.evaluate_many`: several checkpoints, each on its suites, all at once through one scheduler.

    results = harness.evaluate_many(
        ["http://h:8000/v1#team1-sft", "http://h:8000/v1#team1-dpo"], suites=["gsm8k", "ifeval"], limit=50
    )
    [r["gsm8k"].primary_value() for r in results]

Every suite of every checkpoint starts at once; requests to the same endpoint (one server base URL,
however many LoRAs it serves) wait in one bounded queue (harness.scheduler), so the server stays busy
until the last request. Each checkpoint gets its own adapter (closed at the end); each suite its own run
folder, lock and manifest, exactly as `harness.evaluate` writes them. The cost of everything is
estimated, and refused above `max_cost`, before anything generates. A failing suite cancels the others
(their finished samples stay on disk and their manifests say interrupted) and its error is raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.api.evaluate import EvalResults, Generation, PreparedCheckpoint, evaluate_prepared, run_sync
from harness.checkpoints import CheckpointRef
from harness.data import resolve_data_source
from harness.errors import UsageError
from harness.lineage import resolve_checkpoint
from harness.runs.store import runs_root
from harness.suite import SuiteOptions

if TYPE_CHECKING:
    from adapters.options import AdapterOptions
    from harness.runner import Shard


@dataclass(frozen=True)
class CheckpointJob:
    """One checkpoint of `evaluate_many`: its own suites and backend options (None: the call's)."""

    reference: str
    suites: tuple[str, ...] | None = None
    backend: AdapterOptions | None = None


def evaluate_many(
    checkpoints: Sequence[str | CheckpointJob],
    suites: Sequence[str] | str | None = None,
    *,
    limit: int | None = None,
    runs: str | Path | None = None,
    data_dir: str | Path | None = None,
    generation: Generation | None = None,
    backend: AdapterOptions | None = None,
    scoring: SuiteOptions | None = None,
    max_cost: float | None = None,
    cache: bool = True,
    fresh: bool = False,
    progress: bool = True,
    shard: Shard | None = None,
) -> list[EvalResults]:
    """`harness.evaluate` for several checkpoints at once: one EvalResults per checkpoint, in order. A
    checkpoint given as a CheckpointJob brings its own suites and backend options; the keyword options
    are `evaluate`'s and apply to all. `max_cost` bounds each checkpoint's estimate and their sum."""
    work = evaluate_many_async(
        checkpoints, suites, limit=limit, runs=runs, data_dir=data_dir, generation=generation,
        backend=backend, scoring=scoring, max_cost=max_cost, cache=cache, fresh=fresh, progress=progress,
        shard=shard,
    )  # fmt: skip
    return run_sync(work, "evaluate_many")


async def evaluate_many_async(
    checkpoints: Sequence[str | CheckpointJob],
    suites: Sequence[str] | str | None = None,
    *,
    limit: int | None = None,
    runs: str | Path | None = None,
    data_dir: str | Path | None = None,
    generation: Generation | None = None,
    backend: AdapterOptions | None = None,
    scoring: SuiteOptions | None = None,
    max_cost: float | None = None,
    cache: bool = True,
    fresh: bool = False,
    progress: bool = True,
    shard: Shard | None = None,
) -> list[EvalResults]:
    """`evaluate_many` for code that already runs an event loop."""
    from suites import build_suites, default_suites, get_suite

    if limit is not None and limit < 1:
        raise UsageError(f"limit must be at least 1, got {limit}.")
    jobs = [CheckpointJob(c) if isinstance(c, str) else c for c in checkpoints]
    if not jobs:
        raise UsageError("No checkpoint to evaluate.", "Name at least one checkpoint.")
    root = runs_root(None if runs is None else str(runs))
    resolved = [resolve_checkpoint(job.reference, root) for job in jobs]
    _refuse_repeats([ref for ref, _ in resolved])
    data = resolve_data_source(None if data_dir is None else str(data_dir))
    shared = [suites] if isinstance(suites, str) else list(suites or default_suites(data))
    names = [list(job.suites) if job.suites is not None else shared for job in jobs]
    # One suite set builds the model judge (if any suite takes one) once for every checkpoint; each
    # checkpoint gets suite objects of its own, as suites keep per-run state (sandbox timing).
    union = list(dict.fromkeys(name for own in names for name in own))
    suite_set = build_suites(union, scoring)
    try:
        overrides = generation or Generation()
        prepared = []
        for (ref, entry), own, job in zip(resolved, names, jobs, strict=True):
            built = [get_suite(name, scoring, suite_set.judge_model) for name in own]
            plans = tuple((suite, overrides.for_suite(suite)) for suite in built)
            prepared.append(PreparedCheckpoint(ref, entry, plans, job.backend or backend))
        return await evaluate_prepared(
            prepared, limit=limit, root=root, data=data, max_cost=max_cost, cache=cache, fresh=fresh,
            progress=progress, shard=shard,
        )  # fmt: skip
    finally:
        await suite_set.aclose()


def _refuse_repeats(refs: Sequence[CheckpointRef]) -> None:
    seen: set[str] = set()
    for ref in refs:
        if ref.raw in seen:  # the same run folders: the second writer would find them locked
            raise UsageError(
                f"The checkpoint {ref.raw} is named twice (a STAGE:TAG may name the same one).",
                "Name each checkpoint once.",
            )
        seen.add(ref.raw)
