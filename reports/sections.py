"""The numeric sections of a report: metric tables, response lengths, refusal statistics.

Everything is read from the runs' metrics files and per-sample records; nothing is recomputed with a
model. Lengths count characters of every response text; completion tokens are what the adapter reported
per request (adapters that report none, such as `replay:`, show n/a), thinking included. Reasoning runs
add what thinking cost (metrics.json's "reasoning" block: harness.reasoning_stats) beside each suite.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harness.reasoning_stats import ReasoningSummary, TokenStats
from harness.runs.catalog import Catalog, CheckpointView, RunView
from harness.runs.store import SampleRecord
from harness.types import Metric

SAFETY_RATES = (
    ("safety_score", "safety score (higher is safer)"),
    ("harmbench_refusal_rate", "harmful refusal: HarmBench refused"),
    ("xstest_unsafe_refusal_rate", "harmful refusal: XSTest unsafe refused"),
    ("xstest_safe_over_refusal_rate", "over-refusal: XSTest safe refused (lower is better)"),
    ("judge_error_rate", "judge errors"),
)
CUT_REASON = "length"  # the OpenAI finish_reason every adapter uses for "stopped at max_tokens"


@dataclass(frozen=True)
class MetricRow:
    name: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    primary: bool = False

    @classmethod
    def of(cls, name: str, metric: Metric, primary: bool = False) -> MetricRow:
        return cls(name, metric.value, metric.ci_low, metric.ci_high, metric.n, primary)


@dataclass(frozen=True)
class SuiteTable:
    suite: str
    version: str
    settings_hash: str
    status: str
    comparable: bool  # run under the settings most checkpoints of the report used
    judge: str | None
    run_dir: str
    rows: tuple[MetricRow, ...]  # top-level metrics, primary first
    breakdown: tuple[MetricRow, ...]  # per-category metrics (names with '/')
    reasoning: ReasoningSummary | None = None  # reasoning runs: ended inside reasoning, thinking lengths


@dataclass(frozen=True)
class CheckpointTables:
    checkpoint: CheckpointView
    suites: tuple[SuiteTable, ...]


def suite_table(run: RunView, catalog: Catalog) -> SuiteTable:
    rows = [MetricRow.of(name, m, name == run.primary) for name, m in run.metrics.items() if "/" not in name]
    rows.sort(key=lambda r: not r.primary)
    breakdown = [MetricRow.of(name, m) for name, m in run.metrics.items() if "/" in name]
    manifest = run.manifest
    return SuiteTable(
        suite=run.suite,
        version=manifest.suite_version,
        settings_hash=manifest.settings_hash,
        status=manifest.status,
        comparable=catalog.comparable(run),
        judge=run.judge,
        run_dir=str(run.run_dir),
        rows=tuple(rows),
        breakdown=tuple(breakdown),
        reasoning=run.reasoning,
    )


def reasoning_note(summary: ReasoningSummary | None) -> str:
    """A short note for a summary cell: 'ended inside reasoning 33.3%; thinking 812 tokens (mean)'."""
    if summary is None:
        return ""
    rate = summary.ended_inside.value
    share = "-" if rate is None else f"{100 * rate:.1f}%"
    thinking, unit = reasoning_lengths(summary)
    mean = "-" if thinking.mean is None else f"{thinking.mean:g}"
    return f"ended inside reasoning {share}; thinking {mean} {unit} (mean)"


def reasoning_lengths(summary: ReasoningSummary) -> tuple[TokenStats, str]:
    """Thinking lengths in tokens, or in characters when the backend counted no tokens (as describe())."""
    if summary.reasoning_tokens.mean or summary.answer_tokens.mean:
        return summary.reasoning_tokens, "tokens"
    return summary.reasoning_chars, "characters"


def metric_tables(order: Sequence[CheckpointView], catalog: Catalog) -> list[CheckpointTables]:
    suites = catalog.suites()
    return [
        CheckpointTables(c, tuple(suite_table(c.runs[s], catalog) for s in suites if s in c.runs))
        for c in order
    ]


@dataclass(frozen=True)
class LengthRow:
    checkpoint: str
    suite: str
    responses: int
    mean_chars: float | None
    median_chars: float | None
    mean_tokens: float | None  # None: the adapter reported no token counts
    median_tokens: float | None
    cut: int  # responses that stopped at max_tokens
    max_tokens: int

    @property
    def cut_share(self) -> float | None:
        return self.cut / self.responses if self.responses else None


def length_row(label: str, run: RunView, records: Sequence[SampleRecord]) -> LengthRow:
    chars = [len(text) for r in records for c in r.completions for text in c.texts]
    tokens = [c.completion_tokens / max(1, len(c.texts)) for r in records for c in r.completions]
    reported = any(t > 0 for t in tokens)
    cut = sum(reason == CUT_REASON for r in records for c in r.completions for reason in c.finish_reasons)
    return LengthRow(
        checkpoint=label,
        suite=run.suite,
        responses=len(chars),
        mean_chars=statistics.fmean(chars) if chars else None,
        median_chars=statistics.median(chars) if chars else None,
        mean_tokens=statistics.fmean(tokens) if reported else None,
        median_tokens=statistics.median(tokens) if reported else None,
        cut=cut,
        max_tokens=run.manifest.generation.max_tokens,
    )


@dataclass(frozen=True)
class VerdictRow:
    sample_id: str
    subset: str
    category: str
    verdict: str  # refusal | compliance | judge_error
    expected: str  # refusal | compliance
    safe: bool


@dataclass(frozen=True)
class RefusalSection:
    checkpoint: str
    suite: str
    judge: str | None
    rates: tuple[tuple[str, MetricRow], ...]  # (description, metric)
    counts: tuple[tuple[str, Mapping[str, int]], ...]  # subset -> verdict -> count
    verdicts: tuple[VerdictRow, ...]


def _expected(subset: str) -> str:
    return "compliance" if subset == "xstest_safe" else "refusal"


def refusal_section(label: str, run: RunView, records: Sequence[SampleRecord]) -> RefusalSection:
    rates = tuple(
        (text, MetricRow.of(name, run.metrics[name])) for name, text in SAFETY_RATES if name in run.metrics
    )
    verdicts = tuple(
        VerdictRow(
            sample_id=r.id,
            subset=str(r.extracted.get("subset") or ""),
            category=str(r.extracted.get("category") or ""),
            verdict=str(r.extracted.get("verdict") or ""),
            expected=_expected(str(r.extracted.get("subset") or "")),
            safe=r.scores.get("safe_outcome", 0.0) >= 1.0,
        )
        for r in records
    )
    counts: dict[str, Counter[str]] = {}
    for row in verdicts:
        counts.setdefault(row.subset, Counter())[row.verdict] += 1
    return RefusalSection(
        checkpoint=label,
        suite=run.suite,
        judge=run.judge,
        rates=rates,
        counts=tuple((subset, dict(counter)) for subset, counter in sorted(counts.items())),
        verdicts=verdicts,
    )


def is_safety(run: RunView) -> bool:
    return run.suite.startswith("safety") or "safety_score" in run.metrics
