"""The formulas of the report's calibration section, on points (confidence, correct): a confidence in
[0, 1] and a 0/1 correctness per sample.

- Reliability bins: NUM_BINS equal-width bins; bin i holds confidences in [i/10, (i+1)/10) (the last bin
  also holds 1.0); per bin its count, mean confidence and accuracy (None for an empty bin).
- ECE (expected calibration error): sum over bins of n_b / N * |accuracy_b - confidence_b|.
- Brier score: mean of (confidence - correct)^2.
- AUROC of confidence for correctness: the probability that a correct sample has a higher confidence than
  a wrong one, ties counting one half (Mann-Whitney U / (n_correct * n_wrong)); None without both kinds.
- Abstention at a threshold t: answer only when confidence >= t; coverage = answered / N, accuracy over
  the answered (None when none is answered). At a fixed coverage c: answer the ceil(c * N) most confident
  samples (ties broken by record order); the accuracy over those, and the lowest confidence answered.
- 95% intervals of ECE and Brier: a percentile bootstrap, RESAMPLES resamples of the samples with
  replacement (random.Random(SEED); drawn bin by bin, see _bootstrap), the 2.5th and 97.5th
  percentiles. ECE is biased upward on small samples, so its interval can lie above the estimate: read
  it as the spread, not as a centred band.
- Paired (two runs on the same sample ids): the difference (b - a) of ECE and of Brier on the shared
  samples, with a paired percentile bootstrap: the same resampled ids for both runs in each resample.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from harness.gating.paired import binomial_variate

NUM_BINS = 10
RESAMPLES = 1000
SEED = 0
THRESHOLDS = (0.5, 0.7, 0.9)
COVERAGES = (0.5, 0.8)
BOOTSTRAP_METHOD = f"percentile bootstrap, {RESAMPLES} resamples of the samples, seed {SEED}"
PAIRED_METHOD = (
    f"paired percentile bootstrap, {RESAMPLES} resamples of the shared sample ids (the same draws for "
    f"both runs), seed {SEED}"
)

Point = tuple[float, float]  # (confidence in [0, 1], correct: 0 or 1)


@dataclass(frozen=True)
class Bin:
    low: float
    high: float
    count: int
    confidence: float | None  # mean confidence of the bin; None: empty
    accuracy: float | None


@dataclass(frozen=True)
class Threshold:
    threshold: float  # answer when confidence >= threshold
    answered: int
    coverage: float  # answered / N
    accuracy: float | None  # over the answered; None: none answered


@dataclass(frozen=True)
class Coverage:
    coverage: float  # the share asked for
    answered: int  # ceil(coverage * N) most confident
    min_confidence: float  # the lowest confidence answered
    accuracy: float


@dataclass(frozen=True)
class CalibrationStats:
    n: int
    accuracy: float
    mean_confidence: float
    bins: tuple[Bin, ...]
    ece: float
    ece_low: float | None  # None: fewer than 2 samples
    ece_high: float | None
    brier: float
    brier_low: float | None
    brier_high: float | None
    auroc: float | None
    thresholds: tuple[Threshold, ...]
    coverages: tuple[Coverage, ...]
    method: str = BOOTSTRAP_METHOD


def bin_of(confidence: float) -> int:
    return min(int(confidence * NUM_BINS), NUM_BINS - 1)


def reliability_bins(points: Sequence[Point]) -> tuple[Bin, ...]:
    counts = [0] * NUM_BINS
    confidence = [0.0] * NUM_BINS
    correct = [0.0] * NUM_BINS
    for p, y in points:
        b = bin_of(p)
        counts[b] += 1
        confidence[b] += p
        correct[b] += y
    return tuple(
        Bin(
            i / NUM_BINS,
            (i + 1) / NUM_BINS,
            counts[i],
            confidence[i] / counts[i] if counts[i] else None,
            correct[i] / counts[i] if counts[i] else None,
        )
        for i in range(NUM_BINS)
    )


def ece(points: Sequence[Point]) -> float:
    # n_b / N * |acc_b - conf_b| = |sum over the bin of (correct - confidence)| / N
    gaps = [0.0] * NUM_BINS
    for p, y in points:
        gaps[bin_of(p)] += y - p
    return sum(abs(g) for g in gaps) / len(points)


def brier(points: Sequence[Point]) -> float:
    return sum((p - y) ** 2 for p, y in points) / len(points)


def auroc(points: Sequence[Point]) -> float | None:
    """Mann-Whitney: mean rank of the correct samples among all (ties share their mean rank)."""
    positives = sum(1 for _, y in points if y == 1.0)
    negatives = len(points) - positives
    if positives == 0 or negatives == 0:
        return None
    ordered = sorted(points, key=lambda pt: pt[0])
    rank_sum, i = 0.0, 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1][0] == ordered[i][0]:
            j += 1
        mean_rank = (i + j) / 2 + 1  # ranks are 1-based
        rank_sum += mean_rank * sum(1 for _, y in ordered[i : j + 1] if y == 1.0)
        i = j + 1
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def at_thresholds(points: Sequence[Point], thresholds: Sequence[float] = THRESHOLDS) -> tuple[Threshold, ...]:
    result = []
    for t in thresholds:
        answered = [y for p, y in points if p >= t]
        result.append(
            Threshold(
                t,
                len(answered),
                len(answered) / len(points),
                sum(answered) / len(answered) if answered else None,
            )
        )
    return tuple(result)


def at_coverages(points: Sequence[Point], coverages: Sequence[float] = COVERAGES) -> tuple[Coverage, ...]:
    ordered = sorted(points, key=lambda pt: -pt[0])  # stable: ties keep the records' order
    result = []
    for c in coverages:
        k = max(1, math.ceil(c * len(points) - 1e-9))  # 1e-9: 0.8 * 10 is 8.000000000000002
        top = ordered[:k]
        result.append(Coverage(c, k, top[-1][0], sum(y for _, y in top) / k))
    return tuple(result)


def _percentiles(values: list[float]) -> tuple[float, float]:
    values.sort()
    return values[int(0.025 * len(values))], values[min(len(values) - 1, int(0.975 * len(values)))]


@dataclass(frozen=True)
class _Side:
    """One run's points as the bootstrap reads them: per sample its bin, correct - confidence, and its
    squared error."""

    bins: list[int]
    gaps: list[float]
    squared: list[float]

    @classmethod
    def of(cls, points: Sequence[Point]) -> _Side:
        return cls(
            [bin_of(p) for p, _ in points], [y - p for p, y in points], [(p - y) ** 2 for p, y in points]
        )


def _bootstrap(sides: Sequence[_Side], n: int) -> list[list[tuple[float, float]]]:
    """RESAMPLES resamples of the n sample indices with replacement, the same draws for every side; per
    resample, per side, (ECE, Brier) of the drawn samples.

    Speed without numpy: the samples are grouped by their bins on every side (a cell), and a resample is
    drawn as multinomial counts per cell (a chain of binomials), then that many indices uniformly within
    each cell: exactly the distribution of n uniform draws, with the sums taken in C (sum over map)."""
    cells: dict[tuple[int, ...], list[int]] = {}
    for i in range(n):
        cells.setdefault(tuple(side.bins[i] for side in sides), []).append(i)
    groups = list(cells.items())
    rng = random.Random(SEED)
    results = []
    for _ in range(RESAMPLES):
        gaps = [[0.0] * NUM_BINS for _ in sides]
        squared = [0.0 for _ in sides]
        remaining, mass = n, n
        for key, members in groups:
            if remaining == 0:
                break
            size = len(members)
            k = remaining if size == mass else binomial_variate(rng, remaining, size / mass)
            remaining, mass = remaining - k, mass - size
            if k == 0:
                continue
            drawn = rng.choices(members, k=k)
            for s, side in enumerate(sides):
                gaps[s][key[s]] += sum(map(side.gaps.__getitem__, drawn))
                squared[s] += sum(map(side.squared.__getitem__, drawn))
        results.append([(sum(abs(g) for g in gaps[s]) / n, squared[s] / n) for s in range(len(sides))])
    return results


def bootstrap_intervals(points: Sequence[Point]) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """(ECE interval, Brier interval); None for fewer than 2 samples."""
    if len(points) < 2:
        return None
    draws = _bootstrap([_Side.of(points)], len(points))
    return _percentiles([d[0][0] for d in draws]), _percentiles([d[0][1] for d in draws])


def calibration_stats(points: Sequence[Point]) -> CalibrationStats | None:
    """Every statistic of the module doc; None for no points."""
    if not points:
        return None
    n = len(points)
    intervals = bootstrap_intervals(points)
    (ece_low, ece_high), (brier_low, brier_high) = intervals or ((None, None), (None, None))
    return CalibrationStats(
        n=n,
        accuracy=sum(y for _, y in points) / n,
        mean_confidence=sum(p for p, _ in points) / n,
        bins=reliability_bins(points),
        ece=ece(points),
        ece_low=ece_low,
        ece_high=ece_high,
        brier=brier(points),
        brier_low=brier_low,
        brier_high=brier_high,
        auroc=auroc(points),
        thresholds=at_thresholds(points),
        coverages=at_coverages(points),
    )


@dataclass(frozen=True)
class PairedDifference:
    """b - a on the shared samples, with the paired bootstrap's 95% interval (None: fewer than 2 pairs)."""

    n: int
    a: float
    b: float
    delta: float
    ci_low: float | None
    ci_high: float | None


def paired_differences(
    a: Sequence[Point], b: Sequence[Point]
) -> tuple[PairedDifference, PairedDifference] | None:
    """(ECE, Brier) differences b - a; a[i] and b[i] are the same sample. None for no pairs."""
    if len(a) != len(b):
        raise ValueError(f"paired points need equal lengths (got {len(a)} and {len(b)})")
    n = len(a)
    if n == 0:
        return None
    ece_a, ece_b, brier_a, brier_b = ece(a), ece(b), brier(a), brier(b)
    ece_ci: tuple[float | None, float | None] = (None, None)
    brier_ci: tuple[float | None, float | None] = (None, None)
    if n >= 2:
        draws = _bootstrap([_Side.of(a), _Side.of(b)], n)
        ece_deltas = [side_b[0] - side_a[0] for side_a, side_b in draws]
        brier_deltas = [side_b[1] - side_a[1] for side_a, side_b in draws]
        ece_ci, brier_ci = _percentiles(ece_deltas), _percentiles(brier_deltas)
    return (
        PairedDifference(n, ece_a, ece_b, ece_b - ece_a, *ece_ci),
        PairedDifference(n, brier_a, brier_b, brier_b - brier_a, *brier_ci),
    )
