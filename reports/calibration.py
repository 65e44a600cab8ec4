"""The report's calibration section: how well a model's confidence predicts that its answer is right
(issue 21, item 2). Formulas (bins, ECE, Brier, AUROC, abstention, bootstrap intervals) are in
reports.calibration_stats.

Which runs: suites with a scalar answer, the `extracted` answer of the primary metric in every
SampleRecord (ANSWER_KEYS: GSM8K's "flex" number, Alice's "boxed" content). Correctness is the primary
per-sample score (0 or 1). Every value is read from the stored records; nothing is re-generated.

Confidence of a sample, up to three kinds (each a row when measurable):
- "answer tokens": the probability the model gave its extracted answer, exp(sum of the log-probabilities
  of the tokens overlapping the characters of the answer's LAST occurrence in the raw response text,
  `completions[0].texts[0]`, which in reasoning runs holds the thinking too). Token i covers the
  characters [offsets[i], offsets[i+1]) (the last token: up to the end of the text); a token straddling
  the answer's boundary counts, and an empty token (a piece of a multi-byte character, sharing its offset
  with the next) counts when its offset lies inside the answer. In a verbalized run the search stops
  before the "Confidence: N%" line (its number is not the answer). The answer is searched literally:
  GSM8K's number is normalized ("1,234" -> "1234"), so an answer written "1,234" is not found. A sample
  has no such confidence when its text has no logprobs, it has no extracted answer, or the answer is
  not in the text; these are counted ("without confidence", with the reasons).
- "sequence": exp(mean token log-probability) of the whole first response (a length-normalized
  likelihood; no answer needed).
- "verbalized" (runs whose manifest has suite_settings.confidence == "verbalized"): the confidence the
  response states, harness.confidence.parse_verbalized(raw text); the share that stated one is shown.

A run none of whose records has logprobs says so in words, never with numbers: "no token
log-probabilities: run with --logprobs" when the run did not ask for them (manifest generation.logprobs
false), else "the backend (ADAPTER) returned none".

Paired: for consecutive checkpoints of the report's order, per suite both ran and per confidence kind
both measured, the ECE and Brier differences (later minus earlier) on the samples both runs have with
that confidence, with a paired bootstrap interval (calibration_stats.PAIRED_METHOD).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from harness.confidence import parse_verbalized, strip_verbalized
from harness.runs.catalog import SUITE_ORDER, CheckpointView, RunView
from harness.runs.scores import score_key
from harness.runs.store import SampleRecord
from harness.types import TokenLogprobs
from reports.calibration_stats import (
    BOOTSTRAP_METHOD,
    COVERAGES,
    PAIRED_METHOD,
    THRESHOLDS,
    CalibrationStats,
    PairedDifference,
    Point,
    calibration_stats,
    paired_differences,
)
from reports.figure_parts import Figure, base_layout, empty_figure, escape, finish_figure

SamplesOf = Callable[[RunView], Sequence[SampleRecord]]

# suite -> the Score.extracted key holding the primary metric's answer.
ANSWER_KEYS: Mapping[str, str] = {"gsm8k": "flex", "alice": "boxed", "alice-synth": "boxed"}
ANSWER, SEQUENCE, VERBALIZED = "answer tokens", "sequence", "verbalized"
SOURCES = (ANSWER, SEQUENCE, VERBALIZED)
CALIBRATION_FIGURE_KEY = "calibration_reliability"
FIGURE_TITLE = "Reliability: accuracy vs confidence (10 equal-width bins)"

# Why a sample has no answer-token confidence.
NO_LOGPROBS, NO_ANSWER, NOT_IN_TEXT = "no logprobs", "no extracted answer", "answer not in the text"


def answer_span(text: str, answer: str) -> tuple[int, int] | None:
    """[start, end) of the answer's last occurrence in the text; None when absent (or empty)."""
    if not answer:
        return None
    start = text.rfind(answer)
    return None if start < 0 else (start, start + len(answer))


def span_logprob(tokens: TokenLogprobs, text_length: int, start: int, end: int) -> float | None:
    """Sum of the log-probabilities of the tokens overlapping characters [start, end) (module doc);
    None when no token does."""
    offsets = tokens.offsets
    total, found = 0.0, False
    for i, (lp, at) in enumerate(zip(tokens.logprobs, offsets, strict=True)):
        until = offsets[i + 1] if i + 1 < len(offsets) else text_length
        until = max(until, at + 1)  # an empty token stands for the character at its offset
        if at < end and until > start:
            total += lp
            found = True
    return total if found else None


def sequence_confidence(tokens: TokenLogprobs | None) -> float | None:
    """exp(mean token log-probability); None without tokens."""
    if tokens is None or not tokens.logprobs:
        return None
    return math.exp(sum(tokens.logprobs) / len(tokens.logprobs))


def first_text(record: SampleRecord) -> tuple[str, TokenLogprobs | None]:
    if not record.completions or not record.completions[0].texts:
        return "", None
    completion = record.completions[0]
    return completion.texts[0], completion.logprobs[0] if completion.logprobs else None


def answer_confidence(
    text: str, answer: str | None, tokens: TokenLogprobs | None, verbalized: bool = False
) -> float | str:
    """The answer-token confidence, or why there is none (NO_LOGPROBS, NO_ANSWER, NOT_IN_TEXT)."""
    if tokens is None:
        return NO_LOGPROBS
    if not answer:
        return NO_ANSWER
    searched = strip_verbalized(text) if verbalized else text  # a prefix: offsets still hold
    span = answer_span(searched, answer)
    logprob = None if span is None else span_logprob(tokens, len(text), *span)
    return NOT_IN_TEXT if logprob is None else math.exp(logprob)


@dataclass(frozen=True)
class SourceCalibration:
    source: str  # ANSWER, SEQUENCE or VERBALIZED
    with_confidence: int
    without_confidence: int
    without_reasons: str  # e.g. "2 answer not in the text, 1 no extracted answer"; "" when none
    stats: CalibrationStats

    @property
    def share(self) -> float:
        """Of the run's samples, the share with this confidence (verbalized: that stated one)."""
        return self.with_confidence / (self.with_confidence + self.without_confidence)


@dataclass(frozen=True)
class RunCalibration:
    suite: str
    checkpoint: str
    samples: int
    correct_metric: str  # the per-sample score that counts as correctness
    sources: tuple[SourceCalibration, ...]  # only the measurable ones
    notes: tuple[str, ...]  # why a confidence kind is missing, in words


def no_logprobs_reason(asked: bool, adapter: str) -> str:
    why = f"the backend ({adapter}) returned none" if asked else "run with --logprobs"
    return f"no token log-probabilities: {why}"


def _reasons(missing: Mapping[str, int]) -> str:
    return ", ".join(f"{count} {why}" for why, count in sorted(missing.items(), key=lambda kv: -kv[1]))


def confidence_points(
    records: Sequence[SampleRecord], answer_key: str, correct_key: str, verbalized: bool
) -> tuple[dict[str, dict[str, Point]], dict[str, dict[str, int]]]:
    """Per confidence kind: sample id -> (confidence, correct), and the reasons samples have none."""
    points: dict[str, dict[str, Point]] = {s: {} for s in SOURCES}
    missing: dict[str, dict[str, int]] = {s: {} for s in SOURCES}

    def put(source: str, record: SampleRecord, value: float | str | None, why: str = "") -> None:
        if isinstance(value, float):
            points[source][record.id] = (min(1.0, max(0.0, value)), float(record.scores[correct_key]))
        else:
            reason = value if isinstance(value, str) else why
            missing[source][reason] = missing[source].get(reason, 0) + 1

    for record in records:
        text, tokens = first_text(record)
        put(ANSWER, record, answer_confidence(text, record.extracted.get(answer_key), tokens, verbalized))
        put(SEQUENCE, record, sequence_confidence(tokens), NO_LOGPROBS)
        if verbalized:
            put(VERBALIZED, record, parse_verbalized(text), "stated none")
    return points, missing


def run_calibration(
    suite: str,
    checkpoint: str,
    records: Sequence[SampleRecord],
    primary: str,
    logprobs_asked: bool,
    adapter: str,
    verbalized: bool,
) -> RunCalibration:
    """The calibration of one run's records (module doc)."""
    found = score_key(primary, records)
    key = found[0] if found is not None else primary

    def result(sources: Sequence[SourceCalibration], notes: Sequence[str]) -> RunCalibration:
        return RunCalibration(suite, checkpoint, len(records), key, tuple(sources), tuple(notes))

    if not records:
        return result([], ["no samples"])
    if found is None:
        return result([], [f"no per-sample '{primary}' score in the records: nothing to calibrate against"])
    if any(r.scores[key] not in (0.0, 1.0) for r in records):
        return result([], [f"'{key}' is not a 0/1 score: calibration needs right or wrong answers"])
    points, missing = confidence_points(records, ANSWER_KEYS[suite], key, verbalized)
    notes: list[str] = []
    any_logprobs = any(first_text(r)[1] is not None for r in records)
    if not any_logprobs:
        notes.append(no_logprobs_reason(logprobs_asked, adapter))
    elif not points[ANSWER]:
        notes.append(f"no answer-token confidence: {_reasons(missing[ANSWER])}")
    if verbalized and not points[VERBALIZED]:
        notes.append(f"verbalized confidence asked, but none of the {len(records)} responses stated one")
    sources = []
    for source in SOURCES:
        stats = calibration_stats(list(points[source].values()))
        if stats is not None:
            count = sum(missing[source].values())
            sources.append(SourceCalibration(source, stats.n, count, _reasons(missing[source]), stats))
    return result(sources, notes)


def of_run(checkpoint: str, run: RunView, records: Sequence[SampleRecord]) -> RunCalibration:
    manifest = run.manifest
    verbalized = manifest.suite_settings.get("confidence") == "verbalized"
    return run_calibration(
        run.suite,
        checkpoint,
        records,
        run.primary,
        manifest.generation.logprobs,
        manifest.adapter,
        verbalized,
    )


@dataclass(frozen=True)
class PairedCalibration:
    suite: str
    a: str  # checkpoint labels: b - a
    b: str
    source: str
    ece: PairedDifference
    brier: PairedDifference
    method: str = PAIRED_METHOD


def paired_calibration(
    suite: str,
    a: str,
    b: str,
    points_a: Mapping[str, Mapping[str, Point]],
    points_b: Mapping[str, Mapping[str, Point]],
) -> tuple[PairedCalibration, ...]:
    """Per confidence kind, ECE and Brier of b minus a on the ids both have with that confidence."""
    pairs = []
    for source in SOURCES:
        side_a, side_b = points_a.get(source, {}), points_b.get(source, {})
        ids = [i for i in side_a if i in side_b]
        found = paired_differences([side_a[i] for i in ids], [side_b[i] for i in ids])
        if found is not None:
            pairs.append(PairedCalibration(suite, a, b, source, *found))
    return tuple(pairs)


@dataclass(frozen=True)
class CalibrationSection:
    rows: tuple[
        RunCalibration, ...
    ]  # every scalar-answer run, per suite then checkpoint in the report's order
    pairs: tuple[PairedCalibration, ...]  # consecutive checkpoints, per suite and confidence kind
    pair_notes: tuple[str, ...]  # consecutive checkpoints on a common suite with nothing to pair
    figure: Figure

    thresholds: tuple[float, ...] = THRESHOLDS  # the abstention table's columns
    coverages: tuple[float, ...] = COVERAGES
    method: str = BOOTSTRAP_METHOD  # how the runs' 95% intervals were made

    @property
    def run_notes(self) -> tuple[tuple[str, str, str], ...]:
        """(suite, checkpoint, sentence) for every confidence kind a run lacks."""
        return tuple((r.suite, r.checkpoint, note) for r in self.rows for note in r.notes)

    @property
    def measured(self) -> bool:
        return any(r.sources for r in self.rows)

    @property
    def title(self) -> str:
        return str(self.figure["layout"]["title"]["text"])


def _points_of(run: RunView, records: Sequence[SampleRecord]) -> dict[str, dict[str, Point]]:
    found = score_key(run.primary, records)
    if found is None or any(r.scores[found[0]] not in (0.0, 1.0) for r in records):
        return {}
    verbalized = run.manifest.suite_settings.get("confidence") == "verbalized"
    return confidence_points(records, ANSWER_KEYS[run.suite], found[0], verbalized)[0]


def calibration_section(order: Sequence[CheckpointView], samples: SamplesOf) -> CalibrationSection:
    """Rows per (scalar-answer suite, checkpoint) and the paired comparison of each consecutive pair of
    checkpoints (order[i], order[i + 1]) on each such suite both ran."""
    suites: list[str] = []
    for checkpoint in order:
        suites += [s for s in checkpoint.runs if s in ANSWER_KEYS and s not in suites]
    suites.sort(key=lambda s: (SUITE_ORDER.index(s) if s in SUITE_ORDER else len(SUITE_ORDER), s))
    rows = tuple(of_run(c.label, c.runs[s], samples(c.runs[s])) for s in suites for c in order if s in c.runs)
    pairs: list[PairedCalibration] = []
    pair_notes: list[str] = []
    for a, b in pairwise(order):
        for s in suites:
            if s not in a.runs or s not in b.runs:
                continue
            found = paired_calibration(
                s,
                a.label,
                b.label,
                _points_of(a.runs[s], samples(a.runs[s])),
                _points_of(b.runs[s], samples(b.runs[s])),
            )
            pairs += found
            if not found:
                pair_notes.append(f"{s}: {a.label} -> {b.label}: no sample with a confidence in both runs")
    return CalibrationSection(rows, tuple(pairs), tuple(pair_notes), reliability_figure(rows))


_DASH = {ANSWER: "solid", SEQUENCE: "dot", VERBALIZED: "dash"}


def reliability_figure(rows: Sequence[RunCalibration]) -> Figure:
    """Per run and confidence kind, accuracy against mean confidence of each non-empty bin (marker size
    grows with the bin's count), and the diagonal of perfect calibration."""
    data: list[dict[str, Any]] = []
    for row in rows:
        for source in row.sources:
            bins = [b for b in source.stats.bins if b.count]
            name = f"{row.suite} / {row.checkpoint}: {source.source}"
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": escape(name),
                    "x": [b.confidence for b in bins],
                    "y": [b.accuracy for b in bins],
                    "marker": {"size": [6 + 14 * math.sqrt(b.count / source.stats.n) for b in bins]},
                    "line": {"dash": _DASH[source.source]},
                    "hovertext": [
                        f"<b>{escape(name)}</b><br>bin [{b.low:.1f}, {b.high:.1f}): {b.count} samples"
                        f"<br>mean confidence {b.confidence:.3f}, accuracy {b.accuracy:.3f}"
                        f"<br>ECE {source.stats.ece:.3f}"
                        for b in bins
                    ],
                    "hovertemplate": "%{hovertext}<extra></extra>",
                }
            )
    if not data:
        return empty_figure(
            FIGURE_TITLE,
            "needs a GSM8K or Alice run with token log-probabilities (harness eval --logprobs) or "
            "verbalized confidence",
        )
    diagonal = {
        "type": "scatter", "mode": "lines", "name": "perfect calibration", "x": [0, 1], "y": [0, 1],
        "line": {"dash": "dash", "color": "rgba(120,120,120,0.6)"}, "hoverinfo": "skip",
    }  # fmt: skip
    layout = base_layout(
        FIGURE_TITLE,
        xaxis={"title": {"text": "mean confidence in the bin"}, "range": [0, 1.02]},
        yaxis={"title": {"text": "accuracy in the bin"}, "range": [0, 1.02]},
    )
    return finish_figure({"data": [diagonal, *data], "layout": layout})
