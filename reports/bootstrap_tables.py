"""harness.gating.paired.paired_bootstrap's percentile interval from its per-stratum difference tables,
the same numbers a few times faster.

paired_bootstrap draws each resample as binomial counts over a stratum's sorted distinct differences
(harness.gating.paired._resampled_sum with binomial_variate). Here the same draws are made from the same
`random.Random(seed)` stream in one loop, with the common cases of binomial_variate inlined (p >= 1, n = 1,
and the geometric method for n * min(p, 1 - p) < 10, including its p > 0.5 reflection) and every other
case (Hörmann's BTRS) handed to binomial_variate itself: the same random() calls in the
same order and the same float operations, so the same statistics, bit for bit (tests/unit/
test_bootstrap_tables.py compares them with paired_bootstrap). A site build computes ~1,000 of these
intervals of 2,000 resamples each; function calls were most of their cost.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from harness.gating.paired import binomial_variate, percentile_interval

# Per stratum, in order of first appearance: its sorted (difference, count) pairs.
StrataTables = Sequence[Sequence[tuple[float, int]]]


def table_interval(
    tables: StrataTables, resamples: int, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """(ci_low, ci_high) of paired_bootstrap(a, b, resamples, seed, level, strata) for pairs whose
    differences have these tables."""
    k = len(tables)
    prepared = []
    for table in tables:
        size = sum(count for _, count in table)
        # (value, count) of all but the last value: _resampled_sum's loop; the last takes what is left.
        prepared.append((tuple((v, c) for v, c in table[:-1]), table[-1][0], size))
    rng = random.Random(seed)
    draw = rng.random
    log, floor = math.log, math.floor
    logs: dict[float, float] = {}  # q -> log(1.0 - q): the same value binomial_variate computes
    stats = []
    for _ in range(resamples):
        mean: float = 0  # as sum() starts: the int 0
        for head, last, size in prepared:
            total, left, pool = 0.0, size, size
            ended = False
            for value, count in head:
                if left == 0:
                    ended = True
                    break
                p = count / pool
                if p >= 1.0:
                    drawn = left
                elif left == 1:
                    drawn = int(draw() < p)
                else:
                    # p > 0.5 is binomial_variate's n - binomial_variate(n, 1.0 - p)
                    flip = p > 0.5
                    q = 1.0 - p if flip else p
                    if left * q >= 10.0:
                        drawn = binomial_variate(rng, left, p)  # Hörmann's BTRS: binomial_variate itself
                    else:  # the geometric method, inlined
                        c = logs.get(q)
                        if c is None:
                            c = logs[q] = log(1.0 - q)
                        x = y = 0
                        if c:
                            while True:
                                y += floor(log(1.0 - draw()) / c) + 1
                                if y > left:
                                    break
                                x += 1
                        drawn = left - x if flip else x
                total += drawn * value
                left -= drawn
                pool -= count
            mean += (total if ended else total + left * last) / size
        stats.append(mean / k)
    return percentile_interval(stats, level)
