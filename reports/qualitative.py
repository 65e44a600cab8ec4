"""A report's comparison of two checkpoints: paired deltas per suite and qualitative wins/losses.

Both come from one `reports.compare.compare_checkpoints` call, so the examples are exactly the samples
behind the delta: a *win* is a sample the second checkpoint (the child) scores higher on than the first
(the parent), a *loss* the reverse, both on the suite's per-sample primary score (safety: `safe_outcome`).
Examples keep the order of the run's samples file, so a report is reproducible; long texts are clipped
for display (the full text stays in samples.jsonl).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harness.runs.catalog import Catalog, CheckpointView
from harness.stats import json_number
from reports.compare import FlippedExample, SuiteComparison, compare_checkpoints

MAX_CHARS = 2000


@dataclass(frozen=True)
class DeltaRow:
    suite: str
    metric: str
    score_key: str
    n: int  # paired samples
    a: float | None
    b: float | None
    delta: float | None  # b - a
    ci_low: float | None
    ci_high: float | None
    test: str
    p_value: float | None
    p_adjusted: float | None  # Holm over the suites of the comparison
    note: str = ""


@dataclass(frozen=True)
class Side:
    text: str
    truncated: bool
    score: float
    verdict: str
    extracted: str


@dataclass(frozen=True)
class Example:
    suite: str
    sample_id: str
    prompt: str
    prompt_truncated: bool
    target: str
    a: Side  # the first (parent) checkpoint
    b: Side  # the second (child) checkpoint


@dataclass(frozen=True)
class SuiteExamples:
    suite: str
    key: str  # the per-sample score compared
    paired: int
    wins: tuple[Example, ...]  # shown
    losses: tuple[Example, ...]
    n_wins: int  # all of them, shown or not
    n_losses: int


@dataclass(frozen=True)
class Pair:
    a: CheckpointView  # parent / first named
    b: CheckpointView  # child / second named
    reason: str
    deltas: tuple[DeltaRow, ...]  # compared suites, then skipped ones (with a note, no numbers)
    examples: tuple[SuiteExamples, ...]


def _clip(text: str) -> tuple[str, bool]:
    return (text, False) if len(text) <= MAX_CHARS else (text[:MAX_CHARS], True)


def _extracted(values: Mapping[str, str | None]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items() if v not in (None, "") and k != "evidence")[:300]


def _example(suite: str, flip: FlippedExample) -> Example:
    prompt, prompt_cut = _clip(flip.prompt)
    text_a, cut_a = _clip(flip.response_a)
    text_b, cut_b = _clip(flip.response_b)
    return Example(
        suite=suite,
        sample_id=flip.sample_id,
        prompt=prompt,
        prompt_truncated=prompt_cut,
        target=flip.target[:MAX_CHARS],
        a=Side(text_a, cut_a, flip.score_a, flip.verdict_a, _extracted(flip.extracted_a)),
        b=Side(text_b, cut_b, flip.score_b, flip.verdict_b, _extracted(flip.extracted_b)),
    )


def _delta_row(s: SuiteComparison) -> DeltaRow:
    d = s.delta
    note = f"stratified by {s.stratified_by}" if s.stratified_by else ""
    if s.only_a or s.only_b:
        note = "; ".join(filter(None, [note, f"unpaired: {s.only_a} a-only, {s.only_b} b-only"]))
    return DeltaRow(
        suite=s.suite,
        metric=s.metric,
        score_key=s.score_key,
        n=d.n,
        a=json_number(d.mean_a),
        b=json_number(d.mean_b),
        delta=json_number(d.delta),
        ci_low=json_number(d.ci_low),
        ci_high=json_number(d.ci_high),
        test=s.test,
        p_value=json_number(s.p_value),
        p_adjusted=json_number(s.p_adjusted),
        note=note,
    )


def _examples(s: SuiteComparison, limit: int) -> SuiteExamples:
    wins = [f for f in s.flips if f.direction == "improved"]
    losses = [f for f in s.flips if f.direction == "regressed"]
    return SuiteExamples(
        suite=s.suite,
        key=s.score_key,
        paired=s.delta.n,
        wins=tuple(_example(s.suite, f) for f in wins[:limit]),
        losses=tuple(_example(s.suite, f) for f in losses[:limit]),
        n_wins=len(wins),
        n_losses=len(losses),
    )


def compare_pair(a: CheckpointView, b: CheckpointView, reason: str, catalog: Catalog, limit: int) -> Pair:
    comparison = compare_checkpoints(a, b, catalog)
    rows = [_delta_row(s) for s in comparison.suites]
    rows += [
        DeltaRow(
            s.suite, "", "", 0, None, None, None, None, None, "", None, None, f"not compared: {s.reason}"
        )
        for s in comparison.skipped
    ]
    return Pair(a, b, reason, tuple(rows), tuple(_examples(s, limit) for s in comparison.suites))
