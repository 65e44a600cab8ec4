"""`harness.validate`: a deployment's numbers next to the published ones, suite by suite.

    result = harness.validate("embedded", "smollm2-135m-instruct", tolerance=2.0)
    result.differs  # True when a comparable suite is shown (95% CI) to be more than `tolerance` points off

The reference is an entry of leaderboard/reference_scores.json (matched by its `name` or `model`). Each
suite it scores runs (or is reused: `harness.evaluate` resumes finished runs and the response cache
answers repeated requests) under the regime the entry names for it in `harness_regime`, and compares the
metric `metric` names (default: the suite's primary). A suite whose published regime is not one of ours
(no `harness_regime`, or ours is not available for that suite yet) runs under the pinned settings and is
flagged `regime differs`: shown, never counted as `ok` or `differs`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.api.evaluate import SuiteRun, evaluate
from harness.errors import DataError, ExitCode, UsageError
from harness.suite import DEFAULT_REGIME, SuiteOptions
from harness.types import Metric

if TYPE_CHECKING:
    from adapters.options import AdapterOptions

DEFAULT_TOLERANCE = 2.0  # percentage points
OK, DIFFERS, INCONCLUSIVE, REGIME_DIFFERS = "ok", "differs", "inconclusive", "regime differs"
_MEAN = re.compile(r"mean\((?P<names>[^()]+)\)")


def verdict_of(ours: Metric, published: float, tolerance: float) -> str:
    """Equivalence at 95%, as the gate decides: `ok` when our whole 95% CI lies within `tolerance` points of
    the published number, `differs` when it lies wholly outside that band, else `inconclusive` (too few
    samples to tell: at n = 10 a 2-point tolerance can be neither shown nor refuted)."""
    if ours.value is None or ours.ci_low is None or ours.ci_high is None:
        return INCONCLUSIVE
    low, high = 100 * ours.ci_low, 100 * ours.ci_high
    band_low, band_high = published - tolerance - 1e-9, published + tolerance + 1e-9
    if band_low <= low and high <= band_high:
        return OK
    if high < band_low or low > band_high:
        return DIFFERS
    return INCONCLUSIVE


def reference_file() -> Path:
    from leaderboard.site_data import REFERENCE_FILE

    return REFERENCE_FILE


@dataclass(frozen=True)
class Reference:
    """One published model's numbers (percentages) and how they were measured, per suite."""

    name: str
    model: str
    source: str
    regime: str  # the whole entry's regime, in words (what the leaderboard shows)
    scores: Mapping[str, float]  # suite -> percent
    regimes: Mapping[str, str]  # suite -> the published regime, in words
    harness_regime: Mapping[str, str]  # suite -> our regime that matches it (absent: none does)
    metric: Mapping[str, str]  # suite -> our metric compared: NAME or mean(NAME, NAME, ...)
    note: str = ""

    def metric_names(self, suite: str, primary: str) -> tuple[str, ...]:
        spec = self.metric.get(suite, primary)
        found = _MEAN.fullmatch(spec.strip())
        if found is None:
            return (spec.strip(),)
        return tuple(n.strip() for n in found["names"].split(","))


def _mapping(row: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    value = row.get(key, {})
    if not isinstance(value, dict) or not all(isinstance(v, str) and v for v in value.values()):
        raise DataError(f"{where}: '{key}' must map suite names to non-empty strings.", "Fix the file.")
    return {str(k): v for k, v in value.items()}


def load_reference_entries(path: Path | None = None) -> tuple[Reference, ...]:
    """Every entry of the reference scores file (default: the shipped one), checked as the leaderboard
    checks it, with the per-suite regime and metric fields validation reads."""
    import json

    from leaderboard.site_data import load_references

    source = reference_file() if path is None else path
    load_references(source)  # the leaderboard's checks: model, regime, source URL, scores in [0, 100]
    payload = json.loads(source.read_text(encoding="utf-8"))
    # load_references checked that this is a list of entries
    rows: list[Any] = list(payload["references"] if isinstance(payload, dict) else payload)
    out = []
    for number, row in enumerate(rows, start=1):
        where = f"Reference {number} in {source}"
        name = row.get("name", row["model"])
        if not isinstance(name, str) or not name:
            raise DataError(f"{where}: 'name' must be a non-empty string.", "Fix the file.")
        metric = _mapping(row, "metric", where)
        for spec in metric.values():
            if "(" in spec and _MEAN.fullmatch(spec.strip()) is None:
                raise DataError(f"{where}: metric '{spec}' is neither NAME nor mean(NAME, ...).", "Fix it.")
        out.append(Reference(
            name=name, model=row["model"], source=row["source"], regime=row["regime"],
            scores={str(k): float(v) for k, v in row["scores"].items()},
            regimes=_mapping(row, "regimes", where), harness_regime=_mapping(row, "harness_regime", where),
            metric=metric, note=str(row.get("note", "")),
        ))  # fmt: skip
    return tuple(out)


def find_reference(name: str, path: Path | None = None) -> Reference:
    """The entry whose name or model (or the model without its organisation) is `name`, any case."""
    entries = load_reference_entries(path)
    wanted = name.casefold()
    for entry in entries:
        if wanted in {
            entry.name.casefold(),
            entry.model.casefold(),
            entry.model.rpartition("/")[2].casefold(),
        }:
            return entry
    known = ", ".join(f"{e.name} ({e.model})" for e in entries) or "none"
    raise UsageError(f"No reference named '{name}'.", f"References: {known}.")


@dataclass(frozen=True)
class ValidationRow:
    suite: str
    metric: str  # ours, as compared: a metric name or mean(NAME, ...)
    ours: Metric  # a fraction, with its 95% CI (a mean's CI: the mean of the bounds, conservative)
    published: float  # percent
    delta: float | None  # ours - published, in percentage points
    verdict: str  # ok | differs | inconclusive | regime differs
    regime: str  # ours, as run
    published_regime: str  # theirs, in words
    flag: str  # why the regime differs ("" when it does not)
    run_dir: Path
    generated: int  # this call's new responses (0: the run was reused)
    cache_hits: int
    resumed: int


@dataclass(frozen=True)
class ValidationResult:
    checkpoint: str  # the concrete reference evaluated
    reference: Reference
    tolerance: float
    limit: int | None
    rows: tuple[ValidationRow, ...]

    @property
    def differs(self) -> bool:
        return any(row.verdict == DIFFERS for row in self.rows)

    @property
    def inconclusive(self) -> bool:
        return any(row.verdict == INCONCLUSIVE for row in self.rows)

    @property
    def exit_code(self) -> ExitCode:
        if self.differs:
            return ExitCode.VALIDATION_DIFFERS
        return ExitCode.INCONCLUSIVE if self.inconclusive else ExitCode.OK

    def to_record(self) -> dict[str, Any]:
        def number(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        return {
            "checkpoint": self.checkpoint,
            "reference": self.reference.name,
            "model": self.reference.model,
            "source": self.reference.source,
            "tolerance": self.tolerance,
            "limit": self.limit,
            "differs": self.differs,
            "suites": [
                {
                    "suite": r.suite,
                    "metric": r.metric,
                    "ours": r.ours.to_record(),
                    "published": r.published,
                    "delta": number(r.delta),
                    "verdict": r.verdict,
                    "regime": r.regime,
                    "published_regime": r.published_regime,
                    "flag": r.flag,
                    "run_dir": str(r.run_dir),
                    "generated": r.generated,
                    "cache_hits": r.cache_hits,
                    "resumed": r.resumed,
                }
                for r in self.rows
            ],
        }


def compared_metric(run: SuiteRun, names: tuple[str, ...]) -> Metric:
    """The named metric of a run, or the mean of several (value, stderr and CI bounds averaged: the
    averaged interval is at least as wide as the true one, exact when the two move together)."""
    missing = [n for n in names if n not in run.metrics]
    if missing:
        raise DataError(
            f"The reference compares {', '.join(missing)}, which the {run.suite} run ({run.run_dir}) lacks.",
            f"Its metrics: {', '.join(run.metrics)}.",
        )
    parts = [run.metrics[n] for n in names]
    if len(parts) == 1:
        return parts[0]

    def mean(values: list[float | None]) -> float | None:
        return (
            None if any(v is None for v in values) else sum(v for v in values if v is not None) / len(values)
        )

    return Metric(
        name=f"mean({', '.join(names)})", value=mean([m.value for m in parts]),
        stderr=mean([m.stderr for m in parts]), ci_low=mean([m.ci_low for m in parts]),
        ci_high=mean([m.ci_high for m in parts]), n=min(m.n for m in parts), ci_method="mean",
    )  # fmt: skip


def plan_regimes(reference: Reference) -> dict[str, tuple[str, str]]:
    """suite -> (our regime to run it under, why it is flagged or "")."""
    import suites as registry

    plan: dict[str, tuple[str, str]] = {}
    for suite in reference.scores:
        if suite not in registry.SUITES.names():
            raise DataError(
                f"The reference {reference.name} scores '{suite}', which is not a suite of the harness.",
                f"Suites: {', '.join(registry.SUITES.names())}.",
            )
        theirs = reference.regimes.get(suite, reference.regime)
        wanted = reference.harness_regime.get(suite)
        if wanted is None:
            plan[suite] = (DEFAULT_REGIME, f"published under {theirs}; none of our regimes matches it")
            continue
        try:
            registry.get_suite(suite, SuiteOptions(regime=wanted))
        except UsageError:
            plan[suite] = (
                DEFAULT_REGIME,
                f"published under {theirs}; our '{wanted}' regime is not available",
            )
            continue
        plan[suite] = (wanted, "")
    return plan


def validate(
    checkpoint: str,
    reference: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    limit: int | None = None,
    runs: str | Path | None = None,
    data_dir: str | Path | None = None,
    backend: AdapterOptions | None = None,
    references_path: str | Path | None = None,
    progress: bool = True,
) -> ValidationResult:
    """Run (or reuse) `checkpoint`'s runs of every suite the reference entry scores and compare each with
    the published number (`verdict_of`): `ok` when our 95% CI lies within `tolerance` points of it,
    `differs` when it lies wholly beyond, `inconclusive` otherwise, `regime differs` when the published
    regime is not one we ran (never counted either way). `limit`: the first N samples per suite.
    `references_path`: another reference scores file (default: leaderboard/reference_scores.json)."""
    if tolerance < 0:
        raise UsageError(f"The tolerance must be at least 0 points, got {tolerance}.")
    entry = find_reference(reference, None if references_path is None else Path(references_path))
    plan = plan_regimes(entry)
    by_regime: dict[str, list[str]] = {}
    for suite, (regime, _) in plan.items():
        by_regime.setdefault(regime, []).append(suite)
    done: dict[str, SuiteRun] = {}
    concrete = checkpoint
    for regime, suite_names in by_regime.items():
        results = evaluate(
            checkpoint, suite_names, limit=limit, runs=runs, data_dir=data_dir, backend=backend,
            scoring=SuiteOptions(regime=regime), progress=progress,
        )  # fmt: skip
        concrete = results.checkpoint
        done.update({run.suite: run for run in results.runs})
    rows = []
    for suite, (regime, flag) in plan.items():
        run = done[suite]
        ours = compared_metric(run, entry.metric_names(suite, run.primary))
        published = entry.scores[suite]
        delta = None if ours.value is None else 100 * ours.value - published
        verdict = REGIME_DIFFERS if flag else verdict_of(ours, published, tolerance)
        inv = run.invocation
        rows.append(ValidationRow(
            suite=suite, metric=ours.name, ours=ours, published=published, delta=delta, verdict=verdict,
            regime=regime, published_regime=entry.regimes.get(suite, entry.regime), flag=flag,
            run_dir=run.run_dir, generated=inv.generated, cache_hits=inv.cache_hits, resumed=inv.resumed,
        ))  # fmt: skip
    return ValidationResult(concrete, entry, tolerance, limit, tuple(rows))
