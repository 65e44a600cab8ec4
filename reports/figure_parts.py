"""Small pieces the plotly figures share: layouts, empty-figure notes, hover text, arrows, error bars."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from harness.runs.catalog import Catalog, CheckpointView, RunView
from harness.stats import json_number
from harness.types import Metric
from reports.compare import skip_reason

Figure = dict[str, Any]
SAFETY_SUITE = "safety"
STAGE_ORDER = ("base", "sft", "dpo", "rlvr")


def base_layout(title: str, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title},
        "hovermode": "closest",
        "margin": {"l": 70, "r": 30, "t": 60, "b": 70},
        "legend": {"orientation": "h", "y": -0.2},
        "annotations": [],
    }
    layout.update(extra)
    return layout


def empty_figure(title: str, needed: str) -> Figure:
    layout = base_layout(title, xaxis={"visible": False}, yaxis={"visible": False})
    layout["annotations"] = [
        {
            "text": f"no data: {needed}",
            "xref": "paper",
            "yref": "paper",
            "x": 0.5,
            "y": 0.5,
            "showarrow": False,
            "font": {"size": 14},
        }
    ]
    return finish_figure({"data": [], "layout": layout})


def display_names(catalog: Catalog) -> dict[str, str]:
    """checkpoint id -> a unique, readable name ("label (team)")."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for c in catalog.checkpoints:
        name = c.label if c.team is None else f"{c.label} ({c.team})"
        if name in used:
            name = f"{name} [{c.id[-8:]}]"
        used.add(name)
        names[c.id] = name
    return names


def comparable_run(checkpoint: CheckpointView, suite: str, catalog: Catalog) -> RunView | None:
    run = checkpoint.runs.get(suite)
    return run if run is not None and run.complete and catalog.comparable(run) else None


def metric_of(checkpoint: CheckpointView, suite: str, name: str, catalog: Catalog) -> Metric | None:
    run = comparable_run(checkpoint, suite, catalog)
    metric = None if run is None else run.metrics.get(name)
    return metric if metric is not None and metric.value is not None else None


def lineage_pairs(catalog: Catalog) -> list[tuple[CheckpointView, CheckpointView]]:
    """(parent, child) for each checkpoint whose registered parent is in the catalog: matched by
    registry name = label, within the child's team first."""
    by_team = {(c.team, c.label): c for c in catalog.checkpoints}
    by_label: dict[str, CheckpointView] = {}  # catalog.by_label (the first with that label), as a dict
    for c in catalog.checkpoints:
        by_label.setdefault(c.label, c)
    pairs = []
    for child in catalog.checkpoints:
        if child.parent is None:
            continue
        parent = by_team.get((child.team, child.parent)) or by_label.get(child.parent)
        if parent is not None and parent.id != child.id:
            pairs.append((parent, child))
    parent_of = {child.id: parent for parent, child in pairs}

    def depth(checkpoint: CheckpointView) -> int:  # generations above it in the catalog (cycle-safe)
        seen = {checkpoint.id}
        while (up := parent_of.get(checkpoint.id)) is not None and up.id not in seen:
            seen.add(up.id)
            checkpoint = up
        return len(seen) - 1

    # Oldest stage first (base -> sft before sft -> dpo), then by team and name.
    return sorted(pairs, key=lambda pc: (pc[1].team or "", depth(pc[1]), pc[1].label))


def _pair_reason(parent: CheckpointView, child: CheckpointView, catalog: Catalog) -> str:
    common = [s for s in catalog.suites() if s in parent.runs and s in child.runs]
    if not common:
        return (
            f"no suite run by both ({parent.label}: {', '.join(parent.runs) or 'none'}; "
            f"{child.label}: {', '.join(child.runs) or 'none'})"
        )
    reasons = [
        f"{suite}: "
        + (
            skip_reason(parent.runs[suite], child.runs[suite], catalog, parent.label, child.label)
            or "no per-sample scores or metric values to compare"
        )
        for suite in common
    ]
    return "; ".join(reasons)


def no_stage_deltas_note(catalog: Catalog, shown: int = 3) -> str:
    """Why the stage-deltas figure is empty: no lineage, or the pairs found and why none qualified."""
    pairs = lineage_pairs(catalog)
    if not pairs:
        return (
            "needs registered lineage (harness checkpoints add NAME REF --parent PARENT) and runs of "
            "the same suite for a checkpoint and its parent under the column's reference settings"
        )
    lines = [
        f"{len(pairs)} lineage pair(s), none with comparable runs of a common suite "
        "(complete, under the column's reference settings):"
    ]
    lines += [f"{a.label} → {b.label}: {_pair_reason(a, b, catalog)}" for a, b in pairs[:shown]]
    if len(pairs) > shown:
        lines.append(f"and {len(pairs) - shown} more pair(s)")
    return "<br>".join(escape(line) for line in lines)


def stage_of(checkpoint: CheckpointView) -> str:
    return checkpoint.stage or "unregistered"


def stages_in_order(checkpoints: Iterable[CheckpointView]) -> list[str]:
    present = {stage_of(c) for c in checkpoints}
    return [s for s in STAGE_ORDER if s in present] + sorted(present - set(STAGE_ORDER))


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def hover_head(c: CheckpointView) -> str:
    parts = [f"<b>{escape(c.label)}</b>"]
    if c.team:
        parts.append(f"team: {escape(c.team)}")
    parts.append(f"stage: {escape(stage_of(c))}")
    if c.base_model:
        parts.append(f"base: {escape(c.base_model)}")
    if c.parent:
        parts.append(f"parent: {escape(c.parent)}")
    return "<br>".join(parts)


def escape(text: str) -> str:
    # Hover text is rendered by plotly as (a subset of) HTML: names come from students' registries.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def judge_of(catalog: Catalog) -> str | None:
    for c in catalog.checkpoints:
        run = comparable_run(c, SAFETY_SUITE, catalog)
        if run is not None:
            return run.judge
    return None


def error_bars(metric: Metric) -> dict[str, Any]:
    """Asymmetric error bar from a metric's CI (zero where the CI is missing)."""
    value = metric.value or 0.0
    high = 0.0 if metric.ci_high is None else max(0.0, metric.ci_high - value)
    low = 0.0 if metric.ci_low is None else max(0.0, value - metric.ci_low)
    return {"plus": high, "minus": low}


def arrow(x: float, y: float, ax: float, ay: float, text: str) -> dict[str, Any]:
    return {
        "x": x, "y": y, "ax": ax, "ay": ay,
        "xref": "x", "yref": "y", "axref": "x", "ayref": "y",
        "showarrow": True, "arrowhead": 3, "arrowsize": 1.2, "arrowwidth": 1.2,
        "arrowcolor": "rgba(80,80,80,0.7)", "text": "", "hovertext": text, "standoff": 4,
    }  # fmt: skip


def finish_figure(figure: Figure) -> Figure:
    cleaned: Figure = clean_json(figure)
    return cleaned


def clean_json(value: Any) -> Any:
    """Make a figure strictly JSON: NaN/inf become None, tuples lists."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, float):
        return json_number(value) if math.isfinite(value) else None
    return value
