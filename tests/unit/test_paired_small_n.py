"""The paired delta's interval at small n (issue 18): Tango's score interval, Student-t and a bounded
fallback where the paired bootstrap would claim certainty, the bootstrap unchanged where it suits.
Hand computations in the comments use z = 1.959964, z^2 = 3.841459."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from harness.gating.paired import paired_bootstrap, paired_delta
from harness.gating.paired_intervals import (
    _tango_score,
    bootstrap_suits_pairs,
    t_interval,
    t_quantile,
    tango_interval,
    z_of,
)
from harness.gating.verdicts import gate_metric
from harness.stats import T975, wilson_interval, wilson_interval_of_rate
from tests.unit.test_gate import BASE, CAND, gate, write_run

Z2 = 3.841459
# No discordant pair among n: Tango's score is -n d / sqrt(n |d| (1 - |d|)) = -+z at d = +-z^2 / (n + z^2).
NONE_OF_FIVE = Z2 / (5 + Z2)  # 0.434482


def test_tango_reproduces_the_published_example() -> None:
    # Cavo et al. (2012), complete response before/after consolidation therapy, the worked example of
    # Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables" (2017), ch. 8: table
    # [[59, 6], [16, 80]], estimate (6 - 16) / 161 = -0.0621, Tango asymptotic score CI -0.1240 to -0.0054
    # (the same numbers in their R package contingencytables' tests).
    low, high = tango_interval(6, 16, 161)
    assert (round(low, 4), round(high, 4)) == (-0.1240, -0.0054)
    assert tango_interval(16, 6, 161) == pytest.approx((-high, -low))  # b - a and a - b mirror


def test_tango_small_cases_by_hand() -> None:
    # No discordant pair in 5: +-z^2 / (5 + z^2) = +-3.841459 / 8.841459 = +-0.434482.
    assert tango_interval(0, 0, 5) == pytest.approx((-NONE_OF_FIVE, NONE_OF_FIVE), abs=1e-6)
    # One improvement in 5 pairs, no regression.
    # Upper (d > 1/5): the constrained regression rate is 0, so the score is (1 - 5d) / sqrt(5 d (1 - d)):
    #   Wilson's equation, the upper Wilson bound of 1 of 5 = 0.330345 + 0.294124 = 0.624469.
    # Lower (d < 0): the regression rate is (1 - 9d) / 10, the variance 5 (0.2 - 0.8 d - d^2), and
    #   (1 - 5d)^2 = z^2 (1 - 4d - 5d^2)  ->  (25 + 5 z^2) d^2 + (4 z^2 - 10) d + (1 - z^2) = 0
    #   44.207295 d^2 + 5.365836 d - 2.841459 = 0  ->  d = (-5.365836 - 23.048762) / 88.414590 = -0.321378
    low, high = tango_interval(1, 0, 5)
    assert high == pytest.approx(0.624469, abs=1e-5) and high == pytest.approx(wilson_interval(1, 5)[1])
    assert low == pytest.approx(-0.321378, abs=1e-5)
    # The bounds are where the score statistic is +-z.
    assert _tango_score(1, 0, 5, low) == pytest.approx(z_of(0.95), abs=1e-6)
    assert _tango_score(1, 0, 5, high) == pytest.approx(-z_of(0.95), abs=1e-6)
    # All five improved: the upper bound is 1. Lower: the regression rate is (1 - d) / 2, the variance
    #   5 (1 - d^2), the score sqrt(5 (1 - d) / (1 + d)) = z at d = (5 - z^2) / (5 + z^2) = 0.131035.
    assert tango_interval(5, 0, 5) == pytest.approx(((5 - Z2) / (5 + Z2), 1.0), abs=1e-6)


def test_five_identical_runs_have_a_nonzero_interval_holding_zero() -> None:
    runs = [1.0, 0.0, 1.0, 1.0, 0.0]
    old = paired_bootstrap(runs, list(runs))
    assert (old.ci_low, old.ci_high) == (0.0, 0.0)  # the defect: certainty from 5 samples
    d = paired_delta(runs, list(runs))
    assert (d.delta, d.method, d.resamples) == (0.0, "tango", 0)
    assert (d.ci_low, d.ci_high) == pytest.approx((-NONE_OF_FIVE, NONE_OF_FIVE), abs=1e-6)
    # 300 identical runs: large, but no pair changed, so still Tango (+-1.26 points), not [0, 0].
    big = [float(i % 3 == 0) for i in range(300)]
    d300 = paired_delta(big, list(big))
    assert d300.method == "tango" and d300.ci_high == pytest.approx(Z2 / (300 + Z2), abs=1e-6)


def test_the_bootstrap_is_kept_where_it_suits_with_the_same_numbers() -> None:
    rng = random.Random(4)
    a = [float(rng.random() < 0.6) for _ in range(400)]
    b = [x if rng.random() < 0.85 else 1.0 - x for x in a]
    # paired_bootstrap is the pre-issue-18 interval, unchanged: same seed, same numbers.
    assert paired_delta(a, b) == paired_bootstrap(a, b)
    assert paired_delta(a, b).method == "bootstrap"
    r = gate_metric("gsm8k", "acc", a, b, allowed_drop=1.0, alpha=0.05)
    assert r.delta == paired_bootstrap(a, b)
    strata = ["x" if i % 2 else "y" for i in range(400)]
    assert paired_delta(a, b, strata=strata) == paired_bootstrap(a, b, strata=strata)
    graded = [0.25 * (i % 5) for i in range(40)]
    shifted = [min(1.0, g + 0.25 * (i % 3 == 0)) for i, g in enumerate(graded)]
    assert paired_delta(graded, shifted) == paired_bootstrap(graded, shifted)
    # The threshold: 30 pairs with 5 off the most common difference.
    assert bootstrap_suits_pairs([0.0] * 25 + [1.0] * 5) and not bootstrap_suits_pairs([0.0] * 26 + [1.0] * 4)
    assert not bootstrap_suits_pairs([0.0] * 24 + [1.0] * 5)  # 29 pairs


def test_graded_differences_use_student_t_at_small_n() -> None:
    # Differences d = [0.5, 0.25, 0, 0.125, -0.125, 0.375] (all distinct, so 5 off the commonest):
    #   mean 1.125 / 6 = 0.1875; sum of squared deviations 0.2734375, variance 0.0546875, sd 0.233854,
    #   stderr 0.233854 / sqrt(6) = 0.095470; t_{5, 0.975} = 2.570582: half 0.245414
    #   -> [-0.057914, 0.432914]
    a = [0.25, 0.5, 0.5, 0.25, 0.75, 0.125]
    b = [0.75, 0.75, 0.5, 0.375, 0.625, 0.5]
    d = paired_delta(a, b)
    assert d.method == "t" and d.delta == pytest.approx(0.1875)
    assert (d.ci_low, d.ci_high) == pytest.approx((-0.057914, 0.432914), abs=1e-5)
    # Clipped to the [-1, 1] range of a difference of [0, 1] scores: d = [1, 0.875, 0.75, 0.625, 0.5, -1],
    #   mean 0.458333, sd 0.735980, half 2.570582 * 0.735980 / sqrt(6) = 0.772364 -> [-0.314030, 1.230697]
    wide = paired_delta([0.0, 0.125, 0.25, 0.375, 0.5, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    assert wide.method == "t" and (wide.ci_low, wide.ci_high) == pytest.approx((-0.314030, 1.0), abs=1e-5)


def test_t_quantile_matches_the_table_and_other_levels() -> None:
    assert all(t_quantile(df, 0.95) == pytest.approx(T975[df - 1], abs=1e-6) for df in range(1, 30))
    assert t_quantile(5, 0.90) == pytest.approx(2.015048, abs=1e-6)  # t_{5, 0.95}
    assert t_quantile(1, 0.99) == pytest.approx(math.tan(math.pi * 0.99 / 2))  # Cauchy: tan(pi p / 2)
    diffs = [0.5, 0.25, 0.0, 0.125, -0.125, 0.375]
    low, high = t_interval(diffs, 0.90)
    assert (high - low) / 2 == pytest.approx(2.015048 * 0.095470, abs=1e-5)


def test_graded_differences_without_spread_get_the_bounded_interval() -> None:
    # Three-of-five-style graded scores that did not move: the same +-0.434482 as 0/1 scores (a difference
    # in [-1, 1] has d^2 <= |d|, so reading it as part of a discordant pair errs wide).
    d = paired_delta([0.5] * 5, [0.5] * 5)
    assert d.method == "tango-bounded"
    assert (d.ci_low, d.ci_high) == pytest.approx((-NONE_OF_FIVE, NONE_OF_FIVE), abs=1e-6)
    # Every pair up by 0.25 (20 pairs): 5 improvements' worth of mass in 20, not a certain [0.25, 0.25].
    shifted = paired_delta([0.5] * 20, [0.75] * 20)
    assert shifted.method == "tango-bounded" and shifted.delta == 0.25
    assert (shifted.ci_low, shifted.ci_high) == pytest.approx(tango_interval(5, 0, 20))
    assert shifted.ci_low < 0.25 < shifted.ci_high
    # No known range and no spread: no interval rather than a zero-width one.
    tokens = paired_delta([3.0, 4.0], [5.0, 6.0])
    assert tokens.method == "t" and math.isnan(tokens.ci_low) and math.isnan(tokens.ci_high)


def test_stratified_deltas_use_tango_at_the_effective_size() -> None:
    # One identical pair per stratum (the safety suite at --limit 3): n* = 1 / (3 / 9) = 3,
    #   +-z^2 / (3 + z^2) = +-3.841459 / 6.841459 = +-0.561497 (the bootstrap gave [0, 0]).
    d = paired_delta([1.0, 0.0, 1.0], [1.0, 0.0, 1.0], strata=["hb", "xs_safe", "xs_unsafe"])
    assert d.method == "stratified-tango"
    assert (d.ci_low, d.ci_high) == pytest.approx((-0.561497, 0.561497), abs=1e-6)
    # Strata [0 -> 0, 0 -> 1], [1 -> 1], [0 -> 0]: delta = (1/2 + 0 + 0) / 3 = 1/6; n* = 1 / ((1/9)(1/2 + 1 +
    # 1)) = 3.6, improvement rate 1/6 (3.6 / 6 = 0.6 improvements), no regression, so the upper bound is
    # Wilson's at rate 1/6 and size 3.6 (no regression: Tango's upper equation is Wilson's).
    s = paired_delta([0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0], strata=["x", "x", "y", "z"])
    assert s.delta == pytest.approx(1 / 6) and s.method == "stratified-tango"
    assert s.ci_high == pytest.approx(wilson_interval_of_rate(1 / 6, 3.6)[1], abs=1e-9)
    assert s.ci_low == pytest.approx(tango_interval(0.6, 0.0, 3.6)[0]) and s.ci_low < 0.0


def test_a_tiny_gate_prints_a_nonzero_interval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "gate.yaml"
    policy.write_text("min_samples: 2\n")
    scores = [1.0, 0.0, 1.0, 1.0, 0.0]
    write_run(tmp_path, BASE, scores)
    write_run(tmp_path, CAND, list(scores))
    args = ("--baseline", BASE, "--candidate", CAND, "--runs", str(tmp_path), "--policy", str(policy))
    code, out, _ = gate(*args, capsys=capsys)
    assert code == 11  # the verdict is unchanged: the exact bound keeps 5 identical pairs from a PASS
    flex_row = next(line for line in out.splitlines() if "exact_match_flex" in line)
    assert "+0.0 [-43.4, +43.4]" in flex_row  # was "+0.0 [+0.0, +0.0]"
    assert (
        "CI by paired bootstrap except (too few pairs or changes for it): gsm8k/exact_match_flex tango" in out
    )
    code, out, _ = gate(*args, "--json", capsys=capsys)
    flex = json.loads(out)["suites"][0]["metrics"][0]
    assert flex["ci_method"] == "tango"
    assert flex["ci"] == pytest.approx([-NONE_OF_FIVE, NONE_OF_FIVE], abs=1e-6)
    assert flex["pass_bound"] < flex["ci"][0]  # the verdict's exact bound, lower still
    markdown = tmp_path / "gate.md"
    gate(*args, "--markdown", str(markdown), capsys=capsys)
    text = markdown.read_text()
    assert "+0.0 [-43.4, +43.4]" in text and "small-n interval instead: gsm8k/exact_match_flex tango" in text
