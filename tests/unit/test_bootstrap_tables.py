"""reports.bootstrap_tables.table_interval gives paired_bootstrap's own interval, bit for bit, from the
pairs' difference tables (the site's stage-deltas figure computes ~1,000 of them per build)."""

from __future__ import annotations

import random

import pytest

from harness.gating.paired import paired_bootstrap
from reports.bootstrap_tables import table_interval
from reports.paired_cache import _tables


def _cases() -> list[tuple[list[float], list[float], list[str] | None, int]]:
    rng = random.Random(11)
    cases: list[tuple[list[float], list[float], list[str] | None, int]] = []
    for n in (1, 2, 3, 20, 20, 45, 120):  # 120: binomial_variate's BTRS path (n * p >= 10)
        a = [float(rng.random() < 0.5) for _ in range(n)]
        b = [float(rng.random() < 0.6) for _ in range(n)]
        cases.append((a, b, None, 300))
        cases.append((a, b, [rng.choice("xyz") for _ in range(n)], 300))
        cases.append(([round(rng.random(), 1) for _ in range(n)], b, None, 200))  # many distinct values
    cases.append(([1.0] * 8, [1.0] * 8, None, 50))  # zero variance: a single difference
    cases.append(([0.0] * 10 + [1.0] * 10, [1.0] * 20, None, 2000))  # p = 0.5 at n = 20
    # Mostly ties: the first distinct difference's p is above 0.5 (binomial_variate's n - Binomial(n, 1 - p)),
    # at n * (1 - p) below 10 and, at n = 200, above it (BTRS after the reflection).
    for n in (5, 20, 200):
        a = [float(i % 7 == 0) for i in range(n)]
        b = [1.0 - a[i] if i % 9 == 0 else a[i] for i in range(n)]
        ties = [-x for x in a]  # differences b - a: 0 for most pairs, -1 listed first by sorting
        cases.append((a, b, None, 500))
        cases.append((ties, [0.0] * n, [("x", "y")[i % 2] for i in range(n)], 500))
    return cases


@pytest.mark.parametrize("case", _cases())
def test_the_interval_is_paired_bootstraps_own(
    case: tuple[list[float], list[float], list[str] | None, int],
) -> None:
    a, b, strata, resamples = case
    expected = paired_bootstrap(a, b, resamples=resamples, strata=strata)
    tables, _ = _tables(a, b, strata, resamples)
    assert table_interval(tables, resamples) == (expected.ci_low, expected.ci_high)
