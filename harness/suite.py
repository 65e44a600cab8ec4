"""The Suite protocol: load -> requests -> score -> metrics, plus reward() for RL."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from harness.data import DataSource
from harness.stats import summarize
from harness.types import ApiKind, Completion, GenerationSettings, Metric, Request, Sample, Score


@dataclass(frozen=True)
class SuiteOptions:
    """Choices a user may make per run that change how a suite scores (recorded via pinned_settings)."""

    judge: str = "refusal-heuristic"  # safety suites: which judge decides refusal


@dataclass(frozen=True)
class LoadedData:
    samples: tuple[Sample, ...]  # after --limit
    total: int  # rows in the split before --limit
    source: str  # "dir:/path/file" or "hub:repo@revision"
    sha256: str  # over the parsed rows of the whole split


class Suite(Protocol):
    name: str
    version: str
    primary_metric: str
    # What `harness eval` prints by default (the primary first); per-category breakdowns stay in the
    # run's metrics.json, `harness show` and `eval --all-metrics`.
    headline_metrics: tuple[str, ...]
    description: str  # the pinned settings, in words; shown by `harness suites show`

    def default_settings(self) -> GenerationSettings: ...

    def pinned_settings(self) -> Mapping[str, Any]:
        """Suite-specific settings (shots, prompt format, split) recorded in the manifest and hashed."""
        ...

    def load(self, source: DataSource, limit: int | None) -> LoadedData: ...

    def requests(self, sample: Sample, settings: GenerationSettings, api: ApiKind) -> list[Request]: ...

    def score(self, sample: Sample, completions: Sequence[Completion]) -> Score: ...

    def metrics(self, scores: Sequence[Score]) -> dict[str, Metric]: ...

    def reward(self, sample: Sample, text: str) -> float: ...

    def gold_response(self, sample: Sample) -> str | None:
        """A response the reference says is right (for scorer checks); None when the suite has none."""
        ...


async def score_sample(suite: Suite, sample: Sample, completions: Sequence[Completion]) -> Score:
    """A suite's async scorer when it has one (model judges), else its sync score() in a worker thread,
    so slow scorers (the code sandbox) do not stall requests in flight."""
    ascore = getattr(suite, "ascore", None)
    if ascore is not None:
        result: Score = await ascore(sample, completions)
        return result
    return await asyncio.to_thread(suite.score, sample, completions)


def scoring_slots(suite: Suite) -> int:
    """How many samples are scored at once. A suite scored by a model judge says how many the judge
    takes (`scoring_slots()`), else an async scorer gets 32; a suite whose score() waits on processes
    (the code sandbox) declares `parallel_scoring`, one per core; other sync scorers are pure Python
    under the GIL and not all of their libraries are thread-safe, so one."""
    declared = getattr(suite, "scoring_slots", None)
    if callable(declared):
        return max(1, int(declared()))
    if getattr(suite, "ascore", None) is not None:
        return 32
    return max(1, os.cpu_count() or 1) if getattr(suite, "parallel_scoring", False) else 1


async def score_many(suite: Suite, pairs: Sequence[tuple[Sample, Sequence[Completion]]]) -> list[Score]:
    """Scores in the order given, `scoring_slots(suite)` samples at a time (rescore, submission checks)."""
    gate = asyncio.Semaphore(scoring_slots(suite))

    async def one(sample: Sample, completions: Sequence[Completion]) -> Score:
        async with gate:
            return await score_sample(suite, sample, completions)

    return list(await asyncio.gather(*(one(s, c) for s, c in pairs)))


def mean_metrics(scores: Sequence[Score], names: Sequence[str], seed: int = 0) -> dict[str, Metric]:
    """The usual case: each metric is the mean of a per-sample value."""
    return {name: summarize(name, [s.values[name] for s in scores], seed=seed) for name in names}
