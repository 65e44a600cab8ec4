"""The report's efficiency section (reports/efficiency.py): every number checked on values computed by
hand, replay runs (never timed) reported as unmeasured, the paired comparison of two checkpoints, and
the partial templates rendered with the report's Jinja environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import harness
from harness.runs.catalog import build_catalog
from harness.runs.store import SampleRecord
from harness.types import Completion
from reports.efficiency import (
    EfficiencySection,
    efficiency_section,
    latency_by_id,
    paired_efficiency,
    paired_stat,
    percentile,
    run_efficiency,
)
from reports.render import render
from tests.conftest import DATA_DIR

KEY = "exact_match_flex"


def record(
    i: int,
    latency: float,
    tokens: int,
    score: float = 1.0,
    prompt: int = 5,
    cost: float = 0.0,
) -> SampleRecord:
    completion = Completion(
        texts=("x",), finish_reasons=("stop",), prompt_tokens=prompt, completion_tokens=tokens,
        latency_s=latency, cost_usd=cost,
    )  # fmt: skip
    return SampleRecord(f"s{i}", "p", "t", ("k",), (completion,), {KEY: score})


# Latencies 0.5 1 2 4 s and completion tokens 10 40 60 100 (sum 210, total time 7.5 s):
# p50 (rank 1.5) 1 + 0.5 * 1 = 1.5; p90 (rank 2.7) 2 + 0.7 * 2 = 3.4; p99 (rank 2.97) 2 + 0.97 * 2 = 3.94.
# Tokens per second per request 20 40 30 25: median (25 + 30) / 2 = 27.5; overall 210 / 7.5 = 28.
# Prompt tokens 5 7 9 100: mean 30.25, p50 (rank 1.5) 8, p95 (rank 2.85) 9 + 0.85 * 91 = 86.35.
# Scores 1 0 1 1: 3 correct, 210 / 3 = 70 tokens per correct. Cost 4 x 0.01 = 0.04 USD at 50 points:
# 0.04 / 50 = 0.0008 USD per point.
def hand_records() -> list[SampleRecord]:
    rows = [(0.5, 10, 1.0, 5), (1.0, 40, 0.0, 7), (2.0, 60, 1.0, 9), (4.0, 100, 1.0, 100)]
    return [record(i, lat, tok, score, prompt, cost=0.01) for i, (lat, tok, score, prompt) in enumerate(rows)]


def test_percentile_interpolates_between_ranks() -> None:
    values = [10.0, 1, 2, 3, 4, 5, 6, 7, 8, 9]  # unsorted on purpose
    assert percentile(values, 0.5) == pytest.approx(5.5)
    assert percentile(values, 0.9) == pytest.approx(9.1)
    assert percentile(values, 0.99) == pytest.approx(9.91)
    assert percentile([3.0], 0.99) == 3.0 and percentile([], 0.5) is None


def test_run_numbers_match_the_hand_computation() -> None:
    run = run_efficiency("gsm8k", "sft", KEY, 0.5, hand_records())
    assert (run.samples, run.requests, run.timed) == (4, 4, 4)
    assert (run.latency_p50, run.latency_p90, run.latency_p99) == pytest.approx((1.5, 3.4, 3.94))
    assert run.tokens_per_s == pytest.approx(27.5) and run.tokens_per_s_overall == pytest.approx(28.0)
    assert run.prompt_tokens is not None and run.completion_tokens is not None
    assert (run.prompt_tokens.mean, run.prompt_tokens.p50, run.prompt_tokens.p95) == pytest.approx(
        (30.25, 8.0, 86.35)
    )
    assert (run.completion_tokens.mean, run.completion_tokens.p50) == pytest.approx((52.5, 50.0))
    assert run.cost_usd == pytest.approx(0.04) and run.cost_per_point == pytest.approx(0.0008)
    assert run.correct == 3 and run.tokens_per_correct == pytest.approx(70.0)


def test_graded_scores_count_their_sum_as_correct_answers() -> None:
    rows = [(1.0, 10, 0.5), (1.0, 40, 0.25), (1.0, 60, 1.0), (1.0, 100, 0.0)]
    run = run_efficiency("mbpp", "c", KEY, 0.4375, [record(i, *row) for i, row in enumerate(rows)])
    assert run.correct == pytest.approx(1.75) and run.tokens_per_correct == pytest.approx(210 / 1.75)


def test_unknown_values_are_none_never_zero() -> None:
    # No price (every cost 0), nothing correct, a primary value of 0, no token counts, never timed.
    wrong = [record(i, 0.0, 0, score=0.0, prompt=0) for i in range(3)]
    run = run_efficiency("gsm8k", "c", KEY, 0.0, wrong)
    assert (run.timed, run.latency_p50, run.latency_p90, run.latency_p99) == (0, None, None, None)
    assert (run.tokens_per_s, run.tokens_per_s_overall) == (None, None)
    assert (run.prompt_tokens, run.completion_tokens) == (None, None)
    assert (run.cost_usd, run.cost_per_point, run.tokens_per_correct) == (None, None, None)
    priced = run_efficiency("gsm8k", "c", KEY, 0.0, [record(0, 1.0, 5, score=0.0, cost=0.5)])
    assert priced.cost_usd == 0.5 and priced.cost_per_point is None and priced.tokens_per_correct is None


def test_untimed_requests_leave_the_latency_statistics() -> None:
    # One request from the cache (latency 0) among timed ones 1 and 3 s (tokens 10 and 60: 10/s and 20/s).
    records = [record(0, 1.0, 10), record(1, 0.0, 40), record(2, 3.0, 60)]
    run = run_efficiency("gsm8k", "c", KEY, 1.0, records)
    assert (run.requests, run.timed, run.latency_p50) == (3, 2, 2.0)
    assert run.tokens_per_s == pytest.approx(15.0) and run.tokens_per_s_overall == pytest.approx(70 / 4)
    assert latency_by_id(records) == {"s0": 1.0, "s2": 3.0}


def test_paired_delta_is_the_mean_of_the_per_sample_differences() -> None:
    before = [
        record(i, lat, tok) for i, (lat, tok) in enumerate([(1.0, 10), (2.0, 20), (3.0, 30), (4.0, 40)])
    ]
    # After: 12 20 33 43 tokens (differences 2 0 3 3: mean 2), latencies 0.5 2 2 3 (differences -0.5 0 -1 -1:
    # mean -0.625); means 25 -> 27 tokens (ratio 1.08), 2.5 -> 1.875 s (ratio 0.75). s9 has no partner.
    after = [record(i, lat, tok) for i, (lat, tok) in enumerate([(0.5, 12), (2.0, 20), (2.0, 33), (3.0, 43)])]
    after.append(record(9, 1.0, 1000))
    paired = paired_efficiency("gsm8k", "sft", "dpo", before, after)
    tokens, latency = paired.completion_tokens, paired.latency
    assert tokens is not None and latency is not None
    assert (tokens.n, tokens.mean_a, tokens.mean_b, tokens.delta) == (4, 25.0, 27.0, 2.0)
    assert tokens.ratio == pytest.approx(1.08) and tokens.method == "t"
    assert tokens.ci_low is not None and tokens.ci_high is not None and tokens.ci_low < 2.0 < tokens.ci_high
    assert latency.delta == pytest.approx(-0.625) and latency.ratio == pytest.approx(0.75)


def test_paired_bootstrap_from_thirty_pairs() -> None:
    a = {f"s{i}": float(i % 7) for i in range(40)}
    b = {f"s{i}": float(i % 7 + i % 3) for i in range(40)}
    stat = paired_stat(a, b)
    assert stat is not None and stat.method == "bootstrap" and stat.n == 40
    assert stat.delta == pytest.approx(sum(i % 3 for i in range(40)) / 40)
    assert stat.ci_low is not None and stat.ci_high is not None and stat.ci_low < stat.delta < stat.ci_high
    assert paired_stat({"x": 1.0}, {"y": 1.0}) is None


def _replay(path: Path, rows: list[tuple[str, int]]) -> Path:
    lines = [
        json.dumps({"sample_id": f"gsm8k-test-{i:04d}", "text": text, "completion_tokens": tokens})
        for i, (text, tokens) in enumerate(rows)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_replay_runs_are_unmeasured_and_pair_on_tokens(tmp_path: Path) -> None:
    # GSM8K's first four answers are 18, 3, 70000, 540: two right in each file.
    sft = _replay(tmp_path / "sft.jsonl", [("#### 18", 10), ("#### 3", 20), ("#### 1", 30), ("#### 2", 40)])
    dpo = _replay(
        tmp_path / "dpo.jsonl", [("#### 18", 12), ("#### 4", 20), ("#### 70000", 33), ("#### 2", 40)]
    )
    runs = tmp_path / "runs"
    for replay in (sft, dpo):
        harness.evaluate(f"replay:{replay}", "gsm8k", limit=4, runs=runs, data_dir=DATA_DIR, progress=False)
    catalog = build_catalog(list(harness.load_runs(runs)))
    order = sorted(catalog.checkpoints, key=lambda c: c.reference.endswith("dpo.jsonl"))
    section = efficiency_section(order, lambda run: run.samples())
    first, second = section.rows
    assert (first.checkpoint, second.checkpoint) == (order[0].label, order[1].label)
    for row in section.rows:  # replay: never timed, no price
        assert (row.timed, row.latency_p50, row.tokens_per_s, row.cost_usd) == (0, None, None, None)
        assert row.primary == KEY and row.primary_value == 0.5 and row.correct == 2
    assert first.tokens_per_correct == 50.0 and second.tokens_per_correct == pytest.approx(105 / 2)
    (pair,) = section.pairs
    assert pair.latency is None and pair.completion_tokens is not None
    assert pair.completion_tokens.delta == pytest.approx((2 + 0 + 3 + 0) / 4)
    assert pair.completion_tokens.ratio == pytest.approx(26.25 / 25)
    text = render("_efficiency.md", {"efficiency": section})
    assert "| 4 | 0 of 4 | unmeasured |" in text and "| 25.0 / 25.0 / 38.5 |" in text  # 10 20 30 40 tokens
    assert text.count("| unmeasured | unmeasured | unmeasured | unmeasured | unmeasured |") == 2
    assert "| completion tokens | 4 | 25.0 | 26.2 | +1.2 |" in text and "| no price |" in text


def test_partials_render_measured_numbers() -> None:
    a = hand_records()
    b = [record(i, 2 * r.completions[0].latency_s, 10) for i, r in enumerate(a)]
    rows = (run_efficiency("gsm8k", "sft", KEY, 0.5, a), run_efficiency("gsm8k", "dpo <x>", KEY, 0.75, b))
    section = EfficiencySection(rows, (paired_efficiency("gsm8k", "sft", "dpo <x>", a, b),))
    markdown = render("_efficiency.md", {"efficiency": section})
    assert (
        "| gsm8k | sft | 4 | 4 of 4 | 1.500 | 3.400 | 3.940 | 27.5 | 28.0 | 30.2 / 8.0 / 86.3 |" in markdown
    )
    assert "| 0.0400 | 0.0008 | 70.0 |" in markdown and "dpo &lt;x&gt;" in markdown
    # Latency per sample doubled: 1.875 -> 3.75 s, +1.875, ratio 2.
    assert "| latency (s) | 4 | 1.875 | 3.750 | +1.875 |" in markdown and "| 2.00x |" in markdown
    html = render("_efficiency.html", {"efficiency": section})
    assert "<td>dpo &lt;x&gt;</td>" in html and '<td class="num">1.500</td>' in html
    assert '<td class="num">+1.875</td>' in html
