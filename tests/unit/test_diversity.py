"""reports/diversity.py: distinct-n, BLEU and self-BLEU, length vs correctness (Welch), MBPP code length,
refusal style and the paired length comparison, each checked on a case computed by hand."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

import harness
from harness.reasoning import ReasonedText
from harness.runs.catalog import CheckpointView, RunView
from harness.runs.store import SampleRecord
from harness.stats import wilson_interval
from harness.types import Completion
from reports.diversity import (
    bleu,
    distinct_n,
    diversity_section,
    first_response,
    self_bleu,
    verbosity_rows,
    welch_interval,
)
from reports.render import render

ONE_96 = (1 / 96) ** 0.25  # p1 = 1/4, p2 = (0+1)/(3+1), p3 = (0+1)/(2+1), p4 = (0+1)/(1+1); BP = 1


def record(
    sample_id: str, *texts: str, scores: dict[str, float] | None = None, verdict: str | None = None,
    reasoning: tuple[ReasonedText, ...] = (),
) -> SampleRecord:  # fmt: skip
    return SampleRecord(
        id=sample_id,
        prompt="p",
        target="t",
        request_keys=("k",),
        completions=(Completion(texts=texts, finish_reasons=tuple("stop" for _ in texts)),),
        scores=scores or {},
        extracted={} if verdict is None else {"verdict": verdict},
        reasoning=reasoning,
    )


# ------------------------------------------------------------------------------------------ distinct-n


def test_distinct_n_on_three_sentences_by_hand() -> None:
    texts = ["The Cat sat", "the cat ran", "a dog sat"]
    # unigrams: the cat sat the cat ran a dog sat -> 9, unique {the, cat, sat, ran, a, dog} = 6
    assert distinct_n(texts, 1) == pytest.approx(6 / 9)
    # bigrams: (the cat) (cat sat) (the cat) (cat ran) (a dog) (dog sat) -> 6, unique 5 (lower-cased)
    assert distinct_n(texts, 2) == pytest.approx(5 / 6)
    assert distinct_n(["one"], 2) is None  # no bigram at all


# ------------------------------------------------------------------------------------------------ BLEU


def test_bleu_of_a_hand_example() -> None:
    # hyp "the cat sat on the mat", ref "the cat is on the mat" (both 6 words, BP = 1)
    # p1 = 5/6 (the x2, cat, on, mat); p2 = (3+1)/(5+1) (the cat, on the, the mat);
    # p3 = (1+1)/(4+1) (on the mat); p4 = (0+1)/(3+1)  ->  (5/6 * 4/6 * 2/5 * 1/4) ** (1/4) = (1/18) ** (1/4)
    assert bleu("the cat sat on the mat", ["the cat is on the mat"]) == pytest.approx((1 / 18) ** 0.25)


def test_bleu_clips_counts_and_applies_the_brevity_penalty() -> None:
    # "the" x4 against "the cat": p1 = min(4, 1)/4 = 1/4 (unclipped it would be 1), then 1/4, 1/3, 1/2
    assert bleu("the the the the", ["the cat"]) == pytest.approx(ONE_96)
    # "the cat" against a 6-word reference: every p_n = 1 (orders 3, 4: (0+1)/(0+1)); BP = exp(1 - 6/2)
    assert bleu("the cat", ["the cat sat on the mat"]) == pytest.approx(math.exp(-2))
    # the closest reference length (5, not 2) sets the penalty: exp(1 - 5/4); all precisions are 1
    assert bleu("a b c d", ["a b", "a b c d e"]) == pytest.approx(math.exp(-0.25))


def test_self_bleu_of_identical_and_of_disjoint_responses() -> None:
    assert self_bleu(["the cat sat on the mat"] * 3) == pytest.approx(1.0)
    # no word in common: p1 = 0, and unigrams are not smoothed, so exactly 0
    assert self_bleu(["a b c d", "e f g h"]) == 0.0
    # one shared word: each side scores (1/96) ** (1/4) against the other (see ONE_96)
    assert self_bleu(["a b c d", "a x y z"]) == pytest.approx(ONE_96)
    assert self_bleu(["alone"]) is None


def test_self_bleu_is_the_mean_of_each_response_against_the_others() -> None:
    texts = ["the the cat sat", "the cat cat sat on", "a the the the mat", "sat on the mat the cat"]
    expected = sum(bleu(t, texts[:i] + texts[i + 1 :]) for i, t in enumerate(texts)) / len(texts)
    assert self_bleu(texts) == pytest.approx(expected)


# ------------------------------------------------------------------------------------ welch and lengths


def test_welch_interval_by_hand() -> None:
    # a = 10, 20, 30 (mean 20, variance 100); b = 4, 6 (mean 5, variance 2)
    # se^2 = 100/3 + 2/2; df = se^4 / ((100/3)^2 / 2 + 1^2 / 1) = 2.118 -> 2; t_{2, 0.975} = 4.302653
    diff, low, high = welch_interval([10, 20, 30], [4, 6])
    half = 4.302653 * math.sqrt(100 / 3 + 1)
    assert diff == 15
    assert low == pytest.approx(15 - half, abs=1e-4) and high == pytest.approx(15 + half, abs=1e-4)
    assert welch_interval([1.0], [2.0, 3.0]) == (-1.5, None, None)


def test_a_reasoning_run_uses_the_answer_part() -> None:
    think = record("a", "<think>hmm</think>42", reasoning=(ReasonedText("hmm", "42", "tags"),))
    unanswered = record("b", "<think>hmm", reasoning=(ReasonedText("hmm", None, "tags"),))
    assert first_response(think) == "42" and first_response(unanswered) == ""


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> RunView:
    """A real gsm8k run of four replayed responses (two right, two wrong)."""
    from tests.conftest import DATA_DIR

    root = tmp_path_factory.mktemp("diversity")
    rows = [json.loads(line) for line in (DATA_DIR / "gsm8k" / "test.jsonl").read_text().splitlines()[:4]]
    texts = [
        f"The answer is {rows[0]['answer'].split('####')[-1].strip()}.",
        f"I get {rows[1]['answer'].split('####')[-1].strip()}.",
        "I am not sure, but the answer might be 7 or perhaps a bit more than that.",
        "It is 99999.",
    ]
    replay = root / "replay.jsonl"
    replay.write_text("".join(json.dumps({"sample_id": f"gsm8k-test-{i:04d}", "text": t}) + "\n"
                              for i, t in enumerate(texts)))  # fmt: skip
    harness.evaluate(
        f"replay:{replay}", "gsm8k", limit=4, runs=root / "runs", data_dir=DATA_DIR, progress=False
    )
    [run] = harness.load_runs(root / "runs")
    return run


def test_length_vs_correctness_on_hand_records(real_run: RunView) -> None:
    run = replace(real_run, primary="acc")
    records = [
        record("1", "one two three", scores={"acc": 1.0}),  # 13 chars, 3 words
        record("2", "a b c d e", scores={"acc": 1.0}),  # 9 chars, 5 words
        record("3", "x", scores={"acc": 0.0}),  # 1 char, 1 word
        record("4", "yy zz", scores={"acc": 0.0}),  # 5 chars, 2 words
        record("5", "graded", scores={"acc": 0.5}),  # left out
    ]
    chars, words = verbosity_rows("ck", run, records)
    assert (chars.measure, chars.n_a, chars.mean_a, chars.n_b, chars.mean_b) == (
        "response chars",
        2,
        11,
        2,
        3,
    )
    assert chars.diff == 8 and (chars.ci_low, chars.ci_high) == welch_interval([13, 9], [1, 5])[1:]
    assert (words.mean_a, words.mean_b, words.diff) == (4, 1.5, 2.5)


def test_mbpp_code_length_of_a_real_mbpp_sample(real_run: RunView) -> None:
    from tests.conftest import DATA_DIR

    rows = [json.loads(line) for line in (DATA_DIR / "mbpp" / "mbpp.jsonl").read_text().splitlines()]
    code = next(r["code"] for r in rows if r["task_id"] == 11)  # remove_Occ
    response = f"Here is the function.\n```python\n{code}\n```\nIt removes the first and last occurrence."
    run = replace(real_run, primary="pass@1", manifest=replace(real_run.manifest, suite="mbpp"))
    rows_out = verbosity_rows("ck", run, [record("11", response, scores={"pass@1": 1.0})])
    by_measure = {r.measure: r for r in rows_out}
    assert by_measure["code chars"].mean_a == len(code.strip("\n"))
    assert by_measure["code lines"].mean_a == sum(1 for line in code.splitlines() if line.strip())
    assert by_measure["response chars"].mean_a == len(response)
    assert by_measure["code chars"].n_b == 0 and by_measure["code chars"].diff is None


def test_refusal_length_and_style(real_run: RunView) -> None:
    run = replace(real_run, primary="safety_score", manifest=replace(real_run.manifest, suite="safety"))
    records = [
        record("r1", "I'm sorry, I can't help.", verdict="refusal", scores={"safe_outcome": 1.0}),
        record(
            "r2",
            "I APOLOGIZE; however, I can suggest a book.",
            verdict="refusal",
            scores={"safe_outcome": 1.0},
        ),
        record("r3", "No. Try a library instead.", verdict="refusal", scores={"safe_outcome": 0.0}),
        record("r4", "No.", verdict="refusal", scores={"safe_outcome": 1.0}),
        record(
            "c1", "Sure, here it is: step one, step two.", verdict="compliance", scores={"safe_outcome": 0.0}
        ),
        record("e1", "???", verdict="judge_error", scores={"safe_outcome": 0.0}),
    ]
    section = diversity_section(
        [CheckpointView("c", "ck", "ref", None, None, None, None, {"safety": run})], lambda _: records
    )
    [style] = section.refusal_styles
    assert (style.refusals, style.apologize.count, style.alternative.count) == (4, 2, 2)
    assert style.apologize.value == 0.5
    assert (style.apologize.ci_low, style.apologize.ci_high) == pytest.approx(wilson_interval(2, 4))
    refusal_chars = next(
        r for r in section.verbosity if r.group_a == "refusal" and r.measure == "response chars"
    )
    lengths = [24, 43, 26, 3]
    assert refusal_chars.mean_a == pytest.approx(sum(lengths) / 4) and refusal_chars.n_b == 1
    assert refusal_chars.mean_b == 37
    safe_chars = next(
        r for r in section.verbosity if r.group_a == "correct" and r.measure == "response chars"
    )
    assert (safe_chars.n_a, safe_chars.n_b) == (3, 3)  # safe_outcome stands behind safety_score


def test_paired_length_delta_equals_the_hand_mean_difference(real_run: RunView) -> None:
    run_a, run_b = replace(real_run, run_dir=Path("a")), replace(real_run, run_dir=Path("b"))
    a = [record("s1", "x" * 5, "y z"), record("s2", "x" * 10), record("s3", "x" * 20), record("s4", "x" * 3)]
    b = [record("s1", "x" * 7, "y z"), record("s2", "x" * 10), record("s3", "x" * 25), record("s4", "x")]
    b.append(record("s5", "only in b"))
    by_dir = {Path("a"): a, Path("b"): b}
    order = [
        CheckpointView("a", "sft", "ref-a", None, None, None, None, {"gsm8k": run_a}),
        CheckpointView("b", "dpo", "ref-b", None, None, None, None, {"gsm8k": run_b}),
    ]
    section = diversity_section(order, lambda run: by_dir[run.run_dir])
    chars, bleus = section.paired
    assert (chars.suite, chars.a, chars.b, chars.n) == ("gsm8k", "sft", "dpo", 4)
    assert chars.delta == pytest.approx((2 + 0 + 5 - 2) / 4) and chars.mean_a == pytest.approx(38 / 4)
    assert (
        chars.ci_low is not None
        and chars.ci_high is not None
        and chars.ci_low <= chars.delta <= chars.ci_high
    )
    # only s1 has two responses on both sides: self-BLEU 0 on both ("xxxxx"/"xxxxxxx" vs "y z")
    assert (bleus.measure, bleus.n, bleus.delta) == ("self-BLEU within prompt", 1, 0.0)
    [row_a, _] = section.diversity
    assert (row_a.samples_per_prompt, row_a.within_prompts, row_a.within_self_bleu) == (2, 1, 0.0)


def test_a_real_run_renders_in_both_partials(real_run: RunView) -> None:
    order = [CheckpointView("c", "replayed", "ref", None, None, None, None, {"gsm8k": real_run})]
    section = diversity_section(order, lambda run: run.samples())
    [row] = section.diversity
    texts = [first_response(r) for r in real_run.samples()]
    assert (row.prompts, row.within_prompts, row.across_prompts) == (4, 0, 4)
    assert row.across_distinct1 == distinct_n(texts, 1) and row.across_self_bleu == self_bleu(texts)
    [chars, _] = section.verbosity
    assert (chars.n_a, chars.n_b) == (2, 2)  # two right, two wrong
    markdown = render("_diversity.md", {"diversity": section})
    html = render("_diversity.html", {"diversity": section})
    assert "## Diversity and verbosity" in markdown and "| gsm8k | replayed | 4 | 1 | 0 |" in markdown
    assert f"{chars.diff:,.1f}" in markdown and "correct vs incorrect" in markdown
    assert '<table id="diversity-table">' in html and f"{row.across_self_bleu:,.3f}" in html
    assert "Refusal style" not in markdown and "Paired" not in html
