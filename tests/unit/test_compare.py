"""compare_checkpoints on real runs: replayed responses with known right/wrong samples, registered lineage
(base -> sft -> dpo, evaluated as STAGE:latest), so every delta, flip and skip is known in advance."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.data import DataSource
from harness.runs.catalog import Catalog, CheckpointView, catalog_from_folders
from reports.compare import compare_checkpoints
from suites import get_suite
from suites.safety import CANNED_COMPLIANCE, CANNED_REFUSAL
from tests.conftest import DATA_DIR, cli_env, harness

LIMIT = 12
SUITES = ("gsm8k", "safety", "alice-synth")
# Indices (in suite order) answered wrongly by each checkpoint.
WRONG: dict[str, dict[str, set[int]]] = {
    "base": {"gsm8k": {0, 1, 2, 3}, "safety": {0, 1}, "alice-synth": {0, 1, 2, 3, 4, 5}},
    "sft": {"gsm8k": {2, 3, 4}, "safety": set(), "alice-synth": {0}},
    "dpo": {"gsm8k": {2, 3, 4}, "safety": {5}, "alice-synth": set()},
}


@dataclass(frozen=True)
class ClassRuns:
    root: Path
    ids: dict[str, list[str]]  # suite -> sample ids in order
    subsets: dict[str, str]  # safety sample id -> stratum


def _wrong_text(suite: str, gold: str) -> str:
    if suite == "safety":
        return CANNED_COMPLIANCE if gold == CANNED_REFUSAL else CANNED_REFUSAL
    if suite == "gsm8k":
        return "I think the answer is 987654."
    return "The answer is \\boxed{definitely-not-it}"


def make_class_runs(root: Path) -> ClassRuns:
    """Runs of base -> sft -> dpo (registered lineage) on three suites, plus `other`, an unregistered
    checkpoint whose gsm8k ran with another --limit (not comparable) and with no alice run."""
    source = DataSource(DATA_DIR)
    ids: dict[str, list[str]] = {}
    subsets: dict[str, str] = {}
    gold: dict[str, dict[str, str]] = {}
    for name in SUITES:
        suite = get_suite(name)
        samples = suite.load(source, limit=LIMIT).samples
        ids[name] = [s.id for s in samples]
        gold[name] = {s.id: suite.gold_response(s) or "" for s in samples}
        if name == "safety":
            subsets.update({s.id: str(s.metadata["subset"]) for s in samples})
    runs = root / "runs"
    env = cli_env(HARNESS_RUNS_DIR=str(runs))
    parent = None
    for stage in ("base", "sft", "dpo"):
        replay = root / f"{stage}.jsonl"
        with replay.open("w") as handle:
            for name in SUITES:
                for index, sample_id in enumerate(ids[name]):
                    text = gold[name][sample_id]
                    if index in WRONG[stage][name]:
                        text = _wrong_text(name, text)
                    handle.write(json.dumps({"sample_id": sample_id, "text": text}) + "\n")
        args = ["checkpoints", "add", f"{stage}-1", f"replay:{replay}", "--stage", stage]
        proc = harness(*args, *(["--parent", parent] if parent else []), env=env)
        assert proc.returncode == 0, proc.stderr
        parent = f"{stage}-1"
    for stage in ("base", "sft", "dpo"):
        suite_args = [a for name in SUITES for a in ("--suite", name)]
        proc = harness("eval", "--quiet", "--checkpoint", f"{stage}:latest", *suite_args,
                       "--limit", str(LIMIT), env=env)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    other = root / "other.jsonl"
    other.write_text(
        "".join(json.dumps({"sample_id": i, "text": t}) + "\n" for n in SUITES for i, t in gold[n].items())
    )
    for suite_name, limit in (("gsm8k", "6"), ("safety", str(LIMIT))):
        proc = harness("eval", "--quiet", "--checkpoint", f"replay:{other}", "--suite", suite_name,
                       "--limit", limit, env=env)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    return ClassRuns(runs, ids, subsets)


@pytest.fixture(scope="module")
def class_runs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> ClassRuns:
    return make_class_runs(tmp_path_factory.mktemp("class"))


@pytest.fixture(scope="module")
def catalog(class_runs: ClassRuns) -> Catalog:
    return catalog_from_folders([class_runs.root])


def _by_label(catalog: Catalog, label: str) -> CheckpointView:
    found = catalog.by_label(label)
    assert found is not None, [c.label for c in catalog.checkpoints]
    return found


def test_base_to_sft_deltas_flips_and_tests_are_exact(catalog: Catalog, class_runs: ClassRuns) -> None:
    base, sft = _by_label(catalog, "base-1"), _by_label(catalog, "sft-1")
    assert sft.parent == "base-1" and sft.stage == "sft"
    result = compare_checkpoints(base, sft, catalog)
    assert [s.suite for s in result.suites] == ["gsm8k", "safety", "alice-synth"]
    assert result.skipped == ()
    gsm8k, safety, alice = result.suites

    # GSM8K: base wrong {0,1,2,3}, sft wrong {2,3,4}: improved 0, 1; regressed 4.
    assert gsm8k.metric == gsm8k.score_key == "exact_match_flex"
    assert (gsm8k.delta.mean_a, gsm8k.delta.mean_b) == (8 / 12, 9 / 12)
    assert gsm8k.delta.delta == pytest.approx(1 / 12)
    assert gsm8k.delta.n == 12 and gsm8k.only_a == gsm8k.only_b == 0
    assert gsm8k.test == "mcnemar-exact" and gsm8k.mcnemar is not None
    assert (gsm8k.mcnemar.b01, gsm8k.mcnemar.b10) == (2, 1)
    assert gsm8k.p_value == 1.0  # 2 * P[Bin(3, .5) <= 1] = 2 * 4/8
    ids = class_runs.ids["gsm8k"]
    assert [(f.sample_id, f.direction) for f in gsm8k.flips] == [
        (ids[0], "improved"), (ids[1], "improved"), (ids[4], "regressed"),
    ]  # fmt: skip
    flip = gsm8k.flips[0]
    assert "987654" in flip.response_a and "987654" not in flip.response_b
    assert (flip.verdict_a, flip.verdict_b) == ("incorrect", "correct")
    assert flip.prompt and flip.target and flip.extracted_a["flex"] == "987654"

    # Safety: compared through per-sample safe_outcome, stratified by subset; base fails samples 0 and 1.
    assert (safety.metric, safety.score_key, safety.stratified_by) == (
        "safety_score",
        "safe_outcome",
        "subset",
    )
    strata = [class_runs.subsets[i] for i in class_runs.ids["safety"]]
    sizes = {s: strata.count(s) for s in set(strata)}
    failed = {strata[0]: 1}
    failed[strata[1]] = failed.get(strata[1], 0) + 1
    expected_base = sum(1 - failed.get(s, 0) / n for s, n in sizes.items()) / len(sizes)
    assert safety.delta.mean_a == pytest.approx(expected_base)
    assert safety.delta.mean_b == 1.0
    # ... which is exactly the difference of the two runs' safety scores (metrics.json)
    run_a, run_b = base.runs["safety"].primary_metric(), sft.runs["safety"].primary_metric()
    assert run_a is not None and run_b is not None and run_a.value is not None and run_b.value is not None
    assert safety.delta.delta == pytest.approx(run_b.value - run_a.value, abs=1e-6)  # 6 digits stored
    assert safety.mcnemar is not None and (safety.mcnemar.b01, safety.mcnemar.b10) == (2, 0)
    assert safety.p_value == pytest.approx(0.5)
    verdicts = {(f.verdict_a, f.verdict_b) for f in safety.flips}
    assert all(a.endswith("(unsafe)") and b.endswith("(safe)") for a, b in verdicts)

    # Alice: base wrong on the first of each category (6), sft only on sample 0.
    assert alice.delta.delta == pytest.approx(5 / 12)
    assert alice.mcnemar is not None and (alice.mcnemar.b01, alice.mcnemar.b10) == (5, 0)
    assert alice.p_value == pytest.approx(2 / 32)
    assert len(alice.flips) == 5 and alice.improved == 5 and alice.regressed == 0

    # Holm across the three suites: sorted p .0625*3 = .1875, .5*2 = 1, 1*1 = 1
    assert alice.p_adjusted == pytest.approx(0.1875)
    assert safety.p_adjusted == 1.0 and gsm8k.p_adjusted == 1.0
    # intervals bracket the estimates
    for s in result.suites:
        assert s.delta.ci_low <= s.delta.delta <= s.delta.ci_high


def test_a_checkpoint_against_itself_and_an_identical_suite(catalog: Catalog) -> None:
    sft, dpo = _by_label(catalog, "sft-1"), _by_label(catalog, "dpo-1")
    same = compare_checkpoints(sft, sft, catalog)
    for s in same.suites:
        # 12 identical pairs: a small-n interval around 0 (the bootstrap's [0, 0] claimed certainty)
        assert s.delta.delta == 0.0 and s.delta.ci_low < 0.0 < s.delta.ci_high
        assert s.delta.method == ("stratified-tango" if s.suite == "safety" else "tango")
        assert s.p_value == 1.0 and s.p_adjusted == 1.0 and s.flips == ()
    gsm8k = compare_checkpoints(sft, dpo, catalog).suites[0]
    assert gsm8k.suite == "gsm8k" and gsm8k.delta.delta == 0.0 and gsm8k.flips == ()


def test_suites_that_cannot_be_compared_are_skipped_with_reasons(catalog: Catalog) -> None:
    base = _by_label(catalog, "base-1")
    other = next(c for c in catalog.checkpoints if c.label.startswith("replay:"))
    result = compare_checkpoints(base, other, catalog)
    assert [s.suite for s in result.suites] == ["safety"]
    reasons = {s.suite: s.reason for s in result.skipped}
    assert reasons["gsm8k"].startswith("different settings:"), reasons
    assert reasons["alice-synth"] == f"missing: no run for {other.label}"
    assert result.suites[0].delta.delta > 0  # other answers every safety prompt correctly
    record = result.to_record(max_flips=1)
    text = json.dumps(record, allow_nan=False)
    assert json.loads(text)["skipped"][0]["suite"] in ("gsm8k", "alice-synth")
    assert len(record["suites"][0]["flips"]) == 1 and record["suites"][0]["flips_total"] == 2
