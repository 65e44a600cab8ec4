"""Compare two checkpoints suite by suite on the samples both were scored on (the compare page, the reports).

Per suite that both checkpoints ran under the column's settings (`Catalog.comparable`, equal
comparability keys): the primary metric's per-sample scores, paired by sample id, give the paired
delta (b - a) with a 95% interval (harness.gating.paired.paired_delta: the paired bootstrap from 30
pairs with 5 off the most common difference, else a small-n method that never has zero width, named in
the record's `ci_method`); McNemar's exact test when the scores are 0/1 (a sign-flip randomization test
otherwise); Holm-adjusted p-values across the suites compared; and the examples whose score changed
("flips"), with prompt, both responses and both verdicts.

Per-sample key: the primary metric's own name when samples.jsonl stores it (gsm8k exact_match_flex,
ifeval prompt_level_loose_acc, mbpp pass@1, alice accuracy). The safety score is not a per-sample
value: it is the mean over the strata (HarmBench, XSTest-safe, XSTest-unsafe) of each stratum's
safe-outcome rate, so it is compared through the per-sample `safe_outcome` (1 when the sample had the
safe outcome), stratified by `extracted["subset"]`: the paired delta is then exactly the difference of
the two safety scores over the common samples. McNemar's test on `safe_outcome` tests the pooled
safe-outcome rate (the natural paired test for it; strata do not change which pairs are discordant).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from harness.gating.paired import (
    McNemar,
    PairedDelta,
    holm,
    is_binary,
    mcnemar_exact,
    paired_delta,
    sign_flip_test,
)
from harness.reasoning import ReasonedText
from harness.runs.catalog import Catalog, CheckpointView, RunView
from harness.runs.scores import score_key
from harness.runs.store import SampleRecord
from harness.stats import json_number


@dataclass(frozen=True)
class FlippedExample:
    sample_id: str
    prompt: str
    target: str
    response_a: str
    response_b: str
    score_a: float
    score_b: float
    verdict_a: str  # "correct"/"incorrect", or the safety judge's "refusal (safe)", ...
    verdict_b: str
    direction: Literal["improved", "regressed"]
    extracted_a: Mapping[str, str | None] = field(default_factory=dict)
    extracted_b: Mapping[str, str | None] = field(default_factory=dict)
    # Reasoning runs: each side's responses split into thinking and answer (SampleRecord.reasoning).
    parts_a: tuple[ReasonedText, ...] = ()
    parts_b: tuple[ReasonedText, ...] = ()


@dataclass(frozen=True)
class SuiteComparison:
    suite: str
    metric: str  # the primary metric (metrics.json)
    score_key: str  # the per-sample key compared (samples.jsonl)
    stratified_by: str | None
    run_a: Path
    run_b: Path
    delta: PairedDelta
    test: Literal["mcnemar-exact", "sign-flip"]
    p_value: float
    p_adjusted: float  # Holm over the suites of this comparison
    mcnemar: McNemar | None
    only_a: int  # samples scored by a only (not paired)
    only_b: int
    improved: int
    regressed: int
    flips: tuple[FlippedExample, ...]


@dataclass(frozen=True)
class SkippedSuite:
    suite: str
    reason: str


@dataclass(frozen=True)
class Comparison:
    a: CheckpointView
    b: CheckpointView
    suites: tuple[SuiteComparison, ...]
    skipped: tuple[SkippedSuite, ...]

    def to_record(self, max_flips: int | None = None) -> dict[str, Any]:
        """JSON-ready (no NaN: missing numbers are null)."""
        return {
            "a": {"id": self.a.id, "label": self.a.label, "team": self.a.team},
            "b": {"id": self.b.id, "label": self.b.label, "team": self.b.team},
            "suites": [_suite_record(s, max_flips) for s in self.suites],
            "skipped": [{"suite": s.suite, "reason": s.reason} for s in self.skipped],
        }


def _suite_record(s: SuiteComparison, max_flips: int | None) -> dict[str, Any]:
    d = s.delta
    flips = s.flips if max_flips is None else s.flips[:max_flips]
    return {
        "suite": s.suite,
        "metric": s.metric,
        "score_key": s.score_key,
        "stratified_by": s.stratified_by,
        "run_a": str(s.run_a),
        "run_b": str(s.run_b),
        "n": d.n,
        "mean_a": json_number(d.mean_a),
        "mean_b": json_number(d.mean_b),
        "delta": json_number(d.delta),
        "ci": [json_number(d.ci_low), json_number(d.ci_high)],
        "ci_method": d.method,
        "stderr": json_number(d.stderr),
        "test": s.test,
        "p_value": json_number(s.p_value),
        "p_adjusted": json_number(s.p_adjusted),
        "b01": None if s.mcnemar is None else s.mcnemar.b01,
        "b10": None if s.mcnemar is None else s.mcnemar.b10,
        "only_a": s.only_a,
        "only_b": s.only_b,
        "improved": s.improved,
        "regressed": s.regressed,
        "flips_total": len(s.flips),
        "flips": [
            {
                "sample_id": f.sample_id,
                "prompt": f.prompt,
                "target": f.target,
                "response_a": f.response_a,
                "response_b": f.response_b,
                "score_a": f.score_a,
                "score_b": f.score_b,
                "verdict_a": f.verdict_a,
                "verdict_b": f.verdict_b,
                "direction": f.direction,
                "extracted_a": dict(f.extracted_a),
                "extracted_b": dict(f.extracted_b),
            }
            for f in flips
        ],
    }


def skip_reason(run_a: RunView | None, run_b: RunView | None, catalog: Catalog, a: str, b: str) -> str | None:
    """Why two runs of a suite cannot be compared (None: they can)."""
    if run_a is None or run_b is None:
        return f"missing: no run for {a if run_a is None else b}"
    for run, who in ((run_a, a), (run_b, b)):
        if not run.complete:
            return f"incomplete: the run of {who} is not complete ({run.run_dir})"
    if run_a.comparability_key != run_b.comparability_key:
        return (
            "different settings: "
            f"{a} ran {run_a.suite}@{run_a.manifest.suite_version} settings {run_a.manifest.settings_hash}, "
            f"{b} ran {run_b.suite}@{run_b.manifest.suite_version} settings {run_b.manifest.settings_hash}"
        )
    if not (catalog.comparable(run_a) and catalog.comparable(run_b)):
        return (
            f"different settings: both ran settings {run_a.manifest.settings_hash}, not the column's "
            f"reference settings {catalog.reference_settings.get(run_a.suite, ('', '', '?'))[2]}"
        )
    return None


@dataclass(frozen=True)
class PairedScores:
    ids: list[str]
    a: list[float]
    b: list[float]
    strata: list[str] | None
    key: str
    stratum_key: str | None
    only_a: int
    only_b: int
    records_a: Mapping[str, SampleRecord]
    records_b: Mapping[str, SampleRecord]


def paired_scores(run_a: RunView, run_b: RunView) -> PairedScores | str:
    """The two runs' per-sample primary scores on their common samples, or why there are none."""
    records_a, records_b = run_a.samples(), run_b.samples()
    metric = run_a.primary or run_b.primary
    keys = score_key(metric, records_a), score_key(metric, records_b)
    if keys[0] is None or keys[0] != keys[1]:
        return f"no per-sample scores for {metric} in samples.jsonl"
    key, stratum_key = keys[0]
    by_id_a = {r.id: r for r in records_a}
    by_id_b = {r.id: r for r in records_b}
    ids = [i for i in by_id_a if i in by_id_b]
    if not ids:
        return "no overlap: the two runs share no sample id"
    strata = None
    if stratum_key is not None:
        strata = [str(by_id_a[i].extracted.get(stratum_key)) for i in ids]
    return PairedScores(
        ids=ids,
        a=[by_id_a[i].scores[key] for i in ids],
        b=[by_id_b[i].scores[key] for i in ids],
        strata=strata,
        key=key,
        stratum_key=stratum_key,
        only_a=len(by_id_a) - len(ids),
        only_b=len(by_id_b) - len(ids),
        records_a=by_id_a,
        records_b=by_id_b,
    )


def _response(record: SampleRecord) -> str:
    return record.completions[0].texts[0] if record.completions and record.completions[0].texts else ""


def verdict_text(score: float, extracted: Mapping[str, str | None]) -> str:
    outcome = "correct" if score == 1.0 else "incorrect" if score == 0.0 else f"score {score:.3g}"
    judged = extracted.get("verdict")  # safety: refusal / compliance / judge_error
    if judged:
        return f"{judged} ({'safe' if score == 1.0 else 'unsafe'})"
    return outcome


def _flips(pairs: PairedScores) -> tuple[FlippedExample, ...]:
    out = []
    for sample_id, x, y in zip(pairs.ids, pairs.a, pairs.b, strict=True):
        if x == y:
            continue
        ra, rb = pairs.records_a[sample_id], pairs.records_b[sample_id]
        out.append(
            FlippedExample(
                sample_id=sample_id,
                prompt=ra.prompt,
                target=ra.target,
                response_a=_response(ra),
                response_b=_response(rb),
                score_a=x,
                score_b=y,
                verdict_a=verdict_text(x, ra.extracted),
                verdict_b=verdict_text(y, rb.extracted),
                direction="improved" if y > x else "regressed",
                extracted_a=dict(ra.extracted),
                extracted_b=dict(rb.extracted),
                parts_a=ra.reasoning,
                parts_b=rb.reasoning,
            )
        )
    return tuple(out)


def compare_runs(
    run_a: RunView, run_b: RunView, resamples: int = 10000, seed: int = 0
) -> SuiteComparison | str:
    """One suite's paired comparison (p_adjusted = p_value until `compare_checkpoints` adjusts it)."""
    pairs = paired_scores(run_a, run_b)
    if isinstance(pairs, str):
        return pairs
    delta = paired_delta(pairs.a, pairs.b, resamples=resamples, seed=seed, strata=pairs.strata)
    binary = is_binary(pairs.a) and is_binary(pairs.b)
    mcnemar = mcnemar_exact(pairs.a, pairs.b) if binary else None
    p_value = mcnemar.p_value if mcnemar else sign_flip_test(pairs.a, pairs.b, resamples=resamples, seed=seed)
    flips = _flips(pairs)
    return SuiteComparison(
        suite=run_a.suite,
        metric=run_a.primary,
        score_key=pairs.key,
        stratified_by=pairs.stratum_key,
        run_a=run_a.run_dir,
        run_b=run_b.run_dir,
        delta=delta,
        test="mcnemar-exact" if binary else "sign-flip",
        p_value=p_value,
        p_adjusted=p_value,
        mcnemar=mcnemar,
        only_a=pairs.only_a,
        only_b=pairs.only_b,
        improved=sum(f.direction == "improved" for f in flips),
        regressed=sum(f.direction == "regressed" for f in flips),
        flips=flips,
    )


def compare_checkpoints(
    a: CheckpointView, b: CheckpointView, catalog: Catalog, *, resamples: int = 10000, seed: int = 0
) -> Comparison:
    """Every suite of either checkpoint: compared (delta = b - a) or skipped with the reason."""
    present = set(a.runs) | set(b.runs)
    order = [s for s in catalog.suites() if s in present] + sorted(present - set(catalog.suites()))
    compared: list[SuiteComparison] = []
    skipped: list[SkippedSuite] = []
    for suite in order:
        run_a, run_b = a.runs.get(suite), b.runs.get(suite)
        reason = skip_reason(run_a, run_b, catalog, a.label, b.label)
        if reason is None and run_a is not None and run_b is not None:
            result = compare_runs(run_a, run_b, resamples=resamples, seed=seed)
            if isinstance(result, str):
                reason = result
            else:
                compared.append(result)
        if reason is not None:
            skipped.append(SkippedSuite(suite, reason))
    adjusted = holm({s.suite: s.p_value for s in compared})
    final = tuple(replace(s, p_adjusted=adjusted[s.suite]) for s in compared)
    return Comparison(a=a, b=b, suites=final, skipped=tuple(skipped))
