"""`harness validate` / `harness.validate`: ours vs published per suite with a `replay:` checkpoint and a
test-local reference file: ok, differs (exit 14), regime differs (flagged, exit 0), an unavailable regime,
the mean of two metrics, reuse of a finished run (nothing generated), and the shipped entries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import harness
import suites
from harness.api.validate import (
    DIFFERS,
    INCONCLUSIVE,
    OK,
    REGIME_DIFFERS,
    ValidationResult,
    find_reference,
    load_reference_entries,
    plan_regimes,
)
from harness.errors import DataError, ExitCode, UsageError
from leaderboard.site_data import load_references
from reports.validate_table import render_validation
from tests.conftest import DATA_DIR
from tests.conftest import harness as harness_cli

N = 4  # samples per suite
GSM8K_RIGHT = 2  # of the first N GSM8K samples the replay answers correctly: 50%


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:N]]


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = []
    for index, row in enumerate(_rows(DATA_DIR / "gsm8k" / "test.jsonl")):
        target = row["answer"].split("####")[-1].strip().replace(",", "")
        answer = target if index < GSM8K_RIGHT else f"{target}1"  # wrong: the target with a digit added
        lines.append({"sample_id": f"gsm8k-test-{index:04d}", "text": f"The answer is {answer}."})
    for row in _rows(DATA_DIR / "ifeval" / "input_data.jsonl"):
        lines.append({"sample_id": f"ifeval-{row['key']}", "text": "Sure. Here is my answer, in lower case."})
    path = tmp_path_factory.mktemp("replay") / "responses.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def _entry(name: str, scores: dict[str, float], **extra: Any) -> dict[str, Any]:
    return {
        "name": name, "model": f"org/{name}", "regime": "theirs", "source": "https://example.org/card",
        "scores": scores, **extra,
    }  # fmt: skip


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> Path:
    same = {"harness_regime": {"gsm8k": "harness"}}
    entries = [
        # Ours: 2 of 4 = 50.0 with the Wilson 95% CI [15.0, 85.0].
        _entry("local-ok", {"gsm8k": 51.5}, **same),  # delta -1.5
        _entry("local-differs", {"gsm8k": 95.0}, **same),  # delta -45: the CI lies wholly below 93-97
        _entry("local-regime", {"gsm8k": 10.0}, regimes={"gsm8k": "lighteval 5-shot"}),  # delta +40, flagged
        _entry("local-unavailable", {"gsm8k": 50.0}, harness_regime={"gsm8k": "no-such-regime"}),
        _entry(
            "local-mean",
            {"ifeval": 0.0},
            harness_regime={"ifeval": "harness"},
            metric={"ifeval": "mean(prompt_level_strict_acc, inst_level_strict_acc)"},
        ),
    ]
    path = tmp_path_factory.mktemp("refs") / "references.json"
    path.write_text(json.dumps({"references": entries}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("validate-runs")


def check(replay: Path, references: Path, runs: Path, name: str, **kwargs: Any) -> ValidationResult:
    return harness.validate(
        f"replay:{replay}", name, limit=N, runs=runs, data_dir=DATA_DIR, references_path=references,
        progress=False, **kwargs,
    )  # fmt: skip


def test_within_the_tolerance_is_ok_and_a_second_call_reuses_the_run(
    replay: Path, references: Path, runs: Path
) -> None:
    # A 40-point tolerance: the band [11.5, 91.5] holds the whole CI [15.0, 85.0], so `ok`.
    first = check(replay, references, runs, "local-ok", tolerance=40.0)
    (row,) = first.rows
    assert (row.suite, row.metric, row.regime, row.verdict) == ("gsm8k", "exact_match_flex", "harness", OK)
    assert row.ours.value == pytest.approx(GSM8K_RIGHT / N)
    assert row.delta == pytest.approx(50.0 - 51.5) and row.published == 51.5
    assert row.ours.ci_low is not None and row.ours.ci_low < 0.5 < (row.ours.ci_high or 0)
    assert not first.differs and first.exit_code == ExitCode.OK
    assert row.generated == N and row.resumed == 0  # the first call generated every response
    again = check(replay, references, runs, "local-ok", tolerance=40.0)
    (reused,) = again.rows
    assert (reused.generated, reused.cache_hits, reused.resumed) == (0, 0, N)  # the finished run, as it was
    assert reused.run_dir == row.run_dir and reused.ours == row.ours
    assert "Reused without generating: gsm8k." in render_validation(again)
    # 2 points (the default): delta -1.5 is within it, but 4 samples cannot show it: the CI reaches far
    # beyond [49.5, 53.5] on both sides. So `inconclusive` (exit 11), not `ok`, and nothing is generated.
    default = check(replay, references, runs, "local-ok")
    assert default.rows[0].verdict == INCONCLUSIVE and default.rows[0].generated == 0
    assert not default.differs and default.exit_code == ExitCode.INCONCLUSIVE == 11
    assert "INCONCLUSIVE: too few samples to tell" in render_validation(default)


def test_beyond_the_tolerance_differs_and_the_cli_exits_14(
    replay: Path, references: Path, runs: Path
) -> None:
    result = check(replay, references, runs, "local-differs")
    assert result.rows[0].verdict == DIFFERS and result.rows[0].delta == pytest.approx(-45.0)
    assert result.exit_code == ExitCode.VALIDATION_DIFFERS == 14
    common = ("--limit", str(N), "--runs", str(runs), "--references", str(references), "--quiet")
    proc = harness_cli("validate", f"replay:{replay}", "--reference", "local-differs", *common)
    assert proc.returncode == 14, proc.stderr
    table = proc.stdout
    assert "gsm8k" in table and "95.0" in table and "-45.0" in table and "differs" in table
    assert "DIFFERS: a suite is further than the tolerance" in table
    loose = harness_cli(
        "validate",
        f"replay:{replay}",
        "--reference",
        "org/local-differs",
        "--tolerance",
        "90",
        "--json",
        *common,
    )
    assert loose.returncode == 0, loose.stderr
    record = json.loads(loose.stdout)
    assert record["differs"] is False and record["suites"][0]["verdict"] == OK
    assert record["suites"][0]["generated"] == 0  # the run the first call made


def test_a_regime_we_do_not_run_is_flagged_never_counted(replay: Path, references: Path, runs: Path) -> None:
    result = check(replay, references, runs, "local-regime")
    (row,) = result.rows
    assert row.verdict == REGIME_DIFFERS and row.delta == pytest.approx(40.0)  # shown, but not `differs`
    assert row.published_regime == "lighteval 5-shot" and row.regime == "harness"
    assert row.flag == "published under lighteval 5-shot; none of our regimes matches it"
    assert not result.differs
    proc = harness_cli(
        "validate", f"replay:{replay}", "--reference", "local-regime", "--limit", str(N), "--runs", str(runs),
        "--references", str(references), "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "regime differs" in proc.stdout
    assert (
        "gsm8k: regime differs: published under lighteval 5-shot; none of our regimes matches it."
        in proc.stdout
    )


def test_a_matching_regime_the_suite_lacks_falls_back_and_is_flagged(
    replay: Path, references: Path, runs: Path
) -> None:
    (row,) = check(replay, references, runs, "local-unavailable").rows
    assert row.verdict == REGIME_DIFFERS and row.regime == "harness"
    assert row.flag == "published under theirs; our 'no-such-regime' regime is not available"


def test_a_mean_of_two_metrics_is_compared(replay: Path, references: Path, runs: Path) -> None:
    (row,) = check(replay, references, runs, "local-mean").rows
    metrics = harness.load_runs(runs).of(suite="ifeval").runs[0].metrics
    strict, inst = metrics["prompt_level_strict_acc"], metrics["inst_level_strict_acc"]
    assert row.metric == "mean(prompt_level_strict_acc, inst_level_strict_acc)"
    assert row.ours.value == pytest.approx(((strict.value or 0) + (inst.value or 0)) / 2)
    assert row.ours.ci_low == pytest.approx(((strict.ci_low or 0) + (inst.ci_low or 0)) / 2)
    assert row.ours.ci_high == pytest.approx(((strict.ci_high or 0) + (inst.ci_high or 0)) / 2)
    assert row.delta == pytest.approx(100 * (row.ours.value or 0))


def test_unknown_references_and_bad_entries(references: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"No reference named 'nope'.*local-ok \(org/local-ok\)"):
        find_reference("nope", references)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([_entry("x", {"ifeval": 1.0}, metric={"ifeval": "median(a, b)"})]))
    with pytest.raises(DataError, match="metric 'median\\(a, b\\)' is neither NAME nor mean"):
        load_reference_entries(bad)
    bad.write_text(json.dumps([_entry("x", {"mmlu": 1.0})]))
    with pytest.raises(DataError, match="scores 'mmlu', which is not a suite of the harness"):
        plan_regimes(find_reference("x", bad))
    with pytest.raises(UsageError, match="tolerance must be at least 0"):
        harness.validate("embedded", "x", tolerance=-1, references_path=bad)


def test_the_shipped_entries_parse_for_validation_and_for_the_leaderboard() -> None:
    assert len(load_references(None)) == len(load_reference_entries())  # the site still reads every entry
    smol = find_reference("smollm2-135m-instruct")
    assert (
        find_reference("HuggingFaceTB/SmolLM2-135M-Instruct")
        == smol
        == find_reference("SMOLLM2-135M-INSTRUCT")
    )
    assert dict(smol.scores) == {"ifeval": 29.9, "gsm8k": 1.4}
    assert smol.metric_names("ifeval", "prompt_level_loose_acc") == (
        "prompt_level_strict_acc",
        "inst_level_strict_acc",
    )
    assert smol.metric_names("gsm8k", "exact_match_flex") == ("exact_match_flex",)
    plan = plan_regimes(smol)
    assert plan["ifeval"] == ("harness", "")
    assert plan["gsm8k"][0] == "harness" and "none of our regimes matches it" in plan["gsm8k"][1]
    olmo = plan_regimes(find_reference("olmo2-1b-sft"))
    assert "none of our regimes" in olmo["safety"][1]
    for suite in ("gsm8k", "ifeval"):  # OLMES's Tülu regime where the suite has it, else flagged
        has_tulu = "tulu" in suites.get_suite(suite).regimes
        if has_tulu:
            assert olmo[suite] == ("tulu", "")
        else:
            assert olmo[suite][0] == "harness" and olmo[suite][1].endswith("'tulu' regime is not available")


def test_the_verdict_compares_the_95_ci_with_the_tolerance_band() -> None:
    from harness.api.validate import verdict_of
    from harness.types import Metric

    def ours(value: float, low: float, high: float) -> Metric:
        return Metric("m", value, 0.01, low, high, 500)

    # Band 27.9-31.9 (published 29.9, tolerance 2).
    assert verdict_of(ours(0.30, 0.285, 0.315), 29.9, 2.0) == OK  # CI 28.5-31.5 inside the band
    assert verdict_of(ours(0.20, 0.17, 0.23), 29.9, 2.0) == DIFFERS  # CI 17-23 wholly below it
    assert verdict_of(ours(0.40, 0.35, 0.45), 29.9, 2.0) == DIFFERS  # wholly above
    assert verdict_of(ours(0.27, 0.24, 0.30), 29.9, 2.0) == INCONCLUSIVE  # reaches into the band
    assert verdict_of(ours(0.30, 0.10, 0.50), 29.9, 2.0) == INCONCLUSIVE  # delta 0.1 but 10 samples
    assert verdict_of(Metric("m", None, None, None, None, 0), 29.9, 2.0) == INCONCLUSIVE
