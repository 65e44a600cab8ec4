"""harness.gating.paired against hand computations, scipy (when installed) and brute-force index resampling."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from harness.gating.paired import (
    binomial_variate,
    holm,
    mcnemar_exact,
    pair_by_id,
    paired_bootstrap,
    sign_flip_test,
)


def _pairs(b01: int, b10: int, same_right: int = 3, same_wrong: int = 2) -> tuple[list[float], list[float]]:
    a = [0.0] * b01 + [1.0] * b10 + [1.0] * same_right + [0.0] * same_wrong
    b = [1.0] * b01 + [0.0] * b10 + [1.0] * same_right + [0.0] * same_wrong
    return a, b


@pytest.mark.parametrize(
    ("b01", "b10", "expected"),
    [
        (1, 5, 14 / 64),  # 2 * (C(6,0) + C(6,1)) / 2^6
        (5, 1, 14 / 64),  # symmetric
        (0, 10, 2 / 1024),
        (3, 3, 1.0),  # 2 * 42/64 > 1: capped
        (0, 0, 1.0),  # no discordant pairs
        (2, 7, 2 * (1 + 9 + 36) / 512),
    ],
)
def test_mcnemar_matches_hand_computed_binomial_tails(b01: int, b10: int, expected: float) -> None:
    a, b = _pairs(b01, b10)
    result = mcnemar_exact(a, b)
    assert (result.b01, result.b10, result.n, result.discordant) == (b01, b10, len(a), b01 + b10)
    assert result.p_value == pytest.approx(expected, rel=1e-12)


def test_mcnemar_matches_scipy_binomtest() -> None:
    stats = pytest.importorskip("scipy.stats")
    for b01, b10 in [(0, 1), (4, 9), (13, 13), (40, 61), (131, 141), (700, 619), (5, 0)]:
        a, b = _pairs(b01, b10)
        expected = stats.binomtest(b01, b01 + b10, 0.5).pvalue
        assert mcnemar_exact(a, b).p_value == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_mcnemar_rejects_scores_that_are_not_binary() -> None:
    with pytest.raises(ValueError, match="0/1"):
        mcnemar_exact([0.5, 1.0], [1.0, 1.0])


def test_holm_adjusts_step_down_and_keeps_monotone_order() -> None:
    # sorted: a .01*3 = .03; c .03*2 = .06; b .04*1 = .04 -> raised to .06 (monotone)
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})
    assert list(holm({"z": 0.5, "y": 0.001})) == ["z", "y"]  # the input's order
    assert holm({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}  # capped at 1
    assert holm({"only": 0.02}) == {"only": 0.02}
    assert holm({}) == {}


def test_pair_by_id_keeps_common_ids_in_first_order() -> None:
    ids, a, b = pair_by_id({"s3": 1.0, "s1": 0.0, "s2": 1.0}, {"s1": 1.0, "s3": 1.0, "s9": 0.0})
    assert ids == ["s3", "s1"]
    assert (a, b) == ([1.0, 0.0], [1.0, 1.0])


def test_paired_bootstrap_hand_example() -> None:
    a, b = [0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0]
    d = paired_bootstrap(a, b, resamples=4000, seed=3)
    assert (d.mean_a, d.mean_b, d.delta, d.n) == (0.25, 0.75, 0.5, 4)
    # differences [1, 1, 0, 0]: sd = sqrt(1/3), stderr = sd / 2
    assert d.stderr == pytest.approx(math.sqrt(1 / 3) / 2)
    # resampled means lie on the grid {0, .25, .5, .75, 1}; 95% of them within [0, 1], not all equal
    assert {d.ci_low, d.ci_high} <= {0.0, 0.25, 0.5, 0.75, 1.0}
    assert d.ci_low < 0.5 < d.ci_high
    assert paired_bootstrap(a, b, resamples=4000, seed=3) == d  # seeded: deterministic


def test_identical_runs_give_zero_delta_zero_interval_and_p_one() -> None:
    rng = random.Random(5)
    a = [float(rng.random() < 0.6) for _ in range(300)]
    d = paired_bootstrap(a, list(a))
    assert (d.delta, d.ci_low, d.ci_high, d.stderr) == (0.0, 0.0, 0.0, 0.0)
    assert mcnemar_exact(a, a).p_value == 1.0
    assert sign_flip_test(a, a) == 1.0


def test_bootstrap_interval_matches_brute_force_index_resampling() -> None:
    """The multinomial shortcut has the distribution of resampling indices: same interval within MC error."""
    rng = random.Random(11)
    a = [float(rng.random() < 0.5) for _ in range(400)]
    b = [x if rng.random() < 0.75 else 1.0 - x for x in a]
    fast = paired_bootstrap(a, b, resamples=20000, seed=1)
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    brute = sorted(sum(rng.choices(diffs, k=len(diffs))) / len(diffs) for _ in range(20000))
    assert fast.ci_low == pytest.approx(brute[500], abs=0.006)
    assert fast.ci_high == pytest.approx(brute[19500], abs=0.006)
    # and the normal approximation agrees roughly: half-width ~ 1.96 stderr
    assert (fast.ci_high - fast.ci_low) / 2 == pytest.approx(1.96 * fast.stderr, rel=0.08)


def test_non_binary_scores_bootstrap_and_sign_flip() -> None:
    a = [0.1 * i for i in range(20)]
    shifted = [x + 0.25 for x in a]
    d = paired_bootstrap(a, shifted, resamples=2000)
    assert d.delta == pytest.approx(0.25)
    assert [d.ci_low, d.ci_high] == pytest.approx([0.25, 0.25])
    # every difference +0.25: only the two all-same-sign flips are as extreme (probability 2 / 2^20)
    assert sign_flip_test(a, shifted, resamples=2000) == pytest.approx(1 / 2001, abs=2 / 2001)
    noise = [x + (0.05 if i % 2 else -0.05) for i, x in enumerate(a)]
    assert sign_flip_test(a, noise, resamples=2000) == 1.0  # sum of differences is 0: every flip as extreme


def test_stratified_bootstrap_is_the_mean_of_stratum_means() -> None:
    a = [1.0, 1.0, 1.0, 1.0, 0.0]
    b = [1.0, 1.0, 1.0, 1.0, 1.0]
    pooled = paired_bootstrap(a, b, resamples=500)
    assert pooled.delta == pytest.approx(0.2)
    stratified = paired_bootstrap(a, b, resamples=500, strata=["x", "x", "x", "x", "y"])
    assert (stratified.mean_a, stratified.mean_b, stratified.delta) == (0.5, 1.0, 0.5)
    # within-stratum resampling: stratum y always holds its single pair, x has no change
    assert (stratified.ci_low, stratified.ci_high) == (0.5, 0.5)


def test_input_errors_are_explicit() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        paired_bootstrap([1.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="no pairs"):
        paired_bootstrap([], [])
    with pytest.raises(ValueError, match="one stratum per pair"):
        paired_bootstrap([1.0, 0.0], [1.0, 1.0], strata=["x"])


@pytest.mark.parametrize(("n", "p"), [(1, 0.3), (7, 0.2), (60, 0.1), (300, 0.5), (1319, 0.93), (2000, 0.01)])
def test_binomial_variate_has_binomial_moments(n: int, p: float) -> None:
    rng = random.Random(7)
    draws = [binomial_variate(rng, n, p) for _ in range(20000)]
    assert all(0 <= x <= n for x in draws)
    sd = math.sqrt(n * p * (1 - p))
    assert statistics.fmean(draws) == pytest.approx(n * p, abs=4 * sd / math.sqrt(20000) + 1e-9)
    assert statistics.pvariance(draws) == pytest.approx(n * p * (1 - p), rel=0.06)
    assert binomial_variate(rng, n, 0.0) == 0 and binomial_variate(rng, n, 1.0) == n
