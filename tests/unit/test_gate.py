"""The regression gate: its statistics on constructed data with known answers, the policy file, and
`harness gate` end to end on run folders written as `harness eval` writes them (gsm8k, safety)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from statistics import NormalDist

import pytest

from harness.cli import main
from harness.errors import UsageError
from harness.gating.policy import build_policy, load_policy
from harness.gating.verdicts import (
    apply_holm,
    binary_drop_test,
    binom_sf,
    clopper_pearson_lower,
    combine,
    gate_metric,
    minimum_detectable_effect,
    simulate_gate,
)
from harness.runner import settings_hash, write_metrics
from harness.runs.manifest import Manifest
from harness.runs.store import MANIFEST, SAMPLES, SampleRecord
from harness.types import Completion, GenerationSettings, Score
from suites import get_suite


def pairs(n: int, regressions: int, improvements: int, base_right: int) -> tuple[list[float], list[float]]:
    """n pairs: `regressions` 1->0, `improvements` 0->1, then concordant pairs with `base_right` right."""
    a = [1.0] * regressions + [0.0] * improvements
    b = [0.0] * regressions + [1.0] * improvements
    rest = n - regressions - improvements
    a += [1.0] * base_right + [0.0] * (rest - base_right)
    b += [1.0] * base_right + [0.0] * (rest - base_right)
    return a, b


# --- statistics ---------------------------------------------------------------------------------------


def test_binomial_tail_matches_the_exact_sum() -> None:
    for k, n, p in [(40, 55, 0.575), (0, 5, 0.2), (5, 5, 0.2), (50, 500, 0.08), (3, 10, 0.5), (20, 20, 0.7)]:
        exact = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
        assert binom_sf(k, n, p) == pytest.approx(exact, rel=1e-9, abs=1e-15)
    assert binom_sf(6, 5, 0.3) == 0.0


def test_clopper_pearson_lower_bound_has_its_coverage() -> None:
    low = clopper_pearson_lower(55, 500, 0.001)
    assert binom_sf(55, 500, low) == pytest.approx(0.001, rel=1e-3)
    assert 0.07 < low < 0.11
    assert clopper_pearson_lower(0, 500, 0.001) == 0.0


def test_mcnemar_one_sided_exact_values() -> None:
    # 8 regressions, 1 improvement: P[Bin(9, 1/2) >= 8] = (9 + 1) / 512.
    p, test = binary_drop_test(8, 1, 100, 0.0)
    assert (test, p) == ("mcnemar-exact", pytest.approx(10 / 512))
    assert binary_drop_test(0, 0, 100, 0.0)[0] == 1.0
    # With a margin: the discordant share is 9/100, pi = 1/2 + 0.01 / 0.18.
    p_margin, test_margin = binary_drop_test(8, 1, 100, 0.01)
    assert test_margin == "mcnemar-margin"
    assert p_margin == pytest.approx(binom_sf(8, 9, 0.5 + 0.01 / 0.18))
    assert p_margin > p  # a margin can only make a FAIL harder
    p_bb, test_bb = binary_drop_test(8, 1, 100, 0.01, "berger-boos")
    assert test_bb == "berger-boos" and p_bb > p_margin  # conservative
    # Fewer discordant pairs than the margin itself: no evidence of a drop beyond it.
    assert binary_drop_test(1, 0, 200, 0.01)[0] == 1.0


def test_identical_results_pass() -> None:
    a, b = pairs(500, 0, 0, 300)
    verdict, results = simulate_gate({"gsm8k": (a, b)}, allowed_drop=1.0, alpha=0.05)
    assert verdict == "PASS"
    (r,) = results
    assert (r.delta.delta, r.p_value) == (0.0, 1.0)
    # The reported interval is Tango's, +-z^2/(n + z^2) without a discordant pair (was the bootstrap's [0, 0]).
    z2 = NormalDist().inv_cdf(0.975) ** 2
    assert r.delta.method == "tango" and r.delta.ci_high == pytest.approx(z2 / (500 + z2), abs=1e-9)
    assert -0.01 < r.pass_bound < -0.008  # the exact bound: no discordant pair among 500


def test_few_identical_samples_are_not_a_pass() -> None:
    """20 identical pairs: the bootstrap interval is [0, 0], but a regression rate up to 20% is consistent
    with seeing none; the exact bound keeps the gate from claiming PASS (the reported interval is Tango's,
    not the bootstrap's [0, 0]). Continuous identical scores of two models are judged on the small-n
    interval's bound the same way (a bounded Tango interval at 20 pairs): not a PASS either."""
    a, b = pairs(20, 0, 0, 0)
    verdict, (r,) = simulate_gate({"gsm8k": (a, b)}, allowed_drop=1.0, alpha=0.05)
    z2 = NormalDist().inv_cdf(0.975) ** 2
    assert r.delta.method == "tango" and r.delta.ci_low == pytest.approx(-z2 / (20 + z2), abs=1e-9)
    assert verdict == "INCONCLUSIVE" and r.pass_bound == pytest.approx(-(1 - 0.0125 ** (1 / 20)))
    assert r.mde == pytest.approx(1.0 + 100 * 5 / 20)
    verdict, (graded,) = simulate_gate({"mbpp": ([0.5] * 20, [0.5] * 20)}, allowed_drop=1.0, alpha=0.05)
    assert verdict == "INCONCLUSIVE" and graded.pass_bound == pytest.approx(graded.delta.ci_low)
    assert graded.pass_bound < -0.01


def test_a_five_point_drop_on_1000_samples_fails() -> None:
    a, b = pairs(1000, 80, 30, 500)  # delta = -50/1000
    verdict, (r,) = simulate_gate({"gsm8k": (a, b)}, allowed_drop=1.0, alpha=0.05)
    assert verdict == "FAIL"
    assert r.delta.delta == pytest.approx(-0.05)
    assert r.p_holm < 0.001 and r.delta.ci_high < 0
    assert (r.regressions, r.improvements) == (80, 30)


def test_a_one_point_drop_on_50_samples_is_inconclusive_with_its_mde() -> None:
    # Continuous per-sample scores (e.g. instruction-level accuracy): exactly one point lower on average.
    a = [0.5 + 0.01 * (i % 5) for i in range(50)]
    b = [x - 0.01 + (0.05 if i % 2 else -0.05) for i, x in enumerate(a)]
    verdict, (r,) = simulate_gate({"ifeval": (a, b)}, allowed_drop=1.0, alpha=0.05)
    assert r.delta.delta == pytest.approx(-0.01)
    assert verdict == "INCONCLUSIVE" and r.test == "sign-flip"
    assert r.mde > 2.0  # points: more than twice the allowed drop could go unnoticed at n = 50
    # 0/1 scores: the nearest to one point on 50 is one net regression (2 points).
    a2, b2 = pairs(50, 3, 2, 25)
    verdict2, (r2,) = simulate_gate({"gsm8k": (a2, b2)}, allowed_drop=1.0, alpha=0.05)
    assert verdict2 == "INCONCLUSIVE"
    z = 1.6448536269514722 + 0.8416212335729143
    sd = math.sqrt(sum((y - x - r2.delta.delta) ** 2 for x, y in zip(a2, b2, strict=True)) / 49)
    assert r2.mde == pytest.approx(100 * (0.01 + z * sd / math.sqrt(50)))


def test_mde_floor_for_zero_variance_binary_scores() -> None:
    # No discordant pairs: the exact test needs ceil(log2(1/alpha)) = 5 all-regression pairs.
    assert minimum_detectable_effect([0.0] * 100, True, 0.01, 0.05) == pytest.approx(0.01 + 5 / 100)


def test_holm_across_suites_and_the_overall_verdict() -> None:
    fail_a, fail_b = pairs(1000, 80, 30, 500)
    borderline_a, borderline_b = pairs(400, 24, 9, 200)
    verdict, results = simulate_gate(
        {"gsm8k": (fail_a, fail_b), "mbpp": (borderline_a, borderline_b)}, allowed_drop=1.0, alpha=0.05
    )
    by = {r.suite: r for r in results}
    ps = sorted(r.p_value for r in results)
    assert sorted(r.p_holm for r in results) == pytest.approx([2 * ps[0], max(2 * ps[0], ps[1])])
    assert by["gsm8k"].verdict == "FAIL" and verdict == "FAIL"
    assert combine(["PASS", "INCONCLUSIVE"]) == "INCONCLUSIVE"
    assert combine(["PASS", "PASS"]) == "PASS"
    assert combine([]) == "INCONCLUSIVE"


def test_report_only_metrics_get_no_verdict_and_no_holm_share() -> None:
    a, b = pairs(1000, 80, 30, 500)
    gating = gate_metric("gsm8k", "flex", a, b, allowed_drop=1.0, alpha=0.05, resamples=500)
    report = replace(gating, metric="strict", role="report")
    out = apply_holm([gating, report])
    assert out[0].p_holm == out[0].p_value and out[0].verdict == "FAIL"
    assert out[1].verdict is None


def test_stratified_interval_is_the_difference_of_stratified_scores() -> None:
    a = [1.0, 1.0, 0.0, 1.0, 1.0, 1.0] * 10
    b = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0] * 10
    strata = ["harmbench", "harmbench", "xstest_safe", "xstest_safe", "xstest_unsafe", "xstest_unsafe"] * 10
    r = gate_metric(
        "safety", "safety_score", a, b, allowed_drop=1.0, alpha=0.05, strata=strata, resamples=500
    )
    assert r.delta.mean_a == pytest.approx((1.0 + 0.5 + 1.0) / 3)
    assert r.delta.mean_b == pytest.approx((0.5 + 0.5 + 0.5) / 3)


# --- policy --------------------------------------------------------------------------------------------


def test_default_policy_and_overrides(tmp_path: Path) -> None:
    default = load_policy(None)
    assert (default.alpha, default.min_samples, default.margin_test) == (0.05, 20, "plugin")
    assert default.for_suite("gsm8k").gate == ("primary",)  # exact_match_flex, as the suite declares it
    assert default.for_suite("gsm8k").allowed_drop == 1.0
    assert default.for_suite("unknown-suite").gate == ("primary",)
    path = tmp_path / "gate.yaml"
    path.write_text("alpha: 0.01\ndefaults:\n  allowed_drop: 2\nsuites:\n  gsm8k:\n    allowed_drop: 0.5\n")
    policy = load_policy(str(path))
    assert policy.for_suite("gsm8k").allowed_drop == 0.5 and policy.for_suite("gsm8k").alpha == 0.01
    assert policy.for_suite("mbpp").allowed_drop == 2.0
    assert policy.for_suite("gsm8k").report == ()  # a suite named in the file replaces its default entry


def test_example_policy_file_is_the_default() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "gate.example.yaml"
    assert load_policy(str(example)).to_record() | {"source": ""} == load_policy(None).to_record() | {
        "source": ""
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"alhpa": 0.05}, "unknown key(s) ['alhpa']"),
        ({"alpha": 2}, "alpha: 2 is outside"),
        ({"suites": {"gsm8k": {"gate": "exact_match_flex"}}}, "expected a list of metric names"),
        ({"margin_test": "wald"}, "expected plugin or berger-boos"),
    ],
)
def test_bad_policies_are_refused(raw: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match="Gate policy") as error:
        build_policy(raw, "test")
    assert message in error.value.message


# --- the command on run folders ------------------------------------------------------------------------


def write_run(
    root: Path,
    checkpoint: str,
    scores: list[float],
    *,
    max_tokens: int = 512,
    version: str | None = None,
    ids: list[str] | None = None,
) -> Path:
    """A complete gsm8k run as `harness eval` leaves it (real manifest, samples and metrics formats)."""
    suite = get_suite("gsm8k")
    settings = GenerationSettings(max_tokens=max_tokens, temperature=0.0, seed=0)
    limit = len(scores)
    run_dir = (
        root
        / checkpoint.replace(":", "_")
        / f"gsm8k@{version or suite.version}"
        / settings_hash(suite, settings, limit)
    )
    run_dir.mkdir(parents=True)
    ids = ids or [f"gsm8k-test-{i:04d}" for i in range(len(scores))]
    records = [
        SampleRecord(
            id=i,
            prompt=f"q{i}",
            target="1",
            request_keys=(f"k{i}",),
            completions=(Completion(texts=("#### 1" if s else "#### 2",), finish_reasons=("stop",)),),
            scores={"exact_match_flex": s, "exact_match_strict": s},
            extracted={"flex": "1" if s else "2"},
        )
        for i, s in zip(ids, scores, strict=True)
    ]
    (run_dir / SAMPLES).write_text("".join(r.to_line() for r in records))
    manifest = Manifest(
        suite="gsm8k", suite_version=version or suite.version, suite_settings=dict(suite.pinned_settings()),
        checkpoint=checkpoint, adapter=f"test:{checkpoint}", generation=settings, limit=limit,
        settings_hash=run_dir.name, data_source="dir:gsm8k/test.jsonl", data_sha256="d" * 64,
        n_samples=limit, n_total=1319, created_at="2026-01-01T00:00:00.000+00:00", status="complete",
    )  # fmt: skip
    (run_dir / MANIFEST).write_text(json.dumps(manifest.to_record()))
    write_metrics(run_dir, suite, suite.metrics([Score(values=r.scores) for r in records]))
    return run_dir


def gate(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["gate", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


BASE = "gguf:/models/base.gguf"
CAND = "gguf:/models/cand.gguf"


def test_self_pass_drop_fail_and_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pairs(500, 40, 10, 250)
    write_run(tmp_path, BASE, a)
    write_run(tmp_path, CAND, b)
    code, out, _ = gate("--baseline", BASE, "--candidate", BASE, "--runs", str(tmp_path), capsys=capsys)
    assert code == 0 and "overall: PASS (exit 0)" in out
    md, summary = tmp_path / "gate.md", tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out, _ = gate(
        "--baseline", BASE, "--candidate", CAND, "--runs", str(tmp_path), "--json",
        "--markdown", str(md), "--summary", capsys=capsys,
    )  # fmt: skip
    assert code == 10
    payload = json.loads(out)
    assert payload["overall"] == "FAIL" and payload["exit_code"] == 10
    (suite,) = payload["suites"]
    flex, strict = suite["metrics"]
    assert (flex["metric"], flex["role"], flex["verdict"]) == ("exact_match_flex", "gate", "FAIL")
    assert (strict["metric"], strict["role"], strict["verdict"]) == ("exact_match_strict", "report", None)
    assert flex["delta"] == pytest.approx(-30 / 500) and flex["n"] == 500
    assert flex["regressions"] == 40 and flex["test"] == "mcnemar-margin"
    text = md.read_text()
    assert text.startswith("## Regression gate: FAIL") and "| gsm8k | exact_match_flex | 500 |" in text
    assert summary.read_text().strip() == text.strip()


def test_inconclusive_exit_code_and_mde(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = pairs(40, 3, 2, 20)
    write_run(tmp_path, BASE, a)
    write_run(tmp_path, CAND, b)
    code, out, _ = gate("--baseline", BASE, "--candidate", CAND, "--runs", str(tmp_path), capsys=capsys)
    assert code == 11
    assert "INCONCLUSIVE" in out and "overall: INCONCLUSIVE (exit 11)" in out


def test_generation_differences_are_shown_and_strict_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = pairs(500, 0, 0, 250)
    write_run(tmp_path, BASE, a)
    write_run(tmp_path, CAND, b, max_tokens=16)
    code, out, _ = gate("--baseline", BASE, "--candidate", CAND, "--runs", str(tmp_path), capsys=capsys)
    assert code == 0
    assert "WARNING gsm8k: generation settings differ (baseline -> candidate): max_tokens: 512 -> 16" in out
    code, _, err = gate(
        "--baseline", BASE, "--candidate", CAND, "--runs", str(tmp_path), "--strict-settings", capsys=capsys
    )
    assert code == 2 and "max_tokens baseline 512 vs candidate 16" in err


def test_refusals_name_both_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = pairs(100, 0, 0, 50)
    write_run(tmp_path, BASE, a)
    write_run(tmp_path, CAND, b, version="0.9")
    code, _, err = gate("--baseline", BASE, "--candidate", CAND, "--runs", str(tmp_path), capsys=capsys)
    assert code == 2
    assert "suite version: baseline '1.0' vs candidate '0.9'" in err


def test_too_small_overlap_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_run(tmp_path, BASE, [1.0] * 30, ids=[f"a{i}" for i in range(30)])
    write_run(tmp_path, CAND, [1.0] * 30, ids=[f"a{i}" for i in range(20, 50)])
    code, _, err = gate("--baseline", BASE, "--candidate", CAND, "--runs", str(tmp_path), capsys=capsys)
    assert code == 2 and "only 10 samples are in both runs (policy minimum 20" in err


def test_missing_run_fails_with_the_eval_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_run(tmp_path, BASE, [1.0] * 30)
    code, _, err = gate("--baseline", BASE, "--candidate", CAND, "--runs", str(tmp_path), capsys=capsys)
    assert code == 4
    assert f"gsm8k: no complete run for the candidate {CAND} (its runs: none)" in err
    expected = (
        f"harness eval --checkpoint {CAND} --suite gsm8k --limit 30 --max-tokens 512 --temperature 0.0 "
        f"--top-p 1.0 --samples 1 --seed 0 --runs {tmp_path}"
    )
    assert expected in err and "--eval-missing" in err


def test_registry_tags_and_run_folders_resolve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pairs(400, 40, 10, 200)
    write_run(tmp_path, BASE, a)
    cand_dir = write_run(tmp_path, CAND, b)
    (tmp_path / "registry.jsonl").write_text(
        "".join(
            json.dumps({"name": name, "reference": ref, "stage": stage, "base_model": "m"}) + "\n"
            for name, ref, stage in (("base-1", BASE, "sft"), ("dpo-1", CAND, "dpo"))
        )
    )
    monkeypatch.delenv("HARNESS_REGISTRY", raising=False)
    code, out, _ = gate(
        "--baseline", "sft:latest", "--candidate", "dpo:latest", "--runs", str(tmp_path), capsys=capsys
    )
    assert code == 10 and "gate: baseline sft:latest -> candidate dpo:latest" in out
    code, out, _ = gate(
        "--baseline", BASE, "--candidate", str(cand_dir), "--runs", str(tmp_path), capsys=capsys
    )
    assert code == 10
    code, _, err = gate(
        "--baseline", "nope:latest", "--candidate", CAND, "--runs", str(tmp_path), capsys=capsys
    )
    assert code == 2 and "No checkpoint 'nope:latest'" in err


def test_a_run_against_itself_passes_but_identical_results_of_two_models_need_more_samples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, _ = pairs(60, 0, 0, 30)
    base_dir = write_run(tmp_path, BASE, a)
    write_run(tmp_path, CAND, list(a))
    code, out, _ = gate(
        "--baseline", str(base_dir), "--candidate", BASE, "--runs", str(tmp_path), capsys=capsys
    )
    assert code == 0 and "same model and decoding on both sides" in out
    code, out, _ = gate("--baseline", BASE, "--candidate", CAND, "--runs", str(tmp_path), capsys=capsys)
    assert code == 11, out  # 0 discordant of 60 still allows a ~7% regression rate
