"""Intervals for a paired difference of means (b - a) that stay honest where the bootstrap does not.

harness.gating.paired.paired_delta picks the method; this module holds the methods and the rule.

- When the percentile bootstrap suits the pairs (`bootstrap_suits_pairs`): MIN_BOOTSTRAP_N pairs (30:
  below that it under-covers, harness.stats) of which at least MIN_STRATUM_OUTCOMES (5) differ from the
  most common difference. The bootstrap's spread comes only from how often those pairs are redrawn, a
  Binomial(n, m/n) count, about Poisson(m): below 5 its percentiles are a few coarse steps, and with no
  such pair it is the constant [0, 0] at n = 300 identical runs (the usual n*p >= 5 rule, as
  harness.stats.bootstrap_suits_stratum applies it to a 0/1 stratum).
- Otherwise, 0/1 scores: Tango's asymptotic score interval for the difference of paired proportions
  (Tango 1998, Stat Med 17:891-908; among the intervals Fagerland, Lydersen & Laake compare for small
  samples, Stat Med 2014 and "Statistical Analysis of Contingency Tables" 2017, ch. 8; "tango"). It uses
  only the improvements, the regressions and n (what McNemar's test uses), and never has zero width: with no discordant pair among n it is +-z^2/(n + z^2), the Wilson
  bound of seeing no change in n pairs (+-43.4 points at n = 5).
- Otherwise, other scores (graded, e.g. pass@1 averaged over k samples): with at least 5 pairs off the
  most common difference, a Student-t interval of the mean difference ("t"; harness.stats' t table at
  95%), clipped to [-1, 1] when the scores lie in [0, 1]. With fewer (sparse changes make the sample
  standard deviation, and so t, as over-confident as a Wald interval on 1-4 discordant pairs; no change
  at all makes it zero), scores in [0, 1]: Tango's interval with the positive differences summed as
  improvements and the negative ones as regressions ("tango-bounded"). A difference d in [-1, 1] has
  d^2 <= |d|, so reading it as that much of a +-1 discordant pair errs wide, never narrow: the reasoning
  of harness.stats' "wilson-bounded", and the same interval as 0/1 scores at no discordance. Scores
  outside [0, 1] and no spread: no interval (NaN), as harness.stats does.
- Strata (the safety score, the mean of per-stratum means): the stratified bootstrap when every stratum
  suits it, else Tango's interval at the effective size n* = 1 / sum_h(w_h^2 / n_h) with the weighted
  improvement and regression rates ("stratified-tango", for graded scores "stratified-tango-bounded"):
  the Yan & Su (2010) construction harness.stats.stratified_wilson_interval uses, conservative when the
  strata's rates differ, and plain Tango for one stratum or one pair per stratum.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from statistics import NormalDist

from harness.stats import MIN_BOOTSTRAP_N, MIN_STRATUM_OUTCOMES, stderr_of_mean, student_t_interval

_BISECTIONS = 100  # halvings of [-1, 1]: far below float resolution


def z_of(level: float) -> float:
    return NormalDist().inv_cdf((1 + level) / 2)


def off_mode(diffs: Sequence[float]) -> int:
    """How many differences differ from the most common one (0 when all are equal)."""
    return len(diffs) - max(Counter(diffs).values()) if diffs else 0


def bootstrap_suits_pairs(diffs: Sequence[float]) -> bool:
    """Whether the percentile bootstrap of mean(diffs) has enough spread to be trusted (module doc)."""
    return len(diffs) >= MIN_BOOTSTRAP_N and off_mode(diffs) >= MIN_STRATUM_OUTCOMES


def _tango_score(improved: float, regressed: float, n: float, delta0: float) -> float:
    """Tango's score statistic for H0: delta = delta0, with the constrained MLE of the regression rate."""
    a = 2 * n
    b = -improved - regressed + (2 * n - improved + regressed) * delta0
    c = -regressed * delta0 * (1 - delta0)
    p_regressed = (math.sqrt(max(0.0, b * b - 4 * a * c)) - b) / (2 * a)
    variance = n * (2 * p_regressed + delta0 * (1 - delta0))
    excess = improved - regressed - n * delta0
    if variance <= 0.0:
        return 0.0 if excess == 0 else math.copysign(math.inf, excess)
    return excess / math.sqrt(variance)


def tango_interval(improved: float, regressed: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Tango's score interval for (improved - regressed) / n: the deltas whose score is within +-z.
    Counts may be fractional (graded differences, effective sizes); the score decreases in delta0, so
    each bound is found by bisection between the estimate and -1 or 1."""
    z = z_of(level)
    estimate = (improved - regressed) / n
    low, high = -1.0, estimate
    for _ in range(_BISECTIONS):
        mid = (low + high) / 2
        low, high = (mid, high) if _tango_score(improved, regressed, n, mid) > z else (low, mid)
    lower = (low + high) / 2
    low, high = estimate, 1.0
    for _ in range(_BISECTIONS):
        mid = (low + high) / 2
        low, high = (low, mid) if _tango_score(improved, regressed, n, mid) < -z else (mid, high)
    return lower, (low + high) / 2


def _t_coverage(t: float, df: int) -> float:
    """P[|T| <= t] for Student's t with df degrees of freedom (Abramowitz & Stegun 26.7.3-4, exact)."""
    theta = math.atan(t / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2:
        if df == 1:
            return 2 * theta / math.pi
        term = total = math.cos(theta)
        for k in range(1, (df - 1) // 2):
            term *= 2 * k / (2 * k + 1) * cos2
            total += term
        return 2 / math.pi * (theta + math.sin(theta) * total)
    term = total = 1.0
    for k in range(1, df // 2):
        term *= (2 * k - 1) / (2 * k) * cos2
        total += term
    return math.sin(theta) * total


def t_quantile(df: int, level: float) -> float:
    """The t with P[|T_df| <= t] = level (two-sided), by bisection on the exact coverage."""
    high = 1.0
    while _t_coverage(high, df) < level:
        high *= 2
    low = 0.0
    for _ in range(_BISECTIONS):
        mid = (low + high) / 2
        low, high = (mid, high) if _t_coverage(mid, df) < level else (low, mid)
    return (low + high) / 2


def t_interval(diffs: Sequence[float], level: float) -> tuple[float, float]:
    """mean +- t_{n-1} * stderr; at 95% exactly harness.stats.student_t_interval (its table)."""
    n = len(diffs)
    stderr = stderr_of_mean(diffs)
    if n < 2 or not stderr > 0:
        return (math.nan, math.nan)
    if level == 0.95 and n < MIN_BOOTSTRAP_N:
        return student_t_interval(diffs)
    mean = sum(diffs) / n
    half = t_quantile(n - 1, level) * stderr
    return (mean - half, mean + half)


def _masses(diffs: Sequence[float]) -> tuple[float, float]:
    """The improvement and regression masses: sums of the positive and of the negative differences."""
    return sum(d for d in diffs if d > 0), -sum(d for d in diffs if d < 0)


def small_n_interval(
    diffs: Sequence[float], binary: bool, bounded: bool, level: float
) -> tuple[float, float, str]:
    """The interval of mean(diffs) and its method where the bootstrap does not suit (module doc)."""
    if binary or (bounded and off_mode(diffs) < MIN_STRATUM_OUTCOMES):
        return (*tango_interval(*_masses(diffs), len(diffs), level), "tango" if binary else "tango-bounded")
    low, high = t_interval(diffs, level)
    if bounded:
        low, high = max(-1.0, low), min(1.0, high)
    return low, high, "t"


def stratified_interval(
    groups: Sequence[Sequence[float]], binary: bool, bounded: bool, level: float
) -> tuple[float, float, str]:
    """Tango's interval of the equally weighted mean of the strata's mean differences at the effective
    size (module doc); missing (NaN) for scores without a known range."""
    if not (binary or bounded):
        return (math.nan, math.nan, "stratified-none")
    weight = 1.0 / len(groups)
    effective_n = 1.0 / sum(weight * weight / len(g) for g in groups)
    improved = sum(weight * _masses(g)[0] / len(g) for g in groups) * effective_n
    regressed = sum(weight * _masses(g)[1] / len(g) for g in groups) * effective_n
    low, high = tango_interval(improved, regressed, effective_n, level)
    return low, high, "stratified-tango" if binary else "stratified-tango-bounded"
