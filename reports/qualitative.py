"""A report's comparison of two checkpoints: paired deltas per suite and qualitative wins/losses.

Both come from one `reports.compare.compare_checkpoints` call, so the examples are exactly the samples
behind the delta: a *win* is a sample the second checkpoint (the child) scores higher on than the first
(the parent), a *loss* the reverse, both on the suite's per-sample primary score (safety: `safe_outcome`):
that per-sample value is a sample's verdict, the same one the gate pairs (harness.runs.scores.score_key).
A suite's other headline metrics can move while the primary does not (IFEval: strict accuracy rises,
loose stays), so when samples kept their primary value but changed another per-sample value, the changes
are counted per value and those samples are shown too (a change on a win or loss is shown with it). Examples keep the order of the run's samples file,
so a report is reproducible; long texts are clipped for display (the full text stays in samples.jsonl).
A reasoning run's side shows its answer (what was scored) and its thinking apart, clipped shorter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harness.reasoning import ReasonedText
from harness.runs.catalog import Catalog, CheckpointView, RunView
from harness.runs.scores import score_key
from harness.runs.store import SampleRecord
from harness.stats import json_number
from reports.compare import FlippedExample, SuiteComparison, compare_checkpoints

MAX_CHARS = 2000
MAX_THINKING_CHARS = 1000  # of a reasoning run's thinking (the report collapses it)
NO_ANSWER = "(no answer: the response ended inside its reasoning, so it scored 0)"


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
    text: str  # the response; a reasoning run's answer
    truncated: bool
    score: float
    verdict: str
    extracted: str
    thinking: str | None = None  # a reasoning run's thinking, clipped to MAX_THINKING_CHARS
    thinking_chars: int = 0  # its whole length


def _side(text: str, parts: tuple[ReasonedText, ...], score: float, verdict: str, extracted: str) -> Side:
    """One checkpoint's response: the first, split into thinking and answer when the run had reasoning."""
    if not parts:
        clipped, cut = _clip(text)
        return Side(clipped, cut, score, verdict, extracted)
    first = parts[0]
    answer, cut = _clip(NO_ANSWER if first.answer is None else first.answer)
    thinking = first.reasoning[:MAX_THINKING_CHARS]
    return Side(answer, cut, score, verdict, extracted, thinking, len(first.reasoning))


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
class ValueChange:
    """How many common samples changed their per-sample value of one of the suite's other metrics."""

    metric: str
    key: str  # the per-sample value (IFEval: prompt_level_strict_acc, inst_level_loose_acc, ...)
    n_up: int
    n_down: int
    n_primary_unchanged: int  # ... of which the primary's wins and losses do not show


@dataclass(frozen=True)
class SuiteExamples:
    suite: str
    key: str  # the per-sample score compared
    paired: int
    wins: tuple[Example, ...]  # shown
    losses: tuple[Example, ...]
    n_wins: int  # all of them, shown or not
    n_losses: int
    metric: str = ""  # the primary metric whose per-sample value `key` is
    others: tuple[ValueChange, ...] = ()  # other metrics' per-sample values that changed
    changed: tuple[Example, ...] = ()  # shown: samples with such a change and the primary value unchanged
    n_other_only: int = 0  # all such samples, shown or not

    @property
    def n_changed(self) -> int:
        return self.n_wins + self.n_losses


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
    return Example(
        suite=suite,
        sample_id=flip.sample_id,
        prompt=prompt,
        prompt_truncated=prompt_cut,
        target=flip.target[:MAX_CHARS],
        a=_side(flip.response_a, flip.parts_a, flip.score_a, flip.verdict_a, _extracted(flip.extracted_a)),
        b=_side(flip.response_b, flip.parts_b, flip.score_b, flip.verdict_b, _extracted(flip.extracted_b)),
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


def _values_text(keys: list[str], record: SampleRecord) -> str:
    return ", ".join(f"{key} {record.scores[key]:.3g}" for key in keys)


def _record_example(suite: str, keys: list[str], ra: SampleRecord, rb: SampleRecord) -> Example:
    def side(record: SampleRecord) -> Side:
        texts = record.completions[0].texts if record.completions else ()
        score = record.scores[keys[0]]
        values = _values_text(keys, record)
        return _side(texts[0] if texts else "", record.reasoning, score, values, _extracted(record.extracted))

    prompt, prompt_cut = _clip(ra.prompt)
    return Example(suite, ra.id, prompt, prompt_cut, ra.target[:MAX_CHARS], side(ra), side(rb))


def other_changes(
    run_a: RunView, run_b: RunView, primary_key: str, limit: int
) -> tuple[tuple[ValueChange, ...], tuple[Example, ...], int]:
    """Per other top-level metric of the suite with per-sample values in both runs (each per-sample key
    once), the common samples whose value changed. Then the samples the primary's wins and losses do
    not show (their primary value did not change) with such a change: up to `limit` of them, each once
    with the values that changed; and how many there are."""
    records_a, records_b = run_a.samples(), run_b.samples()
    by_b = {r.id: r for r in records_b}
    common = [(r, by_b[r.id]) for r in records_a if r.id in by_b]
    keys: list[tuple[str, str]] = []  # (metric, per-sample key)
    for metric in run_a.metrics:
        if "/" in metric or metric == run_a.primary:
            continue
        found = score_key(metric, [a for a, _ in common]), score_key(metric, [b for _, b in common])
        taken = {primary_key, *(key for _, key in keys)}
        if found[0] is not None and found[0] == found[1] and found[0][0] not in taken:
            keys.append((metric, found[0][0]))
    counts: list[ValueChange] = []
    changed_keys: dict[str, list[str]] = {}  # sample id -> the keys that changed
    for metric, key in keys:
        changed = [(a, b) for a, b in common if a.scores[key] != b.scores[key]]
        for a, _ in changed:
            changed_keys.setdefault(a.id, []).append(key)
        if changed:
            counts.append(
                ValueChange(
                    metric=metric,
                    key=key,
                    n_up=sum(b.scores[key] > a.scores[key] for a, b in changed),
                    n_down=sum(b.scores[key] < a.scores[key] for a, b in changed),
                    n_primary_unchanged=sum(
                        a.scores[primary_key] == b.scores[primary_key] for a, b in changed
                    ),
                )
            )
    hidden = [
        (a, b) for a, b in common if a.id in changed_keys and a.scores[primary_key] == b.scores[primary_key]
    ]
    shown = tuple(_record_example(run_a.suite, changed_keys[a.id], a, b) for a, b in hidden[:limit])
    return tuple(counts), shown, len(hidden)


def _examples(s: SuiteComparison, limit: int, a: CheckpointView, b: CheckpointView) -> SuiteExamples:
    wins = [f for f in s.flips if f.direction == "improved"]
    losses = [f for f in s.flips if f.direction == "regressed"]
    run_a, run_b = a.runs.get(s.suite), b.runs.get(s.suite)
    others, changed, n_other_only = (
        ((), (), 0) if run_a is None or run_b is None else other_changes(run_a, run_b, s.score_key, limit)
    )
    return SuiteExamples(
        suite=s.suite,
        key=s.score_key,
        paired=s.delta.n,
        wins=tuple(_example(s.suite, f) for f in wins[:limit]),
        losses=tuple(_example(s.suite, f) for f in losses[:limit]),
        n_wins=len(wins),
        n_losses=len(losses),
        metric=s.metric,
        others=others,
        changed=changed,
        n_other_only=n_other_only,
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
    return Pair(a, b, reason, tuple(rows), tuple(_examples(s, limit, a, b) for s in comparison.suites))
