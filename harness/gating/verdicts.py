"""The regression gate's statistics and verdicts (which runs are paired: collect.py; outputs: report.py).

Per suite and metric, on the samples both runs scored (paired by sample id), with d_i = candidate_i -
baseline_i, delta = mean(d) and m = the policy's allowed drop (a fraction):

- Interval (reported): harness.gating.paired.paired_delta: the paired bootstrap percentile interval of delta
  (the safety score resamples within its strata, as compare.py defines it) from 30 pairs with 5 off the
  most common difference, else a small-n interval that never has zero width (Tango's score interval for
  0/1 scores, Student-t or a bounded Tango interval for graded ones; harness.gating.paired_intervals).
  PASS is judged on `pass_bound`: the bootstrap's lower bound as before, and for two different models at
  most the exact bound below (0/1 scores) or this small-n interval's lower bound (graded scores), which is
  what keeps sparse discordance from passing.
- Test of H0 "delta >= -m" (the drop is at most the allowed one) against H1 "delta < -m", one-sided:
  * 0/1 scores, m = 0: exact McNemar. Given the n_d discordant pairs, the regressions b10 ~ Bin(n_d, 1/2)
    under H0; p = P[X >= b10]. Exact.
  * 0/1 scores, m > 0: at the boundary p10 - p01 = m the regressions among the discordant pairs follow
    Bin(n_d, pi) with pi = 1/2 + m / (2 p_d), p_d = P(discordant). Conditioning cannot remove p_d:
    - default ("plugin", test "mcnemar-margin"): p_d estimated by n_d / n, then the exact binomial tail.
      Approximate; its false-FAIL rate at the boundary stayed below alpha in simulation over discordance
      4-20% and n 100-2,000 (tests/unit/test_gate_sim.py) with 84% power for a 5-point drop on 500
      samples at 11% discordance (m = 1 point).
    - "berger-boos" (policy `margin_test`): Berger & Boos (1994): sup of the exact tail over a one-sided
      (1 - gamma) Clopper-Pearson set for p_d (pi is largest at its lower bound L), plus gamma = 0.001:
      p = P[Bin(n_d, 1/2 + m/(2L)) >= b10] + gamma. Valid at every p_d, hence conservative: about 2% false
      FAILs at alpha 0.05 and 72% power in the same 5-point case.
  * other scores (inst-level accuracies, pass@1 with n > 1): a one-sided sign-flip randomization test of
    d_i + m (exact when the shifted differences are symmetric about 0 under H0; approximate otherwise).
  * the safety score (stratified): the test is on the pooled safe-outcome rate (compare.py's McNemar),
    the interval on the stratified score.
- Holm across the gating (suite, metric) tests of one gate; each adjusted p is compared with its suite's
  alpha.
- Verdict: FAIL when p_holm < alpha (a drop beyond the allowed one is significant); else PASS when the
  bootstrap interval's lower bound >= -m (the drop is confidently within the allowed one; for 0/1 scores the
  exact bound L(p01) - U(p10) must be >= -m as well, so 20 identical all-zero pairs are not a PASS: with no
  discordant pair among n the regression rate may still be up to 1 - beta^(1/n), beta = (1 - ci_level)/4:
  20% at n = 20; identical results of two different models PASS a 1-point margin from n = 437; a run of
  the same model and decoding against itself is judged on the interval alone); else INCONCLUSIVE, with
  the minimum detectable effect (a drop the test would catch with 80% power at this n):
      MDE = m + (z_{1-alpha} + z_{0.80}) * s_d / sqrt(n),  s_d = sd of the paired differences
  (0/1 scores: s_d^2 = p_d - delta^2 from the observed discordance), and for 0/1 scores never below
  m + ceil(log2(1/alpha)) / n (the fewest all-regression discordant pairs the exact test can call).
  No MDE ("too few samples") when n < ceil(log2(1/alpha)) or the MDE exceeds 100 points. Below that n no
  outcome can FAIL: every test above gives p >= 2^-n even when all n pairs regress (McNemar: 1/2 per
  discordant pair, the margin tests larger; the sign-flip test: the all-negative pattern is one of 2^n),
  so 5 pairs at alpha 0.05. A drop beyond 100 points is beyond the scale of a score in [0, 1]: at n = 2
  the formula gives 251 points, which reads as a number when it means "no drop is detectable".
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal

from harness.gating.paired import (
    PairedDelta,
    binomial_variate,
    holm,
    is_binary,
    paired_bootstrap,
    paired_delta,
)

Verdict = Literal["PASS", "FAIL", "INCONCLUSIVE"]
MarginTest = Literal["plugin", "berger-boos"]
GAMMA = 0.001  # Berger-Boos: the part of alpha spent on the nuisance parameter's confidence set
POWER = 0.80
MAX_MDE = 1.0  # a fraction: no drop of a [0, 1] score exceeds 100 points
TOO_FEW_SAMPLES = "too few samples"


class GateExit(IntEnum):
    """`harness gate` exit codes (0-5 and 130 are the harness's own, see harness/errors.py)."""

    PASS = 0
    FAIL = 10  # a gating metric dropped significantly beyond its allowed drop
    INCONCLUSIVE = 11  # no FAIL, but some gating metric cannot be shown to be within its allowed drop
    # 2: refused (settings, suite versions or data differ, too few paired samples, bad flags or policy)
    # 4: a run is missing (and --eval-missing was not given), or run files are unreadable


@dataclass(frozen=True)
class MetricGate:
    suite: str
    metric: str
    role: Literal["gate", "report"]
    n: int
    delta: PairedDelta
    test: str  # mcnemar-exact | mcnemar-margin | berger-boos | sign-flip
    p_value: float  # one-sided, H0: delta >= -allowed_drop
    p_holm: float  # Holm-adjusted over the gating tests (report-only metrics: = p_value)
    allowed_drop: float  # points
    alpha: float
    mde: float | None  # points: the drop detectable with 80% power at this n; None: too few samples
    pass_bound: float  # the lower bound PASS is judged on: the paired bootstrap's, and for two models at
    # most exact_lower_bound (0/1 scores) or the small-n interval's (graded scores): the percentile
    # bootstrap collapses to [0, 0] when no pair is discordant
    regressions: int  # pairs baseline > candidate
    improvements: int
    verdict: Verdict | None = None  # gating metrics only
    mde_note: str | None = None  # why mde is None (starts with TOO_FEW_SAMPLES)


@dataclass(frozen=True)
class SuiteResult:
    """One suite's gate: the two runs compared, how many samples paired, and each metric's verdict."""

    suite: str
    baseline_run: Path
    candidate_run: Path
    n_paired: int
    only_baseline: int
    only_candidate: int
    settings_differences: dict[str, tuple[Any, Any]]
    metrics: list[MetricGate]
    notes: list[str]


def binom_sf(k: int, n: int, p: float) -> float:
    """P[X >= k] for X ~ Bin(n, p): the smaller tail, summed outward from its largest term by the
    ratio recurrence until the terms vanish (exact integers when p = 1/2)."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    if p == 0.5:
        return float(sum(math.comb(n, i) for i in range(k, n + 1)) / (1 << n))
    upper = k > n * p  # sum the upper tail k..n directly; else 1 - P[X <= k-1]
    start = k if upper else k - 1
    log_term = (
        math.lgamma(n + 1) - math.lgamma(start + 1) - math.lgamma(n - start + 1)
        + start * math.log(p) + (n - start) * math.log1p(-p)
    )  # fmt: skip
    term = math.exp(log_term)
    total, ratio, i = term, p / (1.0 - p), start
    while term > 1e-17 * total:
        if upper:
            if i >= n:
                break
            term *= (n - i) / (i + 1) * ratio
            i += 1
        else:
            if i <= 0:
                break
            term *= i / (n - i + 1) / ratio
            i -= 1
        total += term
    return min(1.0, total) if upper else max(0.0, 1.0 - total)


def clopper_pearson_lower(successes: int, n: int, gamma: float) -> float:
    """One-sided (1 - gamma) lower confidence bound for a binomial proportion (bisection on the tail)."""
    if successes <= 0:
        return 0.0
    low, high = 0.0, successes / n
    for _ in range(60):
        mid = (low + high) / 2
        if binom_sf(successes, n, mid) > gamma:
            high = mid
        else:
            low = mid
    return low


def clopper_pearson_upper(successes: int, n: int, gamma: float) -> float:
    return 1.0 - clopper_pearson_lower(n - successes, n, gamma)


def exact_lower_bound(b10: int, b01: int, n: int, ci_level: float) -> float:
    """A lower confidence bound for delta = p01 - p10 of 0/1 scores that stays honest when few pairs are
    discordant: L(p01) - U(p10), one-sided Clopper-Pearson bounds at (1 - ci_level) / 4 each (Bonferroni
    over the two; together the lower tail of a ci_level two-sided interval)."""
    beta = (1.0 - ci_level) / 4
    return clopper_pearson_lower(b01, n, beta) - clopper_pearson_upper(b10, n, beta)


def binary_drop_test(
    b10: int, b01: int, n: int, margin: float, method: MarginTest = "plugin"
) -> tuple[float, str]:
    """One-sided p-value of H0 'delta >= -margin' from the regressions b10 and improvements b01 of n pairs."""
    discordant = b10 + b01
    if margin <= 0.0:
        return binom_sf(b10, discordant, 0.5), "mcnemar-exact"
    if method == "berger-boos":
        lower = clopper_pearson_lower(discordant, n, GAMMA)
        if lower <= margin:  # the whole discordance could be a drop of `margin`: no evidence either way
            return 1.0, "berger-boos"
        return min(1.0, binom_sf(b10, discordant, 0.5 + margin / (2 * lower)) + GAMMA), "berger-boos"
    share = discordant / n
    if share <= margin:
        return 1.0, "mcnemar-margin"
    return binom_sf(b10, discordant, 0.5 + margin / (2 * share)), "mcnemar-margin"


def sign_flip_drop_test(diffs: Sequence[float], margin: float, resamples: int, seed: int) -> float:
    """One-sided randomization test of H0 'mean(d) >= -margin': signs of d_i + margin flipped at random;
    p = (1 + #{sum* <= sum}) / (1 + resamples)."""
    shifted = [d + margin for d in diffs]
    observed = sum(shifted)
    table = sorted(Counter(abs(v) for v in shifted if v != 0).items())
    if not table:
        return 1.0
    tolerance = 1e-9 * max(1.0, abs(observed))
    rng = random.Random(seed)
    extreme = 0
    for _ in range(resamples):
        total = sum(v * (2 * binomial_variate(rng, c, 0.5) - c) for v, c in table)
        extreme += total <= observed + tolerance
    return (1 + extreme) / (1 + resamples)


def minimum_detectable_effect(diffs: Sequence[float], binary: bool, margin: float, alpha: float) -> float:
    """The drop (a fraction) the one-sided test at `alpha` detects with 80% power at this n (module doc)."""
    n = len(diffs)
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / max(1, n - 1)
    z = NormalDist().inv_cdf(1 - alpha) + NormalDist().inv_cdf(POWER)
    mde = margin + z * math.sqrt(var / n)
    if binary:
        mde = max(mde, margin + math.ceil(math.log2(1 / alpha)) / n)
    return mde


def fewest_detectable_pairs(alpha: float) -> int:
    """The smallest n at which any test of the gate can reach p < alpha (all n pairs regressing: p >= 2^-n)."""
    return math.ceil(math.log2(1 / alpha))


def too_few_samples_note(n: int, mde: float, alpha: float) -> str | None:
    """Why no MDE is stated (module doc), or None when the MDE is a usable number."""
    fewest = fewest_detectable_pairs(alpha)
    if n < fewest:
        return (
            f"{TOO_FEW_SAMPLES}: no drop can be detected at n = {n}; a one-sided test at alpha {alpha:g} "
            f"needs at least {fewest} paired samples"
        )
    if mde > MAX_MDE:
        return (
            f"{TOO_FEW_SAMPLES}: the detectable drop at n = {n} ({100 * mde:.1f} points) exceeds 100 points"
        )
    return None


def gate_metric(
    suite: str,
    metric: str,
    a: Sequence[float],
    b: Sequence[float],
    *,
    allowed_drop: float,
    alpha: float,
    role: Literal["gate", "report"] = "gate",
    strata: Sequence[str] | None = None,
    ci_level: float = 0.95,
    resamples: int = 10000,
    test_resamples: int | None = None,
    seed: int = 0,
    margin_test: MarginTest = "plugin",
    same_model: bool = False,
) -> MetricGate:
    """Interval, one-sided p-value and MDE of one metric over paired scores a (baseline) and b (candidate).
    `allowed_drop` is in points. The verdict is set by `decide` (after Holm). `same_model`: both runs come
    from the same model (adapter identity) under the same decoding, so no discordance is expected by
    construction and the exact bound (for sparse discordance between different models) does not apply."""
    margin = allowed_drop / 100.0
    delta = paired_delta(a, b, resamples=resamples, seed=seed, level=ci_level, strata=strata)
    bootstrap_low = (
        delta.ci_low
        if delta.method == "bootstrap"
        else paired_bootstrap(a, b, resamples=resamples, seed=seed, level=ci_level, strata=strata).ci_low
    )  # the verdict's bound stays the bootstrap's (module doc)
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    binary = is_binary(a) and is_binary(b)
    b10 = sum(1 for d in diffs if d < 0)
    b01 = sum(1 for d in diffs if d > 0)
    mde = minimum_detectable_effect(diffs, binary, margin, alpha)
    mde_note = too_few_samples_note(len(diffs), mde, alpha)
    if binary:
        p, test = binary_drop_test(b10, b01, len(diffs), margin, margin_test)
    else:
        p = sign_flip_drop_test(diffs, margin, test_resamples or resamples, seed)
        test = "sign-flip"
    return MetricGate(
        suite=suite,
        metric=metric,
        role=role,
        n=len(diffs),
        delta=delta,
        test=test,
        p_value=p,
        p_holm=p,
        allowed_drop=allowed_drop,
        alpha=alpha,
        mde=None if mde_note else 100 * mde,
        mde_note=mde_note,
        pass_bound=bootstrap_low
        if same_model
        else min(bootstrap_low, exact_lower_bound(b10, b01, len(diffs), ci_level))
        if binary
        else min(bootstrap_low, delta.ci_low if delta.method != "bootstrap" else bootstrap_low),
        regressions=b10,
        improvements=b01,
    )


def decide(result: MetricGate) -> Verdict:
    if result.p_holm < result.alpha:
        return "FAIL"
    if result.pass_bound >= -result.allowed_drop / 100.0 - 1e-12:
        return "PASS"
    return "INCONCLUSIVE"


def apply_holm(results: Sequence[MetricGate]) -> list[MetricGate]:
    """Holm across the gating results; verdicts for gating metrics (report-only ones keep none)."""
    gating = {f"{r.suite}/{r.metric}": r.p_value for r in results if r.role == "gate"}
    adjusted = holm(gating) if gating else {}
    out = []
    for r in results:
        if r.role == "gate":
            r = replace(r, p_holm=adjusted[f"{r.suite}/{r.metric}"])
            r = replace(r, verdict=decide(r))
        out.append(r)
    return out


def combine(verdicts: Sequence[Verdict]) -> Verdict:
    """FAIL if any FAIL, else INCONCLUSIVE if any, else PASS (an empty list is INCONCLUSIVE: nothing gated)."""
    if "FAIL" in verdicts:
        return "FAIL"
    if "INCONCLUSIVE" in verdicts or not verdicts:
        return "INCONCLUSIVE"
    return "PASS"


def suite_verdicts(results: Sequence[MetricGate]) -> dict[str, Verdict]:
    by_suite: dict[str, list[Verdict]] = {}
    for r in results:
        if r.verdict is not None:
            by_suite.setdefault(r.suite, []).append(r.verdict)
    return {suite: combine(v) for suite, v in by_suite.items()}


def exit_code(overall: Verdict) -> int:
    return int({"PASS": GateExit.PASS, "FAIL": GateExit.FAIL, "INCONCLUSIVE": GateExit.INCONCLUSIVE}[overall])


def simulate_gate(
    pairs: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    allowed_drop: float,
    alpha: float,
    resamples: int = 10000,
    seed: int = 0,
    margin_test: MarginTest = "plugin",
) -> tuple[Verdict, list[MetricGate]]:
    """The statistical core of one gate over suites given as (baseline, candidate) score lists (tests and
    simulations; the CLI goes through the same gate_metric/apply_holm/combine)."""
    results = [
        gate_metric(
            suite,
            "score",
            a,
            b,
            allowed_drop=allowed_drop,
            alpha=alpha,
            resamples=resamples,
            seed=seed,
            margin_test=margin_test,
        )
        for suite, (a, b) in pairs.items()
    ]
    final = apply_holm(results)
    return combine([v for v in suite_verdicts(final).values()]), final
