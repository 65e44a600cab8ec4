"""Which per-sample value stands behind a run's metric: the one rule every reader shares (the gate,
reports, the leaderboard's sample browser) and the safety suite computes by.

Most metrics are the mean of a per-sample value of the same name. The safety score is not: it is the
mean, over the prompt subsets (HarmBench, XSTest unsafe, XSTest safe), of each subset's rate of safe
outcomes, so it is compared through the per-sample `safe_outcome`, stratified by `subset`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from harness.runs.store import SampleRecord

SAFETY_SCORE, SAFE_OUTCOME, SAFETY_STRATUM = "safety_score", "safe_outcome", "subset"

# Metrics that are a mean of per-stratum means of another per-sample value: metric -> (value, stratum).
STRATIFIED: Mapping[str, tuple[str, str]] = {SAFETY_SCORE: (SAFE_OUTCOME, SAFETY_STRATUM)}


def score_key(metric: str, records: Sequence[SampleRecord]) -> tuple[str, str | None] | None:
    """(per-sample key, stratum key) for a metric, or None when the samples hold no such value."""
    if records and all(metric in r.scores for r in records):
        return metric, None
    mapped = STRATIFIED.get(metric)
    if mapped and records and all(mapped[0] in r.scores for r in records):
        return mapped
    return None


def per_sample_key(metric: str, keys: Mapping[str, object]) -> str:
    """The per-sample value shown for `metric` when one sample's scores are `keys` (the first key when
    neither the metric nor its stratified value is there)."""
    if metric in keys:
        return metric
    mapped = STRATIFIED.get(metric)
    if mapped is not None and mapped[0] in keys:
        return mapped[0]
    return sorted(keys)[0] if keys else metric


def stratum_of(metric: str) -> str | None:
    """The field a stratified metric averages over (None for a plain mean)."""
    mapped = STRATIFIED.get(metric)
    return None if mapped is None else mapped[1]
