"""The report's calibration section (reports/calibration.py, reports/calibration_stats.py): every formula
checked on a case computed by hand (each with a value that a wrong formula would miss), the answer-span
confidence from token offsets, verbalized confidence, the paired bootstrap, the sentences a run without
log-probabilities gets, real replay runs through calibration_section, and the partial templates."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path

import pytest

import harness
from harness.runs.catalog import build_catalog
from harness.runs.store import SampleRecord
from harness.types import Completion, TokenLogprobs
from reports.calibration import (
    ANSWER,
    CALIBRATION_FIGURE_KEY,
    FIGURE_TITLE,
    NO_ANSWER,
    NO_LOGPROBS,
    NOT_IN_TEXT,
    SEQUENCE,
    VERBALIZED,
    CalibrationSection,
    answer_confidence,
    answer_span,
    calibration_section,
    paired_calibration,
    reliability_figure,
    run_calibration,
    sequence_confidence,
    span_logprob,
)
from reports.calibration_stats import (
    PAIRED_METHOD,
    auroc,
    bin_of,
    bootstrap_intervals,
    brier,
    calibration_stats,
    ece,
    paired_differences,
    reliability_bins,
)
from reports.render import render
from tests.conftest import DATA_DIR

pytest.importorskip("jinja2", reason="the site extra is not installed")

KEY = "exact_match_flex"

# Eight samples in three bins (confidence, correct):
#   bin 9 [0.9, 1): 0.95 x 4, correct 1 1 0 1: accuracy 0.75, gap 0.20 (over-confident)
#   bin 1 [0.1, 0.2): 0.15 x 2, correct 1 0: accuracy 0.5, gap 0.35 (under-confident)
#   bin 6 [0.6, 0.7): 0.65 x 2, correct 1 0: accuracy 0.5, gap 0.15 (over-confident)
# ECE = 4/8 * 0.20 + 2/8 * 0.35 + 2/8 * 0.15 = 0.1 + 0.0875 + 0.0375 = 0.225.
#   Unweighted mean of the gaps: 0.2333; signed (no absolute value): -0.05.
# Brier: 3 x 0.05^2 + 0.95^2 + 0.85^2 + 0.15^2 + 0.35^2 + 0.65^2 = 0.0075 + 0.9025 + 0.7225 + 0.0225 + 0.1225
#   + 0.4225 = 2.2, / 8 = 0.275.
# AUROC over 5 correct x 3 wrong = 15 pairs: each correct 0.95 wins 2 and ties 1 (2.5, x3 = 7.5); the correct
#   0.15 ties 1 (0.5); the correct 0.65 wins 1, ties 1 (1.5): 9.5 / 15.
# Abstention: conf >= 0.5 answers 6 (coverage 0.75), 4 right: 2/3; >= 0.7 and >= 0.9 answer the four 0.95s
#   (coverage 0.5), accuracy 0.75. Top 50%: the four 0.95s: 0.75 (lowest 0.95); top 80%: ceil(6.4) = 7, the
#   0.95s, the 0.65s and the first 0.15 in record order (correct): 5/7 (lowest 0.15).
HAND = [
    (0.95, 1.0),
    (0.95, 1.0),
    (0.95, 0.0),
    (0.95, 1.0),
    (0.15, 1.0),
    (0.15, 0.0),
    (0.65, 1.0),
    (0.65, 0.0),
]


def test_bins_are_equal_width_and_the_last_holds_one() -> None:
    assert [bin_of(x) for x in (0.0, 0.0999, 0.1, 0.3, 0.6, 0.7, 0.95, 1.0)] == [0, 0, 1, 3, 6, 7, 9, 9]
    bins = reliability_bins(HAND)
    assert [b.count for b in bins] == [0, 2, 0, 0, 0, 0, 2, 0, 0, 4]
    assert (bins[9].low, bins[9].high, bins[9].confidence, bins[9].accuracy) == pytest.approx(
        (0.9, 1.0, 0.95, 0.75)
    )
    assert (bins[1].confidence, bins[1].accuracy) == pytest.approx((0.15, 0.5))
    assert bins[0].confidence is None and bins[0].accuracy is None


def test_ece_weights_each_bin_gap_by_its_count() -> None:
    assert ece(HAND) == pytest.approx(0.225)
    assert ece(HAND) != pytest.approx(0.7 / 3)  # the unweighted mean of the gaps
    assert ece([(0.8, 1.0)] * 5) == pytest.approx(0.2) and ece([(0.5, 1.0), (0.5, 0.0)]) == 0.0


def test_brier_and_auroc_by_hand() -> None:
    assert brier(HAND) == pytest.approx(0.275)
    assert auroc(HAND) == pytest.approx(9.5 / 15)
    assert auroc([(0.9, 1.0), (0.1, 0.0)]) == 1.0 and auroc([(0.1, 1.0), (0.9, 0.0)]) == 0.0
    assert auroc([(0.9, 1.0), (0.8, 1.0)]) is None  # no wrong answer to rank against


def test_abstention_by_threshold_and_by_coverage() -> None:
    stats = calibration_stats(HAND)
    assert stats is not None
    (t5, t7, t9) = stats.thresholds
    assert (t5.threshold, t5.answered, t5.coverage, t5.accuracy) == pytest.approx((0.5, 6, 0.75, 2 / 3))
    assert (t7.answered, t7.coverage, t7.accuracy) == pytest.approx((4, 0.5, 0.75))
    assert (t9.answered, t9.accuracy) == (4, 0.75)
    (c50, c80) = stats.coverages
    assert (c50.answered, c50.min_confidence, c50.accuracy) == (4, 0.95, 0.75)
    assert (c80.answered, c80.min_confidence, c80.accuracy) == pytest.approx((7, 0.15, 5 / 7))
    assert (stats.n, stats.accuracy, stats.mean_confidence) == pytest.approx(
        (8, 5 / 8, (3.8 + 0.3 + 1.3) / 8)
    )
    edge = calibration_stats([(0.7, 1.0), (0.5, 0.0), (0.4, 0.0)])  # a confidence at the threshold answers
    assert edge is not None and [(t.answered, t.accuracy) for t in edge.thresholds] == [
        (2, 0.5),
        (1, 1.0),
        (0, None),
    ]
    none = calibration_stats([(0.2, 1.0), (0.3, 0.0)])
    assert none is not None and none.thresholds[0].accuracy is None and none.thresholds[0].coverage == 0.0


def test_bootstrap_intervals_are_seeded_and_collapse_without_spread() -> None:
    same = bootstrap_intervals([(0.8, 1.0)] * 5)
    assert same == ((pytest.approx(0.2), pytest.approx(0.2)), (pytest.approx(0.04), pytest.approx(0.04)))
    intervals = bootstrap_intervals(HAND)
    assert intervals == bootstrap_intervals(HAND)  # fixed seed
    assert intervals is not None
    (ece_low, ece_high), (brier_low, brier_high) = intervals
    assert 0.0 <= ece_low < ece_high <= 1.0 and brier_low < 0.275 < brier_high
    assert bootstrap_intervals([(0.5, 1.0)]) is None
    one = calibration_stats([(0.5, 1.0)])
    assert one is not None and (one.ece, one.ece_low, one.brier_high) == (0.5, None, None)
    assert calibration_stats([]) is None


def test_grouped_bootstrap_draws_like_plain_resampling() -> None:
    # The bootstrap draws counts per bin and then indices within each bin; its interval must match that of
    # resampling n indices directly (1000 resamples each: the percentiles agree within Monte Carlo noise).
    rng = random.Random(7)
    points = [(c := rng.random(), float(rng.random() < c**0.5)) for _ in range(300)]
    intervals = bootstrap_intervals(points)
    assert intervals is not None
    plain = [[points[i] for i in rng.choices(range(300), k=300)] for _ in range(1000)]
    eces, briers = sorted(ece(p) for p in plain), sorted(brier(p) for p in plain)
    assert intervals[0] == pytest.approx((eces[25], eces[975]), abs=0.012)
    assert intervals[1] == pytest.approx((briers[25], briers[975]), abs=0.012)


# "The answer is 42." as the tokenizer split it: " 4" straddles the answer's start.
TEXT = "The answer is 42."
TOKENS = TokenLogprobs.from_tokens(
    ["The", " answer", " is", " 4", "2", "."], [-0.1, -0.2, -0.3, -0.5, -0.25, -0.05]
)


def test_answer_confidence_sums_the_tokens_overlapping_the_answer() -> None:
    assert TOKENS.offsets == (0, 3, 10, 13, 15, 16)
    assert answer_span(TEXT, "42") == (14, 16)
    # " 4" (13-15) straddles the start and counts; "2" counts; "." and " is" do not: -0.5 - 0.25.
    assert span_logprob(TOKENS, len(TEXT), 14, 16) == pytest.approx(-0.75)
    assert answer_confidence(TEXT, "42", TOKENS) == pytest.approx(math.exp(-0.75))
    assert sequence_confidence(TOKENS) == pytest.approx(math.exp(-1.4 / 6))


def test_the_last_occurrence_of_the_answer_is_the_one_scored() -> None:
    tokens = TokenLogprobs.from_tokens(["42", " or", " 4", "2"], [-2.0, -0.1, -0.3, -0.4])
    assert answer_span("42 or 42", "42") == (6, 8)
    assert answer_confidence("42 or 42", "42", tokens) == pytest.approx(math.exp(-0.7))  # not exp(-2)


def test_empty_tokens_count_where_their_character_is_in_the_answer() -> None:
    # "1€": a byte-level tokenizer gives "€" in two pieces, the first (empty) sharing offset 1; an end token
    # (empty, at the text's end) is outside every answer.
    tokens = TokenLogprobs((-1.0, -0.2, -0.3, -5.0), (0, 1, 1, 2))
    assert span_logprob(tokens, 2, 1, 2) == pytest.approx(-0.5)
    assert span_logprob(tokens, 2, 0, 2) == pytest.approx(-1.5)
    assert answer_confidence("1€", "1", tokens) == pytest.approx(math.exp(-1.0))


def test_why_a_sample_has_no_answer_confidence() -> None:
    assert answer_confidence(TEXT, "42", None) == NO_LOGPROBS
    assert (
        answer_confidence(TEXT, None, TOKENS) == NO_ANSWER
        and answer_confidence(TEXT, "", TOKENS) == NO_ANSWER
    )
    assert answer_confidence(TEXT, "1234", TOKENS) == NOT_IN_TEXT
    assert sequence_confidence(None) is None and sequence_confidence(TokenLogprobs((), ())) is None


def record(
    i: int,
    text: str,
    answer: str | None,
    correct: float,
    tokens: TokenLogprobs | None = None,
) -> SampleRecord:
    completion = Completion(
        texts=(text,), finish_reasons=("stop",), prompt_tokens=1, completion_tokens=1, latency_s=0.0,
        logprobs=() if tokens is None else (tokens,),
    )  # fmt: skip
    return SampleRecord(f"s{i}", "p", "t", ("k",), (completion,), {KEY: correct}, {"flex": answer})


def one_token_per_char(text: str, logprob: float) -> TokenLogprobs:
    return TokenLogprobs.from_tokens(list(text), [logprob] * len(text))


def test_verbalized_runs_read_the_stated_confidence_and_skip_its_line() -> None:
    # The answer 85 also appears in the confidence line: the answer search stops before that line.
    text = "x 85 is it.\nConfidence: 85%"
    tokens = TokenLogprobs.from_tokens(["x", " 8", "5", " is it.", "\nConfidence: ", "85", "%"],
                                       [-0.3, -0.1, -0.1, -0.2, -0.1, -3.0, -0.1])  # fmt: skip
    assert answer_confidence(text, "85", tokens, verbalized=True) == pytest.approx(math.exp(-0.2))
    assert answer_confidence(text, "85", tokens) == pytest.approx(math.exp(-3.0))
    # Stated 0.9 (right), 0.9 (wrong), 0.6 (right), and one stating none: 3 of 4 (share 0.75). Bins 9 (conf 0.9,
    # accuracy 0.5) and 6 (0.6, 1.0): ECE = 2/3 * 0.4 + 1/3 * 0.4 = 0.4; Brier (0.01 + 0.81 + 0.16) / 3.
    records = [
        record(0, "1\nConfidence: 90%", "1", 1.0),
        record(1, "2\nconfidence: 0.9", "2", 0.0),
        record(2, "3\n**Confidence:** 60 %", "3", 1.0),
        record(3, "4", "4", 0.0),
    ]
    run = run_calibration("gsm8k", "sft", records, KEY, False, "openai", verbalized=True)
    (verbal,) = run.sources
    assert verbal.source == VERBALIZED and (verbal.with_confidence, verbal.without_confidence) == (3, 1)
    assert verbal.share == 0.75 and verbal.without_reasons == "1 stated none"
    assert verbal.stats.ece == pytest.approx(0.4) and verbal.stats.brier == pytest.approx(0.98 / 3)
    assert run.notes == ("no token log-probabilities: run with --logprobs",)


def test_runs_without_logprobs_get_a_sentence_and_no_rows() -> None:
    records = [record(i, f"The answer is {i}.", str(i), 1.0) for i in range(3)]
    unasked = run_calibration("gsm8k", "sft", records, KEY, False, "openai", verbalized=False)
    assert (unasked.sources, unasked.notes) == ((), ("no token log-probabilities: run with --logprobs",))
    asked = run_calibration("gsm8k", "sft", records, KEY, True, "llama_cpp", verbalized=False)
    assert asked.notes == ("no token log-probabilities: the backend (llama_cpp) returned none",)
    none_stated = run_calibration("alice", "sft", records, KEY, False, "x", verbalized=True)
    assert none_stated.sources == () and none_stated.notes[1] == (
        "verbalized confidence asked, but none of the 3 responses stated one"
    )
    graded = [replace(records[0], scores={KEY: 0.5})]
    assert "not a 0/1 score" in run_calibration("gsm8k", "c", graded, KEY, True, "x", False).notes[0]


def test_run_rows_count_samples_without_confidence() -> None:
    # s0: 42 found at p = exp(-0.1 * 2) (one token per character); s1: answer not in the text; s2: no answer;
    # s3: no logprobs. The sequence confidence exists for s0, s1, s2.
    records = [
        record(0, "so 42", "42", 1.0, one_token_per_char("so 42", -0.1)),
        record(1, "so 1,234", "1234", 1.0, one_token_per_char("so 1,234", -0.2)),
        record(2, "no idea", None, 0.0, one_token_per_char("no idea", -0.5)),
        record(3, "so 7", "7", 0.0),
    ]
    run = run_calibration("gsm8k", "sft", records, KEY, True, "vllm", verbalized=False)
    answer, sequence = run.sources
    assert (answer.source, answer.with_confidence, answer.without_confidence) == (ANSWER, 1, 3)
    assert answer.without_reasons == "1 answer not in the text, 1 no extracted answer, 1 no logprobs"
    assert answer.stats.mean_confidence == pytest.approx(math.exp(-0.2))
    assert (sequence.source, sequence.with_confidence, sequence.without_reasons) == (
        SEQUENCE,
        3,
        "1 no logprobs",
    )
    assert sequence.stats.mean_confidence == pytest.approx(
        (math.exp(-0.1) + math.exp(-0.2) + math.exp(-0.5)) / 3
    )
    assert run.notes == ()


def test_paired_differences_by_hand_and_with_the_same_draws() -> None:
    # a: bins 9 (0.9: 1 0, gap 0.4) and 2 (0.2: 0 1, gap 0.3): ECE 0.35; Brier (0.01 + 0.81 + 0.04 + 0.64) / 4.
    # b: four bins of one: gaps 0.1 0.6 0.2 0.2: ECE 0.275; Brier (0.01 + 0.36 + 0.04 + 0.04) / 4.
    a = [(0.9, 1.0), (0.9, 0.0), (0.2, 0.0), (0.2, 1.0)]
    b = [(0.9, 1.0), (0.6, 0.0), (0.2, 0.0), (0.8, 1.0)]
    found = paired_differences(a, b)
    assert found is not None
    e, br = found
    assert (e.n, e.a, e.b, e.delta) == pytest.approx((4, 0.35, 0.275, -0.075))
    assert (br.a, br.b, br.delta) == pytest.approx((0.375, 0.1125, -0.2625))
    assert e.ci_low is not None and e.ci_high is not None and e.ci_low <= e.ci_high
    # Paired: identical runs differ by exactly 0 in every resample (independent draws would not).
    same = paired_differences(HAND, HAND)
    assert same is not None and (same[0].ci_low, same[0].ci_high, same[1].ci_low) == (0.0, 0.0, 0.0)
    one = paired_differences([(0.5, 1.0)], [(0.9, 1.0)])
    assert one is not None and one[1].delta == pytest.approx(0.01 - 0.25) and one[1].ci_low is None
    assert paired_differences([], []) is None
    with pytest.raises(ValueError, match="equal lengths"):
        paired_differences(a, b[:2])


def test_paired_calibration_uses_only_ids_with_confidence_on_both_sides() -> None:
    a = {
        ANSWER: {"s0": (0.9, 1.0), "s1": (0.9, 0.0), "s2": (0.2, 0.0), "s3": (0.2, 1.0), "only-a": (0.1, 1.0)}
    }
    b = {ANSWER: {"s0": (0.9, 1.0), "s1": (0.6, 0.0), "s2": (0.2, 0.0), "s3": (0.8, 1.0), "only-b": (0.1, 1.0)},
         VERBALIZED: {"s0": (0.5, 1.0)}}  # fmt: skip
    (pair,) = paired_calibration("gsm8k", "sft", "dpo", a, b)
    assert (pair.source, pair.ece.n, pair.method) == (ANSWER, 4, PAIRED_METHOD)
    assert pair.ece.delta == pytest.approx(-0.075) and pair.brier.delta == pytest.approx(-0.2625)


def _replay(path: Path, rows: list[str]) -> Path:
    lines = [json.dumps({"sample_id": f"gsm8k-test-{i:04d}", "text": text}) for i, text in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_section_from_replay_runs(tmp_path: Path) -> None:
    # GSM8K's first four answers are 18, 3, 70000, 540. Replay records carry no logprobs: the section says
    # so; then the same records with one-token-per-character logprobs added (as an adapter would store
    # them) give rows, a pair and a figure.
    sft = _replay(tmp_path / "sft.jsonl", ["#### 18", "#### 3", "#### 1", "#### 2"])
    dpo = _replay(tmp_path / "dpo.jsonl", ["#### 18", "#### 4", "#### 70000", "#### 2"])
    runs = tmp_path / "runs"
    for replay in (sft, dpo):
        harness.evaluate(f"replay:{replay}", "gsm8k", limit=4, runs=runs, data_dir=DATA_DIR, progress=False)
    catalog = build_catalog(list(harness.load_runs(runs)))
    order = sorted(catalog.checkpoints, key=lambda c: c.reference.endswith("dpo.jsonl"))
    plain = calibration_section(order, lambda run: run.samples())
    assert not plain.measured and plain.pairs == () and plain.figure["data"] == []
    assert [n for _, _, n in plain.run_notes] == ["no token log-probabilities: run with --logprobs"] * 2
    assert plain.pair_notes == (
        f"gsm8k: {order[0].label} -> {order[1].label}: no sample with a confidence in both runs",
    )
    text = render("_calibration.md", {"calibration": plain})
    assert "No run has a measurable confidence." in text
    assert f"- gsm8k / {order[0].label}: no token log-probabilities: run with --logprobs" in text

    def with_logprobs(r: SampleRecord) -> SampleRecord:
        text = r.completions[0].texts[0]
        tokens = one_token_per_char(text, -0.05 if r.scores[KEY] else -0.4)
        return replace(r, completions=(replace(r.completions[0], logprobs=(tokens,)),))

    section = calibration_section(order, lambda run: [with_logprobs(r) for r in run.samples()])
    assert section.measured and section.run_notes == ()
    first = section.rows[0].sources[0]
    # sft: right 18 (2 chars: exp(-0.1)), 3 (exp(-0.05)); wrong 1 and 2 (exp(-0.4) each).
    assert first.source == ANSWER and first.stats.accuracy == 0.5
    assert first.stats.mean_confidence == pytest.approx(
        (math.exp(-0.1) + math.exp(-0.05) + 2 * math.exp(-0.4)) / 4
    )
    assert [p.source for p in section.pairs] == [ANSWER, SEQUENCE] and section.pairs[0].ece.n == 4
    assert section.figure["data"][0]["name"] == "perfect calibration" and len(section.figure["data"]) == 5
    assert section.title == FIGURE_TITLE and CALIBRATION_FIGURE_KEY == "calibration_reliability"
    json.dumps(section.figure, allow_nan=False)


def _hand_section() -> CalibrationSection:
    records = [
        record(i, f"so {p}", str(p), y, one_token_per_char(f"so {p}", math.log(c) / len(str(p))))
        for i, (c, y) in enumerate(HAND)
        for p in [10 + i]
    ]
    a = run_calibration("gsm8k", "sft", records, KEY, True, "vllm", verbalized=False)
    b = run_calibration("gsm8k", "dpo <x>", records[:6], KEY, False, "openai", verbalized=False)
    none = run_calibration("alice", "dpo <x>", [record(0, "x", "x", 1.0)], KEY, False, "openai", False)
    ids = {ANSWER: {f"s{i}": pt for i, pt in enumerate(HAND)}}
    pairs = paired_calibration("gsm8k", "sft", "dpo <x>", ids, ids)
    rows = (a, b, none)
    return CalibrationSection(rows, pairs, ("alice: sft -> dpo <x>: nothing",), reliability_figure(rows))


def test_partials_render_the_hand_numbers() -> None:
    section = _hand_section()
    stats = section.rows[0].sources[0].stats
    assert stats.ece == pytest.approx(0.225) and stats.brier == pytest.approx(0.275)  # the answer tokens' p
    markdown = render("_calibration.md", {"calibration": section})
    assert "| gsm8k | sft | answer tokens | 8 | 0 | 100.0% | 62.5% | 67.5% | 0.225 | [" in markdown
    assert "| 0.275 | [" in markdown and "| 0.633 |" in markdown
    assert "| 75.0% / 66.7% | 50.0% / 75.0% | 50.0% / 75.0% | 75.0% (0.950) | 71.4% (0.150) |" in markdown
    assert (
        "| gsm8k | sft | answer tokens | - | 50% (2) | - | - | - | - | 50% (2) | - | - | 75% (4) |"
        in markdown
    )
    assert (
        "dpo &lt;x&gt;" in markdown
        and "- alice / dpo &lt;x&gt;: no token log-probabilities: run with" in markdown
    )
    assert (
        "| gsm8k | sft -> dpo &lt;x&gt; | answer tokens | 8 | 0.225 | 0.225 | +0.000 | [0.000, 0.000] |"
        in markdown
    )
    assert PAIRED_METHOD in markdown and "- alice: sft -&gt; dpo &lt;x&gt;: nothing" in markdown
    html = render("_calibration.html", {"calibration": section})
    assert "<td>dpo &lt;x&gt;</td>" in html and '<td class="num">0.225</td>' in html
    assert '<td class="num">75.0% / 66.7%</td>' in html and '<td class="num">75% (4)</td>' in html
    assert "<li>alice / dpo &lt;x&gt;: no token log-probabilities: run with --logprobs</li>" in html
    assert '<td class="num">+0.000</td>' in html
