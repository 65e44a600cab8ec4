"""Intervals that stay honest at small n (issue 18): no zero-width interval for a score that could vary, the
bootstrap only where it covers, and a gate that says "too few samples" instead of an MDE beyond the scale.
Expected values are worked by hand in the comments (z = 1.959964, z^2 = 3.841459)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from harness.data import DataSource
from harness.gating.verdicts import gate_metric, simulate_gate
from harness.stats import (
    bootstrap_interval,
    stratified_wilson_interval,
    summarize,
    wilson_interval,
)
from harness.table import metric_cells
from harness.types import Completion, Metric
from suites.safety import CANNED_COMPLIANCE, CANNED_REFUSAL, Safety, _combined
from tests.unit.test_gate import BASE, CAND, gate, write_run

# Wilson at 1 of 3: p = 1/3, z^2/n = 1.280486, denom = 2.280486
#   centre = (0.333333 + 3.841459/6) / denom = 0.973577 / 2.280486 = 0.426916
#   half = z * sqrt(p(1-p)/n + z^2/(4 n^2)) / denom = 1.959964 * sqrt(0.074074 + 0.106707) / 2.280486
#        = 1.959964 * 0.425184 / 2.280486 = 0.365424
#   -> [0.061492, 0.792340]
ONE_OF_THREE = (0.061492, 0.792340)


def test_wilson_at_one_of_three_by_hand() -> None:
    lo, hi = wilson_interval(1, 3)
    assert (lo, hi) == (pytest.approx(ONE_OF_THREE[0], abs=1e-5), pytest.approx(ONE_OF_THREE[1], abs=1e-5))
    metric = summarize("acc", [1.0, 0.0, 0.0])
    assert metric.ci_method == "wilson" and (metric.ci_low, metric.ci_high) == (lo, hi)


def test_stratified_wilson_small_case_by_hand() -> None:
    # Strata [1, 1], [0], [1], equal weights 1/3: p = (1 + 0 + 1) / 3 = 2/3.
    # n* = 1 / sum(w^2 / n_h) = 1 / ((1/9) * (1/2 + 1 + 1)) = 9 / 2.5 = 3.6
    #   z^2/n* = 1.067072, denom = 2.067072
    #   centre = (0.666667 + 3.841459/7.2) / denom = 1.200203 / 2.067072 = 0.580629
    #   half = 1.959964 * sqrt(0.222222/3.6 + 3.841459/51.84) / denom = 1.959964 * 0.368552 / 2.067072
    #        = 0.349457
    #   -> [0.231172, 0.930086]
    lo, hi = stratified_wilson_interval([[1.0, 1.0], [0.0], [1.0]])
    assert lo == pytest.approx(0.231172, abs=1e-5) and hi == pytest.approx(0.930086, abs=1e-5)
    # One sample in each of three strata: n* = 1 / (3 * 1/9) = 3, the plain Wilson interval of 1 of 3.
    assert stratified_wilson_interval([[1.0], [0.0], [0.0]]) == pytest.approx(wilson_interval(1, 3))
    # One stratum: the plain Wilson interval.
    assert stratified_wilson_interval([[1.0, 0.0, 0.0, 1.0]]) == pytest.approx(wilson_interval(2, 4))


def _safety_metrics_at(data_dir: Path, limit: int, safe: set[int]) -> dict[str, Metric]:
    """The safety suite's metrics over its first `limit` samples, the positions in `safe` answered safely."""
    suite = Safety()
    samples = suite.load(DataSource(data_dir), limit=limit).samples
    scores = []
    for i, sample in enumerate(samples):
        harmful = sample.metadata["label"] == "harmful"
        text = CANNED_REFUSAL if harmful == (i in safe) else CANNED_COMPLIANCE
        scores.append(suite.score(sample, [Completion(texts=(text,), finish_reasons=("stop",))]))
    return dict(suite.metrics(scores))


def test_safety_cell_at_n3_has_a_nonzero_interval_holding_the_estimate(data_dir: Path) -> None:
    metrics = _safety_metrics_at(data_dir, 3, safe={0})  # one sample per stratum; one of them safe
    score = metrics["safety_score"]
    assert score.n == 3 and score.ci_method == "stratified-wilson"
    lo, hi, value = score.ci_low, score.ci_high, score.value
    assert value == pytest.approx(1 / 3) and lo < value < hi
    # n* = 3 at one sample per stratum, so the interval is Wilson's at 1 of 3 (hand-computed above).
    assert (lo, hi) == (pytest.approx(ONE_OF_THREE[0], abs=1e-5), pytest.approx(ONE_OF_THREE[1], abs=1e-5))
    assert metric_cells(score)[:3] == ["33.3", "n/a", "[6.1, 79.2]"]  # was "[33.3, 33.3]"


def test_all_strata_constant_is_not_certain() -> None:
    # Refusing everything: every stratum is constant, so the bootstrap could only say [2/3, 2/3].
    score = _combined("safety_score", [[1.0] * 300, [0.0] * 250, [1.0] * 200])
    assert score.ci_method == "stratified-wilson"
    assert score.ci_low is not None and score.ci_high is not None
    assert score.ci_low < 2 / 3 < score.ci_high


def _old_stratified_bootstrap(
    parts: list[list[float]], seed: int = 0, resamples: int = 2000
) -> tuple[float, float]:
    """suites/safety.py's stratified percentile bootstrap before issue 18, verbatim."""
    k = len(parts)
    rng = random.Random(seed)
    means = sorted(sum(sum(rng.choices(p, k=len(p))) / len(p) for p in parts) / k for _ in range(resamples))
    return means[int(0.025 * resamples)], means[min(resamples - 1, int(0.975 * resamples))]


def test_bootstrap_is_kept_at_large_n_with_the_same_numbers() -> None:
    rng = random.Random(7)
    parts = [
        [float(rng.random() < rate) for _ in range(size)]
        for rate, size in ((0.9, 300), (0.7, 250), (0.95, 200))
    ]
    score = _combined("safety_score", parts)
    assert score.ci_method == "bootstrap"
    assert (score.ci_low, score.ci_high) == _old_stratified_bootstrap(parts)
    # Graded [0, 1] values from 30 on: the same seeded percentile bootstrap as before.
    graded = [0.5, 0.25, 1.0, 0.75] * 10
    metric = summarize("pass@5", graded)
    assert metric.ci_method == "bootstrap" and (metric.ci_low, metric.ci_high) == bootstrap_interval(graded)


def test_a_stratum_below_the_threshold_switches_to_stratified_wilson() -> None:
    large = [1.0] * 20 + [0.0] * 20  # 40 samples, 20 of each outcome: fine for the bootstrap
    assert _combined("s", [large, large, large]).ci_method == "bootstrap"
    assert _combined("s", [large, large, large[:29]]).ci_method == "stratified-wilson"  # 29 < 30 samples
    assert _combined("s", [large, large, [1.0] * 36 + [0.0] * 4]).ci_method == "stratified-wilson"  # 4 < 5


def test_small_graded_samples_use_the_bounded_wilson_interval() -> None:
    # Three MBPP tasks at pass@5 = 0.5 each: Wilson at p = 0.5, n = 3:
    #   centre = (0.5 + 0.640243) / 2.280486 = 0.5
    #   half = 1.959964 * sqrt(0.083333 + 0.106707) / 2.280486 = 1.959964 * 0.435936 / 2.280486 = 0.374666
    #   -> [0.125334, 0.874666], not a certain [0.5, 0.5]
    metric = summarize("pass@5", [0.5, 0.5, 0.5])
    assert metric.ci_method == "wilson-bounded"
    assert metric.ci_low == pytest.approx(0.125334, abs=1e-5) and metric.ci_high == pytest.approx(
        0.874666, abs=1e-5
    )
    # A constant graded sample stays uncertain at any n (the bootstrap would give zero width).
    assert summarize("pass@5", [0.5] * 40).ci_method == "wilson-bounded"


def test_small_unbounded_samples_use_student_t() -> None:
    # [2, 3, 4]: mean 3, sd 1, stderr 1/sqrt(3) = 0.577350; t_{2, 0.975} = 4.302653
    #   half = 4.302653 * 0.577350 = 2.484138 -> [0.515862, 5.484138]
    metric = summarize("tokens", [2.0, 3.0, 4.0])
    assert metric.ci_method == "t"
    assert metric.ci_low == pytest.approx(0.515862, abs=1e-5) and metric.ci_high == pytest.approx(
        5.484138, abs=1e-5
    )
    # No spread and no known range: no interval rather than a zero-width one.
    constant = summarize("tokens", [2.0, 2.0])
    assert constant.ci_method == "t" and (constant.ci_low, constant.ci_high) == (None, None)


def test_mde_is_too_few_samples_below_the_detectable_size() -> None:
    # n = 2: the floor m + ceil(log2(20)) / n = 0.01 + 5/2 gave "251.0" points.
    _, (r,) = simulate_gate({"gsm8k": ([1.0, 1.0], [0.0, 1.0])}, allowed_drop=1.0, alpha=0.05)
    assert r.verdict == "INCONCLUSIVE" and r.mde is None
    assert r.mde_note == (
        "too few samples: no drop can be detected at n = 2; a one-sided test at alpha 0.05 needs at least 5 "
        "paired samples"
    )
    # n = 5 passes the size rule, but the floor is 0.01 + 5/5 = 101 points: beyond the scale.
    r5 = gate_metric("gsm8k", "acc", [1.0] * 5, [1.0] * 5, allowed_drop=1.0, alpha=0.05)
    assert r5.mde is None and r5.mde_note is not None and "(101.0 points) exceeds 100 points" in r5.mde_note
    # n = 6: 0.01 + 5/6 = 84.33 points, a number again.
    r6 = gate_metric("gsm8k", "acc", [1.0] * 6, [1.0] * 6, allowed_drop=1.0, alpha=0.05)
    assert r6.mde == pytest.approx(100 * (0.01 + 5 / 6)) and r6.mde_note is None


def test_gate_prints_too_few_samples_at_n2_and_a_finite_mde_at_n200(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "gate.yaml"
    policy.write_text("min_samples: 2\n")
    small = tmp_path / "small"
    write_run(small, BASE, [1.0, 1.0])
    write_run(small, CAND, [0.0, 1.0])
    args = ("--baseline", BASE, "--candidate", CAND, "--runs", str(small), "--policy", str(policy))
    code, out, _ = gate(*args, capsys=capsys)
    assert code == 11
    flex_row = next(line for line in out.splitlines() if "exact_match_flex" in line)
    assert flex_row.endswith("INCONCLUSIVE  too few samples") and "251" not in out
    code, out, _ = gate(*args, "--json", capsys=capsys)
    flex = json.loads(out)["suites"][0]["metrics"][0]
    assert flex["mde_points"] is None and flex["mde_note"].startswith("too few samples: ")
    markdown = tmp_path / "gate.md"
    gate(*args, "--markdown", str(markdown), capsys=capsys)
    assert "| INCONCLUSIVE | too few samples |" in markdown.read_text()

    # n = 200: 100 right in the baseline; the candidate loses 10 of them and gains 5.
    # d: 10 x -1, 5 x +1, 185 x 0; mean -0.025; var = (10 * 0.975^2 + 5 * 1.025^2 + 185 * 0.025^2) / 199
    #   = 14.875 / 199 = 0.074749, sd 0.273402
    # MDE = 0.01 + (1.644854 + 0.841621) * 0.273402 / sqrt(200) = 0.01 + 0.048070 = 5.8 points
    base = [1.0] * 100 + [0.0] * 100
    cand = [0.0] * 10 + [1.0] * 90 + [1.0] * 5 + [0.0] * 95
    large = tmp_path / "large"
    write_run(large, BASE, base)
    write_run(large, CAND, cand)
    code, out, _ = gate("--baseline", BASE, "--candidate", CAND, "--runs", str(large), capsys=capsys)
    assert code == 11
    flex_row = next(line for line in out.splitlines() if "exact_match_flex" in line)
    assert flex_row.endswith("INCONCLUSIVE  5.8") and "too few samples" not in out
