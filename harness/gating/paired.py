"""Statistics for comparing two runs on the same samples (the compare page, the reports and the gate).

- `pair_by_id`: the samples both runs scored, in the first run's order.
- `paired_delta`: the difference of means (b - a) with the interval the reports and the gate print: the
  paired bootstrap where it suits the pairs, else a small-n method (harness.gating.paired_intervals:
  Tango's score interval for 0/1 scores, Student-t or a bounded Tango interval for graded ones, a
  stratified Tango interval for strata); `PairedDelta.method` names it.
- `paired_bootstrap`: the difference of means (b - a) with a seeded percentile interval from resampling
  the *pairs* (so the correlation between the two runs is kept: far narrower than comparing two
  independent intervals). Optional strata: the statistic is then the mean of per-stratum means (the
  safety score's definition) and the pairs are resampled within each stratum.
- `mcnemar_exact`: the exact (binomial) McNemar test for 0/1 scores.
- `sign_flip_test`: a paired randomization test for scores that are not 0/1 (e.g. pass@1 with n > 1).
- `holm`: Holm-Bonferroni adjusted p-values across suites.

Speed without numpy: a bootstrap resample of n pairs only matters through how many times each
*distinct* difference is drawn, which is multinomial(n, counts/n); it is drawn as a chain of binomials
(CPython 3.12's `binomialvariate` algorithm, copied so results are the same on 3.11 and 3.12+). This
has exactly the distribution of resampling indices, at O(distinct values) per resample instead of
O(n): with 0/1 scores there are at most three distinct differences (-1, 0, 1).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from harness.gating.paired_intervals import bootstrap_suits_pairs, small_n_interval, stratified_interval
from harness.stats import stderr_of_mean


@dataclass(frozen=True)
class PairedDelta:
    mean_a: float
    mean_b: float
    delta: float  # mean_b - mean_a
    ci_low: float
    ci_high: float
    n: int  # pairs
    stderr: float  # standard error of the mean paired difference (nan when n < 2)
    level: float = 0.95
    resamples: int = 10000  # 0: no bootstrap made the interval
    method: str = "bootstrap"  # how ci_low/ci_high were made (harness.gating.paired_intervals)


@dataclass(frozen=True)
class McNemar:
    n: int  # pairs
    b01: int  # a wrong (0), b right (1)
    b10: int  # a right (1), b wrong (0)
    p_value: float  # exact two-sided

    @property
    def discordant(self) -> int:
        return self.b01 + self.b10


def pair_by_id(a: Mapping[str, float], b: Mapping[str, float]) -> tuple[list[str], list[float], list[float]]:
    """Ids present in both, in a's order, with their two values."""
    ids = [key for key in a if key in b]
    return ids, [float(a[key]) for key in ids], [float(b[key]) for key in ids]


def _check_pairs(a: Sequence[float], b: Sequence[float]) -> None:
    if len(a) != len(b):
        raise ValueError(f"paired samples need equal lengths (got {len(a)} and {len(b)})")
    if not a:
        raise ValueError("no pairs to compare")


def binomial_variate(rng: random.Random, n: int, p: float) -> int:
    """One Binomial(n, p) draw: CPython 3.12's random.binomialvariate (geometric method for n*p < 10,
    Hörmann's BTRS otherwise), kept here so a seed gives the same numbers on every Python version."""
    if n <= 0 or p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    if n == 1:
        return int(rng.random() < p)
    if p > 0.5:
        return n - binomial_variate(rng, n, 1.0 - p)
    if n * p < 10.0:
        x = y = 0
        c = math.log(1.0 - p)
        if not c:
            return x
        while True:
            y += math.floor(math.log(1.0 - rng.random()) / c) + 1  # 1 - random() is in (0, 1]
            if y > n:
                return x
            x += 1
    spq = math.sqrt(n * p * (1.0 - p))
    b = 1.15 + 2.53 * spq
    a = -0.0873 + 0.0248 * b + 0.01 * p
    c = n * p + 0.5
    vr = 0.92 - 4.2 / b
    setup = False
    alpha = lpq = h = 0.0
    m = 0
    while True:
        u = rng.random() - 0.5
        us = 0.5 - abs(u)
        if us <= 0.0:
            continue
        k = math.floor((2.0 * a / us + b) * u + c)
        if k < 0 or k > n:
            continue
        v = rng.random()
        if us >= 0.07 and v <= vr:
            return k
        if not setup:
            alpha = (2.83 + 5.1 / b) * spq
            lpq = math.log(p / (1.0 - p))
            m = math.floor((n + 1) * p)
            h = math.lgamma(m + 1) + math.lgamma(n - m + 1)
            setup = True
        v *= alpha / (a / (us * us) + b)
        if v > 0.0 and math.log(v) <= h - math.lgamma(k + 1) - math.lgamma(n - k + 1) + (k - m) * lpq:
            return k


def _resampled_sum(rng: random.Random, values: Sequence[float], counts: Sequence[int], n: int) -> float:
    """Sum of n draws with replacement from a population holding counts[j] copies of values[j]."""
    total, left, pool = 0.0, n, n
    for value, count in zip(values[:-1], counts[:-1], strict=True):
        if left == 0:
            return total
        drawn = binomial_variate(rng, left, count / pool)
        total += drawn * value
        left -= drawn
        pool -= count
    return total + left * values[-1]


def percentile_interval(stats: list[float], level: float) -> tuple[float, float]:
    # The same convention as harness.stats.bootstrap_interval.
    stats.sort()
    count = len(stats)
    return stats[int((1 - level) / 2 * count)], stats[min(count - 1, int((1 + level) / 2 * count))]


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    resamples: int = 10000,
    seed: int = 0,
    level: float = 0.95,
    strata: Sequence[str] | None = None,
) -> PairedDelta:
    """Difference of means b - a over paired samples with a percentile bootstrap interval.

    With `strata` (one label per pair) every mean is the mean of the per-stratum means and pairs are
    resampled within their stratum; the stderr then combines the strata's stderrs (as the safety score
    does)."""
    _check_pairs(a, b)
    if resamples < 1 or not 0 < level < 1:
        raise ValueError("resamples must be >= 1 and level in (0, 1)")
    labels = list(strata) if strata is not None else ["" for _ in a]
    if len(labels) != len(a):
        raise ValueError(f"one stratum per pair needed (got {len(labels)} for {len(a)} pairs)")
    groups: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(label, []).append(index)
    k = len(groups)
    mean_a = sum(sum(a[i] for i in idx) / len(idx) for idx in groups.values()) / k
    mean_b = sum(sum(b[i] for i in idx) / len(idx) for idx in groups.values()) / k
    diffs = {label: [b[i] - a[i] for i in idx] for label, idx in groups.items()}
    errors = [stderr_of_mean(d) for d in diffs.values()]
    stderr = math.nan if any(math.isnan(e) for e in errors) else math.sqrt(sum(e * e for e in errors)) / k
    # Per stratum: its distinct differences (sorted, so the draw order is deterministic) and counts.
    tables = []
    for d in diffs.values():
        counter = sorted(Counter(d).items())
        tables.append(([v for v, _ in counter], [c for _, c in counter], len(d)))
    rng = random.Random(seed)
    stats = [
        sum(_resampled_sum(rng, values, counts, size) / size for values, counts, size in tables) / k
        for _ in range(resamples)
    ]
    low, high = percentile_interval(stats, level)
    return PairedDelta(mean_a, mean_b, mean_b - mean_a, low, high, len(a), stderr, level, resamples)


def paired_delta(
    a: Sequence[float],
    b: Sequence[float],
    resamples: int = 10000,
    seed: int = 0,
    level: float = 0.95,
    strata: Sequence[str] | None = None,
) -> PairedDelta:
    """paired_bootstrap where every stratum (or the whole, without strata) suits the bootstrap, else the
    same means with a small-n interval and its method (harness.gating.paired_intervals). The choice and
    the interval depend only on each stratum's differences and on whether the scores are 0/1 or lie in
    [0, 1], never on the seed."""
    labels = list(strata) if strata is not None else ["" for _ in a]
    _check_pairs(a, b)
    if resamples < 1 or not 0 < level < 1:
        raise ValueError("resamples must be >= 1 and level in (0, 1)")
    groups: dict[str, list[float]] = {}
    for label, x, y in zip(labels, a, b, strict=False):
        groups.setdefault(label, []).append(y - x)
    if len(labels) != len(a) or all(bootstrap_suits_pairs(d) for d in groups.values()):
        return paired_bootstrap(a, b, resamples=resamples, seed=seed, level=level, strata=strata)
    binary = is_binary(a) and is_binary(b)
    bounded = all(0.0 <= v <= 1.0 for v in (*a, *b))
    if strata is None:
        low, high, method = small_n_interval(groups[""], binary, bounded, level)
    else:
        low, high, method = stratified_interval(list(groups.values()), binary, bounded, level)
    means = paired_bootstrap(a, b, resamples=1, seed=seed, level=level, strata=strata)  # means, stderr
    return replace(means, ci_low=low, ci_high=high, level=level, resamples=0, method=method)


def is_binary(values: Sequence[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def mcnemar_exact(a: Sequence[float], b: Sequence[float]) -> McNemar:
    """Exact two-sided McNemar test: p = min(1, 2 P[X <= min(b01, b10)]), X ~ Bin(b01 + b10, 1/2)."""
    _check_pairs(a, b)
    if not (is_binary(a) and is_binary(b)):
        raise ValueError("McNemar's test needs 0/1 scores; use sign_flip_test for other scores")
    b01 = sum(1 for x, y in zip(a, b, strict=True) if x == 0.0 and y == 1.0)
    b10 = sum(1 for x, y in zip(a, b, strict=True) if x == 1.0 and y == 0.0)
    return McNemar(len(a), b01, b10, binomial_two_sided(min(b01, b10), b01 + b10))


def binomial_two_sided(k: int, n: int) -> float:
    """min(1, 2 P[X <= k]) for X ~ Bin(n, 1/2), k <= n/2; exact integer arithmetic (1 when n == 0)."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, float(2 * tail / (1 << n)))  # int / int is correctly rounded however large


def sign_flip_test(a: Sequence[float], b: Sequence[float], resamples: int = 10000, seed: int = 0) -> float:
    """Two-sided paired randomization test of mean(b - a) = 0: each difference's sign is flipped at
    random; p = (1 + #{|sum*| >= |sum|}) / (1 + resamples). 1.0 when every difference is 0."""
    _check_pairs(a, b)
    magnitudes = Counter(abs(y - x) for x, y in zip(a, b, strict=True) if y != x)
    observed = abs(sum(y - x for x, y in zip(a, b, strict=True)))
    if not magnitudes:
        return 1.0
    table = sorted(magnitudes.items())
    tolerance = 1e-9 * max(1.0, observed)
    rng = random.Random(seed)
    extreme = 0
    for _ in range(resamples):
        total = sum(v * (2 * binomial_variate(rng, c, 0.5) - c) for v, c in table)
        extreme += abs(total) >= observed - tolerance
    return (1 + extreme) / (1 + resamples)


def holm(pvalues: Mapping[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values (step-down, made monotone, capped at 1), in the input's order."""
    ordered = sorted(pvalues.items(), key=lambda kv: kv[1])
    m = len(ordered)
    adjusted: dict[str, float] = {}
    running = 0.0
    for rank, (key, p) in enumerate(ordered):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[key] = running
    return {key: adjusted[key] for key in pvalues}
