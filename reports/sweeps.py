"""Tradeoff sweeps for `harness report`: refusal rate vs task performance over a family of checkpoints.

A family is the report's checkpoints that share team, parent and stage and carry a numeric sweep value:
by default the registry entry's `details["beta"]` (a dotted key such as "dpo.beta" reaches into nested
details), or a value the caller passes per checkpoint label (`overrides`, which win). Points are ordered
by the sweep value; each family is one curve.

Per point:
- task performance: the primary metric over the non-safety suites every member of the family ran
  comparably (complete, under the column's reference settings). With one such suite the value and CI are
  that run's; with several, the value is the mean of the primary metrics and the "CI" is the mean of
  their intervals (labelled so: it is not a CI of the mean, only a guide to the spread);
- harmful-prompt refusal: `harmbench_refusal_rate` when every member has it, else
  `xstest_unsafe_refusal_rate` (one metric per family, named in the table);
- over-refusal: `xstest_safe_over_refusal_rate` (refusals of benign XSTest prompts; lower is better).
Values and CIs are the runs' own metrics (95%), never recomputed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.runs.catalog import Catalog, CheckpointView
from harness.types import Metric
from reports.figure_parts import (
    SAFETY_SUITE,
    Figure,
    base_layout,
    comparable_run,
    empty_figure,
    error_bars,
    escape,
    finish_figure,
    metric_of,
    pct,
)
from reports.sections import is_safety

DEFAULT_SWEEP_KEY = "beta"
SWEEP_FIGURE_KEY = "tradeoff_sweeps"
HARMFUL_REFUSAL = ("harmbench_refusal_rate", "xstest_unsafe_refusal_rate")
OVER_REFUSAL = "xstest_safe_over_refusal_rate"
ONE_SUITE_CI = "the run's 95% CI"
MEAN_OF_INTERVALS = "mean of the suites' 95% CIs (not a CI of the mean)"


@dataclass(frozen=True)
class Interval:
    value: float
    ci_low: float | None
    ci_high: float | None
    n: int

    @classmethod
    def of(cls, metric: Metric) -> Interval:
        assert metric.value is not None
        return cls(metric.value, metric.ci_low, metric.ci_high, metric.n)

    def bars(self) -> dict[str, float]:
        return error_bars(Metric("", self.value, None, self.ci_low, self.ci_high, self.n))


@dataclass(frozen=True)
class SweepPoint:
    family: str
    sweep_value: float
    checkpoint: str  # the checkpoint's label (registry name)
    task: Interval
    harmful_refusal: Interval | None
    over_refusal: Interval | None


@dataclass(frozen=True)
class SweepFamily:
    name: str  # "dpo from sft-1" (+ " (team)")
    stage: str
    parent: str
    team: str | None
    task_suites: tuple[str, ...]  # the non-safety suites every member ran comparably
    task_ci: str  # ONE_SUITE_CI or MEAN_OF_INTERVALS
    harmful_metric: str | None  # which HARMFUL_REFUSAL metric the family's points carry
    points: tuple[SweepPoint, ...]  # by sweep value


@dataclass(frozen=True)
class SweepSection:
    key: str  # the sweep field, e.g. "beta"
    families: tuple[SweepFamily, ...]
    notes: tuple[str, ...]  # why a checkpoint carrying the key left out, or why there is no family
    figure: Figure

    @property
    def points(self) -> tuple[SweepPoint, ...]:
        return tuple(p for f in self.families for p in f.points)

    @property
    def title(self) -> str:
        return str(self.figure["layout"]["title"]["text"])


def sweep_value(details: Mapping[str, Any], key: str) -> float | None:
    """details[key] as a finite number (a dotted key walks nested mappings); None when absent or not a
    number (a bool is not a sweep value; a numeric string is read as a number)."""
    value: Any = details
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def details_of(checkpoint: CheckpointView) -> Mapping[str, Any]:
    """The registry entry's details, from any of the checkpoint's runs (as registered now, else as
    recorded in the run's manifest at evaluation time)."""
    for run in checkpoint.runs.values():
        lineage = run.lineage
        details = None if lineage is None else lineage.get("details")
        if isinstance(details, Mapping) and details:
            return details
    return {}


def _task(members: Sequence[CheckpointView], catalog: Catalog) -> tuple[tuple[str, ...], str]:
    shared = [
        s
        for s in catalog.suites()
        if s != SAFETY_SUITE
        and all(
            (run := comparable_run(c, s, catalog)) is not None
            and not is_safety(run)
            and (m := run.primary_metric()) is not None
            and m.value is not None
            for c in members
        )
    ]
    return tuple(shared), ONE_SUITE_CI if len(shared) == 1 else MEAN_OF_INTERVALS


def _task_interval(c: CheckpointView, suites: Sequence[str], catalog: Catalog) -> Interval:
    metrics = [m for s in suites if (run := comparable_run(c, s, catalog)) and (m := run.primary_metric())]
    if len(metrics) == 1:
        return Interval.of(metrics[0])
    lows = [m.ci_low for m in metrics]
    highs = [m.ci_high for m in metrics]
    return Interval(
        sum(m.value or 0.0 for m in metrics) / len(metrics),
        None if None in lows else sum(x or 0.0 for x in lows) / len(lows),
        None if None in highs else sum(x or 0.0 for x in highs) / len(highs),
        min(m.n for m in metrics),
    )


def _refusal(c: CheckpointView, name: str | None, catalog: Catalog) -> Interval | None:
    metric = None if name is None else metric_of(c, SAFETY_SUITE, name, catalog)
    return None if metric is None else Interval.of(metric)


def _family(
    stage: str, parent: str, team: str | None, members: list[tuple[float, CheckpointView]], catalog: Catalog
) -> SweepFamily | str:
    name = f"{stage} from {parent}" + (f" ({team})" if team else "")
    members.sort(key=lambda vc: (vc[0], vc[1].label))
    views = [c for _, c in members]
    suites, task_ci = _task(views, catalog)
    if not suites:
        return f"{name}: no non-safety suite run comparably by all of {', '.join(c.label for c in views)}"
    harmful = next(
        (h for h in HARMFUL_REFUSAL if all(metric_of(c, SAFETY_SUITE, h, catalog) for c in views)),
        next(
            (h for h in HARMFUL_REFUSAL if any(metric_of(c, SAFETY_SUITE, h, catalog) for c in views)), None
        ),
    )
    points = tuple(
        SweepPoint(
            name,
            value,
            c.label,
            _task_interval(c, suites, catalog),
            _refusal(c, harmful, catalog),
            _refusal(c, OVER_REFUSAL, catalog),
        )
        for value, c in members
    )
    return SweepFamily(name, stage, parent, team, suites, task_ci, harmful, points)


def sweep_section(
    order: Sequence[CheckpointView],
    catalog: Catalog,
    key: str = DEFAULT_SWEEP_KEY,
    overrides: Mapping[str, float] | None = None,
) -> SweepSection:
    """Families of the report's checkpoints (`order`) by (team, parent, stage), each carrying a sweep
    value: `overrides[label]` where given, else the registry details' `key`."""
    overrides = overrides or {}
    groups: dict[tuple[str | None, str, str], list[tuple[float, CheckpointView]]] = {}
    notes: list[str] = []
    for c in order:
        value = overrides.get(c.label)
        value = sweep_value(details_of(c), key) if value is None else float(value)
        if value is None:
            continue
        if c.parent is None or c.stage is None:
            notes.append(f"{c.label}: {key}={value:g} but no registered parent and stage, so no family")
            continue
        groups.setdefault((c.team, c.parent, c.stage), []).append((value, c))
    families = []
    for (team, parent, stage), members in groups.items():
        found = _family(stage, parent, team, members, catalog)
        if isinstance(found, str):
            notes.append(found)
        else:
            families.append(found)
    if not families and not notes:
        notes.append(
            f"no checkpoint carries a numeric '{key}' (registry details, e.g. "
            f"CheckpointRegistry.add(..., details={{'{key}': 0.1}}))"
        )
    return SweepSection(key, tuple(families), tuple(notes), sweep_figure(key, families))


def _trace(
    family: SweepFamily, key: str, which: str, pairs: list[tuple[SweepPoint, Interval]]
) -> dict[str, Any]:
    dashed = which == "over-refusal"
    return {
        "type": "scatter",
        "mode": "lines+markers+text",
        "name": escape(f"{family.name}: {which}"),
        "legendgroup": escape(family.name),
        "x": [p.task.value for p, _ in pairs],
        "y": [r.value for _, r in pairs],
        "error_x": {"type": "data", "symmetric": False, "array": [p.task.bars()["plus"] for p, _ in pairs],
                    "arrayminus": [p.task.bars()["minus"] for p, _ in pairs], "thickness": 1, "width": 0},
        "error_y": {"type": "data", "symmetric": False, "array": [r.bars()["plus"] for _, r in pairs],
                    "arrayminus": [r.bars()["minus"] for _, r in pairs], "thickness": 1, "width": 0},
        "text": [f"{key}={p.sweep_value:g}" for p, _ in pairs],
        "textposition": "top center",
        "textfont": {"size": 10},
        "cliponaxis": False,
        "hovertext": [
            f"<b>{escape(p.checkpoint)}</b><br>{escape(family.name)}<br>{key} = {p.sweep_value:g}"
            f"<br>task ({', '.join(family.task_suites)}): {pct(p.task.value)} "
            f"[{pct(p.task.ci_low)}, {pct(p.task.ci_high)}]"
            f"<br>{which}: {pct(r.value)} [{pct(r.ci_low)}, {pct(r.ci_high)}]"
            for p, r in pairs
        ],
        "hovertemplate": "%{hovertext}<extra></extra>",
        "line": {"dash": "dash" if dashed else "solid"},
        "marker": {"size": 9, "symbol": "x" if dashed else "circle"},
    }  # fmt: skip


def sweep_figure(key: str, families: Sequence[SweepFamily]) -> Figure:
    """x: task performance; y: refusal rate; per family a solid curve (harmful-prompt refusal, higher is
    safer) and a dashed one (over-refusal of benign prompts, lower is better), points in sweep order,
    error bars the 95% CIs (the x bars a mean of intervals where the task spans several suites)."""
    title = f"Refusal vs task performance over {key} sweeps"
    data: list[dict[str, Any]] = []
    for family in families:
        harmful = [(p, p.harmful_refusal) for p in family.points if p.harmful_refusal is not None]
        over = [(p, p.over_refusal) for p in family.points if p.over_refusal is not None]
        if harmful:
            data.append(_trace(family, key, f"harmful refusal ({family.harmful_metric})", harmful))
        if over:
            data.append(_trace(family, key, "over-refusal", over))
    if not data:
        return empty_figure(
            title,
            f"needs checkpoints sharing parent and stage with a numeric '{key}' in their registry details, "
            "each with a safety run and a task suite run under the columns' reference settings",
        )
    layout = base_layout(
        title,
        xaxis={"title": {"text": "task performance: primary metric (mean over shared non-safety suites)"},
               "tickformat": ".0%", "range": [-0.05, 1.05]},
        yaxis={"title": {"text": "refusal rate (solid: harmful prompts; dashed: benign prompts)"},
               "tickformat": ".0%", "range": [-0.05, 1.05]},
    )  # fmt: skip
    return finish_figure({"data": data, "layout": layout})
