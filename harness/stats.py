"""Per-metric uncertainty: standard error and a 95% interval that never claims more than the data show.

- Proportions (every per-sample value 0 or 1): the Wilson score interval ("wilson"). Unlike the bootstrap
  or the normal approximation it does not collapse to [0, 0] at 0/20, so small `--limit` slices are
  reported honestly.
- Other values, from MIN_BOOTSTRAP_N samples on (and, for values in [0, 1], with some spread): a seeded
  percentile bootstrap ("bootstrap"). Below that size the percentile bootstrap is too narrow: for a mean it
  is about the normal interval with the divisor-n standard deviation, mean +- 1.96 * sd * sqrt((n-1)/n) /
  sqrt(n), so for normal data it covers 84.6% at n = 5, 90.4% at n = 10, 92.9% at n = 20 and 93.6% at
  n = 30 instead of 95% (P[|T_{n-1}| < 1.96 sqrt((n-1)/n)]; Hesterberg 2015, "What teachers should know
  about the bootstrap", calls it narrowness bias). From 30 on the shortfall is under 1.5 points and shrinks.
- Below that size, values in [0, 1] (graded scores such as MBPP pass@k averages; every built-in per-sample
  score lies there, and values that all do are taken to be bounded there): the Wilson interval of their
  sum over n ("wilson-bounded"). A [0, 1] value with mean p has variance at most p(1 - p), the 0/1 case,
  so reading the values as n pass/fail outcomes with the same mean errs wide, never narrow; and three
  tasks that all score 0.5 read as "about half, but we saw three" ([12.5, 87.5]%), not as a certain 50.0.
  The same applies at any n when the values show no spread.
- Below that size, values outside [0, 1] (no known range): a Student-t interval, mean +- t_{n-1, 0.975} *
  stderr ("t"). With fewer than two values, or no spread among them, there is no scale to borrow, so the
  interval is missing (None in metrics.json) rather than of zero width.
- A stratified mean of 0/1 values (the safety score): stratified_wilson_interval below, unless every
  stratum is large enough for the bootstrap (see bootstrap_suits_stratum).

The standard error is the sample standard deviation over sqrt(n), as lm-eval reports it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from harness.types import Metric

Z95 = 1.959963984540054
MIN_BOOTSTRAP_N = 30  # below this the percentile bootstrap under-covers by more than 1.5 points (docstring)
MIN_STRATUM_OUTCOMES = 5  # each outcome at least this often in a stratum (the usual n*p >= 5 rule)
# t_{df, 0.975} for df = 1 .. MIN_BOOTSTRAP_N - 1 (scipy.stats.t.ppf(0.975, df), rounded to 6 places)
T975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
    2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
    2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230,
)  # fmt: skip


def json_number(value: float | None) -> float | None:
    """A plain float for JSON records: None for a missing or NaN value (JSON has no NaN)."""
    return None if value is None or math.isnan(value) else float(value)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0 <= q <= 1) by linear interpolation between closest ranks (numpy's default);
    None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def stderr_of_mean(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return math.nan
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return math.sqrt(variance / n)


def wilson_interval(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of successes/n; n may be an effective (non-integer) sample size."""
    return (math.nan, math.nan) if n <= 0 else wilson_interval_of_rate(successes / n, n, z)


def wilson_interval_of_rate(p: float, n: float, z: float = Z95) -> tuple[float, float]:
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(0.0, p * (1 - p)) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def stratified_wilson_interval(parts: Sequence[Sequence[float]], z: float = Z95) -> tuple[float, float]:
    """The stratified Wilson interval (Yan & Su 2010) of the equally weighted mean of the strata's means:
    the Wilson interval of p = sum_h w_h p_h at the effective size n* = 1 / sum_h (w_h^2 / n_h), the size
    whose binomial variance p(1-p)/n* equals the estimate's variance when the strata share one rate. It
    never has zero width, always holds p, and is the plain Wilson interval for one stratum. With equal
    weights, strata of similar size and rates that differ, it is wider than needed (conservative)."""
    parts = [p for p in parts if p]
    if not parts:
        return (math.nan, math.nan)
    weight = 1.0 / len(parts)
    rate = sum(weight * sum(p) / len(p) for p in parts)
    effective_n = 1.0 / sum(weight * weight / len(p) for p in parts)
    return wilson_interval_of_rate(rate, effective_n, z)


def bootstrap_suits_stratum(values: Sequence[float]) -> bool:
    """Whether a 0/1 stratum is large enough for the stratified percentile bootstrap: MIN_BOOTSTRAP_N
    values (module docstring) holding each outcome MIN_STRATUM_OUTCOMES times. A stratum of all ones (or a
    handful of zeros) resamples to (nearly) the same mean every time: the bootstrap would give it no
    variance, the defect Wilson removes for plain proportions."""
    ones = sum(values)
    return len(values) >= MIN_BOOTSTRAP_N and min(ones, len(values) - ones) >= MIN_STRATUM_OUTCOMES


def bootstrap_interval(
    values: Sequence[float], resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        return (math.nan, math.nan)
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    lo = means[int((1 - level) / 2 * resamples)]
    hi = means[min(resamples - 1, int((1 + level) / 2 * resamples))]
    return (lo, hi)


def student_t_interval(values: Sequence[float]) -> tuple[float, float]:
    """mean +- t_{n-1, 0.975} * stderr for 2 <= n < MIN_BOOTSTRAP_N; missing (NaN) without a spread."""
    n = len(values)
    stderr = stderr_of_mean(values)
    if n < 2 or n > len(T975) or not stderr > 0:
        return (math.nan, math.nan)
    mean = sum(values) / n
    return (mean - T975[n - 2] * stderr, mean + T975[n - 2] * stderr)


def interval_of_mean(values: Sequence[float], seed: int = 0) -> tuple[float, float, str]:
    """The 95% interval of the mean of per-sample values and its method's name (module docstring)."""
    n = len(values)
    if all(v in (0.0, 1.0) for v in values):
        return (*wilson_interval(sum(values), n), "wilson")
    bounded = all(0.0 <= v <= 1.0 for v in values)
    spread = min(values) < max(values)
    if n >= MIN_BOOTSTRAP_N and (spread or not bounded):
        return (*bootstrap_interval(values, seed=seed), "bootstrap")
    if bounded:
        return (*wilson_interval(sum(values), n), "wilson-bounded")
    return (*student_t_interval(values), "t")


def summarize(name: str, values: Sequence[float], seed: int = 0) -> Metric:
    n = len(values)
    mean = sum(values) / n if n else math.nan
    lo, hi, method = interval_of_mean(values, seed)
    return Metric(
        name=name, value=mean, stderr=stderr_of_mean(values), ci_low=lo, ci_high=hi, n=n, ci_method=method
    )
