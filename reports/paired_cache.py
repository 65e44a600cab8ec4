"""Work shared between the many paired comparisons of one figure (stage_deltas over a whole class).

A class of 1,000 checkpoints has ~1,000 lineage pairs x 5 suites. Done one by one, every run's
samples.jsonl is read once per pair it is in (twice for most), and each pair costs a 2,000-resample
bootstrap: most of a site build. Both are shared here, with results identical to doing each pair alone:

- `SharedSamples`: a run's per-sample records, read once for all the pairs that use it and dropped
  after its last use (pairs come team by team, so memory holds about one team's runs, never the class's).
- `BootstrapIntervals`: harness.gating.paired.paired_bootstrap draws each resample as binomial counts
  over a stratum's sorted distinct differences (strata in order of first appearance), so its interval
  is a function of those tables (with the seed, level and resample count). Pairs whose tables are
  equal (common with 0/1 scores on small runs: 20 samples give at most 231 tables) share one
  bootstrap; each pair's own means, delta and n still come from paired_bootstrap itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

from harness.gating.paired import PairedDelta, paired_bootstrap
from harness.runs.catalog import RunView
from harness.runs.store import SampleRecord


@dataclass(frozen=True)
class _LoadedRun(RunView):
    """A RunView whose samples were already read (reports.compare.paired_scores calls .samples())."""

    records: tuple[SampleRecord, ...] = ()

    def samples(self) -> tuple[SampleRecord, ...]:
        return self.records


class SharedSamples:
    """Each run's samples read on its first use and kept until its last (uses are known up front)."""

    def __init__(self, uses: Iterable[RunView]) -> None:
        self._left: Counter[Path] = Counter(run.run_dir for run in uses)
        self._held: dict[Path, tuple[SampleRecord, ...]] = {}

    def view(self, run: RunView) -> RunView:
        """`run` with its records in memory: the same records, errors and order as `run.samples()`."""
        records = self._held.get(run.run_dir)
        if records is None:
            records = run.samples()
        self._left[run.run_dir] -= 1
        if self._left[run.run_dir] > 0:
            self._held[run.run_dir] = records
        else:
            self._held.pop(run.run_dir, None)
        values = {f.name: getattr(run, f.name) for f in fields(RunView)}
        return _LoadedRun(**values, records=records)


Tables = tuple[tuple[tuple[tuple[float, int], ...], ...], int]


def _tables(a: Sequence[float], b: Sequence[float], strata: Sequence[str] | None, resamples: int) -> Tables:
    """What paired_bootstrap's interval depends on (see the module docstring): per stratum, in order of
    first appearance, the sorted (difference, count) table; with the resample count."""
    labels: Sequence[str] = strata if strata is not None else [""] * len(a)
    groups: dict[str, list[float]] = {}
    for label, x, y in zip(labels, a, b, strict=True):
        groups.setdefault(label, []).append(y - x)
    return tuple(tuple(sorted(Counter(d).items())) for d in groups.values()), resamples


class BootstrapIntervals:
    """paired_bootstrap (default seed and level) with its interval computed once per distinct table."""

    def __init__(self, resamples: int) -> None:
        self.resamples = resamples
        self._known: dict[Tables, tuple[float, float]] = {}

    def paired(self, a: Sequence[float], b: Sequence[float], strata: Sequence[str] | None) -> PairedDelta:
        if len(a) != len(b) or (strata is not None and len(strata) != len(a)):
            return paired_bootstrap(a, b, resamples=self.resamples, strata=strata)  # its own error
        key = _tables(a, b, strata, self.resamples)
        known = self._known.get(key)
        if known is None:
            result = paired_bootstrap(a, b, resamples=self.resamples, strata=strata)
            self._known[key] = (result.ci_low, result.ci_high)
            return result
        # One resample: this pair's own means, delta, n and stderr (and input checks), cheaply.
        own = paired_bootstrap(a, b, resamples=1, strata=strata)
        return replace(own, ci_low=known[0], ci_high=known[1], resamples=self.resamples)
