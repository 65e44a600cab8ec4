"""Per-metric uncertainty: standard error and a 95% interval.

Proportions (every per-sample value 0 or 1) get the Wilson score interval: unlike the bootstrap or the
normal approximation it does not collapse to [0, 0] at 0/20, so small `--limit` slices are reported
honestly. Other metrics get a seeded percentile bootstrap. The standard error is the sample standard
deviation over sqrt(n), as lm-eval reports it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from harness.types import Metric

Z95 = 1.959963984540054


def json_number(value: float | None) -> float | None:
    """A plain float for JSON records: None for a missing or NaN value (JSON has no NaN)."""
    return None if value is None or math.isnan(value) else float(value)


def stderr_of_mean(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return math.nan
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return math.sqrt(variance / n)


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


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


def summarize(name: str, values: Sequence[float], seed: int = 0) -> Metric:
    n = len(values)
    mean = sum(values) / n if n else math.nan
    binary = all(v in (0.0, 1.0) for v in values)
    lo, hi = wilson_interval(sum(values), n) if binary else bootstrap_interval(values, seed=seed)
    return Metric(
        name=name,
        value=mean,
        stderr=stderr_of_mean(values),
        ci_low=lo,
        ci_high=hi,
        n=n,
        ci_method="wilson" if binary else "bootstrap",
    )
