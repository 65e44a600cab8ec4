"""Simulations with known truth through the gate's statistical core (harness.gating.simulate_gate: the same
gate_metric -> Holm -> verdict path as the CLI), with few bootstrap resamples since only the test decides FAIL.

The data model: each pair is a regression (baseline right, candidate wrong) with probability p10, an
improvement with p01, else concordant (both right with probability 0.6). True delta = p01 - p10;
discordance p10 + p01. Consecutive training stages typically change 5-20% of verdicts; 11% is the
reference for the power check, and the test also reports the levels where more samples are needed.
Monte-Carlo error of a rate over 1,000 gates: 3 standard errors of 0.05 = 0.021.
"""

from __future__ import annotations

import math
import random

import pytest

from harness.gating.verdicts import MarginTest, simulate_gate

GATES = 1000
ALPHA = 0.05
ALLOWED_DROP = 1.0  # the shipped default (points)
MC_BOUND = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / GATES)


def draw(rng: random.Random, n: int, p10: float, p01: float) -> tuple[list[float], list[float]]:
    a, b = [], []
    for _ in range(n):
        u = rng.random()
        if u < p10:
            x, y = 1.0, 0.0
        elif u < p10 + p01:
            x, y = 0.0, 1.0
        else:
            x = y = float(rng.random() < 0.6)
        a.append(x)
        b.append(y)
    return a, b


def verdict_rates(
    n: int,
    p10: float,
    p01: float,
    *,
    suites: int = 1,
    gates: int = GATES,
    seed: int = 1,
    margin_test: MarginTest = "plugin",
) -> dict[str, float]:
    rng = random.Random(seed)
    counts = {"PASS": 0, "FAIL": 0, "INCONCLUSIVE": 0}
    for i in range(gates):
        data = {f"s{k}": draw(rng, n, p10, p01) for k in range(suites)}
        verdict, _ = simulate_gate(data, ALLOWED_DROP, ALPHA, resamples=100, seed=i, margin_test=margin_test)
        counts[verdict] += 1
    return {k: v / gates for k, v in counts.items()}


def test_identical_candidate_never_fails_and_passes() -> None:
    rng = random.Random(0)
    for _ in range(20):
        a, _ = draw(rng, 500, 0.0, 0.0)
        assert simulate_gate({"s": (a, list(a))}, ALLOWED_DROP, ALPHA, resamples=100)[0] == "PASS"


def test_false_fail_rate_under_the_null_is_at_most_alpha() -> None:
    """No change in quality (10% of verdicts flip both ways), 500 samples: FAIL in <= alpha of 1,000 gates."""
    rates = verdict_rates(500, 0.05, 0.05)
    assert rates["FAIL"] <= MC_BOUND, rates


@pytest.mark.parametrize(
    ("n", "discordance"),
    [(500, 0.10), (100, 0.04), (2000, 0.20)],
)
def test_false_fail_rate_at_the_boundary_is_at_most_alpha(n: int, discordance: float) -> None:
    """The hardest null: the candidate is worse by exactly the allowed drop (1 point)."""
    m = ALLOWED_DROP / 100
    rates = verdict_rates(n, (discordance + m) / 2, (discordance - m) / 2, gates=GATES if n <= 500 else 300)
    assert rates["FAIL"] <= MC_BOUND, rates


def test_holm_keeps_a_three_suite_gate_within_alpha() -> None:
    rates = verdict_rates(300, 0.055, 0.045, suites=3, gates=400)
    assert rates["FAIL"] <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / 400), rates


def test_power_for_a_true_five_point_drop_on_500_samples() -> None:
    """5-point drop (8% regressions, 3% improvements): FAIL in >= 80% of 1,000 gates."""
    rates = verdict_rates(500, 0.08, 0.03)
    assert rates["FAIL"] >= 0.80, rates


def test_berger_boos_is_valid_and_conservative() -> None:
    boundary = verdict_rates(500, 0.055, 0.045, gates=500, margin_test="berger-boos")
    assert boundary["FAIL"] <= ALPHA, boundary
    power = verdict_rates(500, 0.08, 0.03, gates=500, margin_test="berger-boos")
    assert 0.6 <= power["FAIL"] < 0.8, power  # the price of validity at every discordance


def test_one_point_drop_on_50_samples_is_inconclusive() -> None:
    rates = verdict_rates(50, 0.055, 0.045, gates=500)
    assert rates["INCONCLUSIVE"] >= 0.8 and rates["FAIL"] <= MC_BOUND, rates


def test_five_point_drop_on_1000_samples_fails() -> None:
    rates = verdict_rates(1000, 0.08, 0.03, gates=200)
    assert rates["FAIL"] >= 0.95, rates
