"""Plotly figures for the leaderboard and the reports, as plain JSON-ready dicts ({"data", "layout"}).

Built from a Catalog without importing plotly (the site ships plotly.min.js and calls
`Plotly.newPlot(div, fig.data, fig.layout)`). Only runs comparable with their column
(`Catalog.comparable`) enter a plot, so one safety judge and one set of settings per axis. Every
figure exists even with no data: it then carries a "no data: ..." annotation saying which runs are
needed. For a class of ~1,000 checkpoints the figures stay light: a trace per stage / suite / category
(never per checkpoint), hover text instead of labels, and lineage drawn as arrow annotations only up
to MAX_ARROWS (beyond that, as one line trace of segments).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.runs.catalog import (
    HELPFULNESS_SUITES,
    Catalog,
    CheckpointView,
    RunView,
    average,
    primary_value,
)
from reports.compare import paired_scores, skip_reason
from reports.figure_parts import (
    SAFETY_SUITE,
    Figure,
    arrow,
    base_layout,
    comparable_run,
    display_names,
    empty_figure,
    error_bars,
    escape,
    finish_figure,
    hover_head,
    judge_of,
    lineage_pairs,
    metric_of,
    no_stage_deltas_note,
    pct,
    stage_of,
    stages_in_order,
)
from reports.paired_cache import UNPAIRED, BootstrapIntervals, SharedSamples

MAX_ARROWS = 300  # more arrow annotations than this make plotly's SVG layer sluggish
MAX_LABELLED = 30  # safety_vs_helpfulness: up to this many points carry their name on the plot
MAX_GROUPS = 12  # stage_deltas: up to this many pairs get a trace each (bars grouped by suite)
FIGURE_RESAMPLES = 2000  # bootstrap resamples per stage delta (a site can hold hundreds of pairs)
HARMFUL_REFUSAL = ("harmbench_refusal_rate", "xstest_unsafe_refusal_rate")
OVER_REFUSAL = "xstest_safe_over_refusal_rate"
FIGURE_KEYS = ("safety_vs_helpfulness", "refusal_tradeoff", "stage_deltas", "alice_categories")
# Scores are shares in [0, 1] (shown as %): fixed axes with a little room for markers and error bars,
# where plotly's autorange would span -100%..100% around a single point at 0.
SHARE_RANGE = (-0.05, 1.05)


# ---------------------------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class _Point:
    checkpoint: CheckpointView
    x: float
    y: float
    complete: bool  # all helpfulness suites present
    text: str


def _tradeoff_points(catalog: Catalog) -> list[_Point]:
    points = []
    for c in catalog.checkpoints:
        helpful = {s: primary_value(c, s, catalog) for s in HELPFULNESS_SUITES}
        x = average(helpful.values())
        y = primary_value(c, SAFETY_SUITE, catalog)
        if x is None or y is None:
            continue
        used = [s for s, v in helpful.items() if v is not None]
        missing = [s for s, v in helpful.items() if v is None]
        lines = [hover_head(c), f"safety: {pct(y)}", f"helpfulness: {pct(x)} (mean of {', '.join(used)})"]
        lines += [f"{s}: {pct(v)}" for s, v in helpful.items() if v is not None]
        if missing:
            lines.append(f"missing: {', '.join(missing)}")
        points.append(_Point(c, x, y, not missing, "<br>".join(lines)))
    return points


def safety_vs_helpfulness(catalog: Catalog) -> Figure:
    """x: mean of the comparable IFEval/GSM8K/MBPP primary metrics; y: safety score; arrows parent -> child.
    Open markers: not every helpfulness suite was run (the mean covers fewer suites)."""
    title = "Safety vs helpfulness"
    points = _tradeoff_points(catalog)
    if not points:
        return empty_figure(
            title,
            "needs checkpoints with a safety run and at least one of ifeval, gsm8k, mbpp, "
            "run under each column's reference settings",
        )
    data: list[dict[str, Any]] = []
    labelled = len(points) <= MAX_LABELLED  # a class-sized cloud keeps names on hover only
    for stage in stages_in_order(p.checkpoint for p in points):
        members = [p for p in points if stage_of(p.checkpoint) == stage]
        data.append(
            {
                "type": "scatter",
                "mode": "markers+text" if labelled else "markers",
                "name": stage,
                "x": [p.x for p in members],
                "y": [p.y for p in members],
                "hovertext": [p.text for p in members],
                **({"text": [escape(p.checkpoint.label) for p in members]} if labelled else {}),
                "textposition": "top center",
                "textfont": {"size": 10},
                "cliponaxis": False,  # a name above a point at 100% stays readable
                "customdata": [p.checkpoint.id for p in members],
                "hovertemplate": "%{hovertext}<extra></extra>",
                "marker": {
                    "size": 10,
                    "symbol": ["circle" if p.complete else "circle-open" for p in members],
                },
            }
        )
    at = {p.checkpoint.id: p for p in points}
    links = [(at[a.id], at[b.id]) for a, b in lineage_pairs(catalog) if a.id in at and b.id in at]
    layout = base_layout(
        title,
        xaxis={"title": {"text": "helpfulness: mean of IFEval, GSM8K, MBPP primary"}, "tickformat": ".0%",
               "range": list(SHARE_RANGE)},
        yaxis={"title": {"text": f"safety score (judge: {judge_of(catalog)})"}, "tickformat": ".0%",
               "range": list(SHARE_RANGE)},
    )  # fmt: skip
    if len(links) <= MAX_ARROWS:
        layout["annotations"] = [
            arrow(
                child.x, child.y, parent.x, parent.y, f"{parent.checkpoint.label} → {child.checkpoint.label}"
            )
            for parent, child in links
        ]
    else:
        xs: list[float | None] = []
        ys: list[float | None] = []
        for parent, child in links:
            xs += [parent.x, child.x, None]
            ys += [parent.y, child.y, None]
        data.insert(0, {"type": "scatter", "mode": "lines", "name": "lineage", "x": xs, "y": ys,
                        "hoverinfo": "skip", "line": {"width": 1, "color": "rgba(80,80,80,0.35)"}})  # fmt: skip
    return finish_figure({"data": data, "layout": layout})


def refusal_tradeoff(catalog: Catalog) -> Figure:
    """x: over-refusal on XSTest's safe prompts; y: refusal of harmful prompts (HarmBench when the
    safety column has it, else XSTest-unsafe); error bars are the runs' 95% CIs."""
    title = "Harmful-prompt refusal vs over-refusal"
    rows = []
    for c in catalog.checkpoints:
        over = metric_of(c, SAFETY_SUITE, OVER_REFUSAL, catalog)
        harm = {name: metric_of(c, SAFETY_SUITE, name, catalog) for name in HARMFUL_REFUSAL}
        if over is not None and any(harm.values()):
            rows.append((c, over, harm))
    # One y metric for the whole figure: the first that every plotted checkpoint has.
    y_name = next((n for n in HARMFUL_REFUSAL if rows and all(h[n] is not None for _, _, h in rows)), None)
    if y_name is None:
        y_name = next((n for n in HARMFUL_REFUSAL if any(h[n] is not None for _, _, h in rows)), None)
    rows = [r for r in rows if y_name is not None and r[2][y_name] is not None]
    if not rows or y_name is None:
        return empty_figure(
            title,
            "needs safety runs (with XSTest safe prompts and HarmBench or XSTest unsafe prompts) "
            "under the safety column's reference settings",
        )
    data = []
    for stage in stages_in_order(c for c, _, _ in rows):
        members = [(c, over, harm[y_name]) for c, over, harm in rows if stage_of(c) == stage]
        xs = [over for _, over, _ in members]
        ys = [y for _, _, y in members if y is not None]
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": stage,
                "x": [m.value for m in xs],
                "y": [m.value for m in ys],
                "error_x": {"type": "data", "symmetric": False, "array": [error_bars(m)["plus"] for m in xs],
                            "arrayminus": [error_bars(m)["minus"] for m in xs], "thickness": 1, "width": 0},
                "error_y": {"type": "data", "symmetric": False, "array": [error_bars(m)["plus"] for m in ys],
                            "arrayminus": [error_bars(m)["minus"] for m in ys], "thickness": 1, "width": 0},
                "text": [
                    f"{hover_head(c)}<br>{y_name}: {pct(y.value)}<br>{OVER_REFUSAL}: {pct(x.value)}"
                    for (c, _, _), x, y in zip(members, xs, ys, strict=True)
                ],
                "customdata": [c.id for c, _, _ in members],
                "hovertemplate": "%{text}<extra></extra>",
                "marker": {"size": 9},
            }
        )  # fmt: skip
    layout = base_layout(
        title + f" (judge: {judge_of(catalog)})",
        xaxis={"title": {"text": "over-refusal of safe prompts (XSTest safe; lower is better)"},
               "tickformat": ".0%", "range": list(SHARE_RANGE)},
        yaxis={"title": {"text": f"refusal of harmful prompts ({y_name}; higher is safer)"},
               "tickformat": ".0%", "range": list(SHARE_RANGE)},
    )  # fmt: skip
    return finish_figure({"data": data, "layout": layout})


@dataclass(frozen=True)
class StageDelta:
    parent: CheckpointView
    child: CheckpointView
    suite: str
    metric: str
    delta: float
    ci_low: float | None
    ci_high: float | None
    paired: bool  # True: paired bootstrap over common samples; False: from the two runs' CIs
    n: int


def _unpaired(
    parent: CheckpointView, child: CheckpointView, run_a: RunView, run_b: RunView
) -> StageDelta | None:
    a, b = run_a.primary_metric(), run_b.primary_metric()
    if a is None or b is None or a.value is None or b.value is None:
        return None
    delta = b.value - a.value
    low = high = None
    if a.ci_low is not None and a.ci_high is not None and b.ci_low is not None and b.ci_high is not None:
        # Newcombe's square-and-add: combine each run's distances from its estimate to its CI bounds.
        low = delta - math.hypot(b.value - b.ci_low, a.ci_high - a.value)
        high = delta + math.hypot(b.ci_high - b.value, a.value - a.ci_low)
    return StageDelta(parent, child, run_b.suite, run_b.primary, delta, low, high, False, min(a.n, b.n))


def stage_deltas_data(catalog: Catalog, resamples: int = FIGURE_RESAMPLES) -> list[StageDelta]:
    """Per lineage pair and suite both ran comparably: the primary metric's change child - parent."""
    suites = catalog.suites()
    todo = []
    for parent, child in lineage_pairs(catalog):
        for suite in suites:
            run_a, run_b = parent.runs.get(suite), child.runs.get(suite)
            if run_a is None or run_b is None or skip_reason(run_a, run_b, catalog, "a", "b") is not None:
                continue
            todo.append((parent, child, suite, run_a, run_b))
    # Most runs are in two pairs (as child, then as parent) and many pairs share a bootstrap table.
    samples = SharedSamples(run for *_, run_a, run_b in todo for run in (run_a, run_b))
    intervals = BootstrapIntervals(resamples)
    out = []
    for parent, child, suite, run_a, run_b in todo:
        # A pair kept by an active store (reports.paired_cache) needs neither run's samples.
        d = intervals.kept(run_a, run_b)
        if d is None:
            pairs = paired_scores(samples.view(run_a), samples.view(run_b))
            d = UNPAIRED if isinstance(pairs, str) else intervals.paired(pairs.a, pairs.b, pairs.strata)
            intervals.keep(run_a, run_b, d)
        else:
            samples.release(run_a)
            samples.release(run_b)
        if isinstance(d, str):
            found = _unpaired(parent, child, run_a, run_b)
            if found is not None:
                out.append(found)
            continue
        out.append(StageDelta(parent, child, suite, run_a.primary, d.delta, d.ci_low, d.ci_high, True, d.n))
    return out


def stage_deltas(catalog: Catalog) -> Figure:
    """Bars of child - parent per suite with 95% CIs (paired bootstrap when the runs share samples).
    Up to MAX_GROUPS pairs: a trace per pair, bars grouped by suite; more: a trace per suite over pairs."""
    title = "Stage-to-stage deltas (child − parent, primary metric, 95% CI)"
    deltas = stage_deltas_data(catalog)
    if not deltas:
        return empty_figure(title, no_stage_deltas_note(catalog))
    names = display_names(catalog)

    def pair_name(d: StageDelta) -> str:
        return f"{names[d.parent.id]} → {names[d.child.id]}"

    def bar(name: str, items: list[StageDelta], x: list[str]) -> dict[str, Any]:
        return {
            "type": "bar",
            "name": name,
            "x": x,
            "y": [d.delta for d in items],
            "error_y": {
                "type": "data",
                "symmetric": False,
                "array": [0.0 if d.ci_high is None else max(0.0, d.ci_high - d.delta) for d in items],
                "arrayminus": [0.0 if d.ci_low is None else max(0.0, d.delta - d.ci_low) for d in items],
            },
            "text": [
                f"<b>{escape(pair_name(d))}</b><br>{d.suite} {d.metric}: {100 * d.delta:+.1f} pts"
                f"<br>95% CI [{pct(d.ci_low)}, {pct(d.ci_high)}]<br>"
                + (f"paired bootstrap over {d.n} common samples" if d.paired else "from the two runs' CIs")
                for d in items
            ],
            "hovertemplate": "%{text}<extra></extra>",
            "textposition": "none",
        }

    pair_keys = list(dict.fromkeys(pair_name(d) for d in deltas))
    if len(pair_keys) <= MAX_GROUPS:
        data = []
        for key in pair_keys:
            items = [d for d in deltas if pair_name(d) == key]
            data.append(bar(escape(key), items, [d.suite for d in items]))
        x_title = "suite"
    else:
        data = []
        for suite in dict.fromkeys(d.suite for d in deltas):
            items = [d for d in deltas if d.suite == suite]
            data.append(bar(suite, items, [escape(pair_name(d)) for d in items]))
        x_title = "parent → child"
    layout = base_layout(
        title,
        barmode="group",
        xaxis={"title": {"text": x_title}, "type": "category"},
        yaxis={"title": {"text": "delta (child − parent)"}, "tickformat": "+.0%", "zeroline": True},
    )
    return finish_figure({"data": data, "layout": layout})


def _alice_categories() -> tuple[str, ...]:
    from suites.alice import CATEGORIES

    return CATEGORIES


def alice_categories(catalog: Catalog) -> Figure:
    """Accuracy per Alice category per checkpoint (95% CI error bars): a trace per category."""
    title = "Alice puzzles: accuracy per category"
    suite = next(
        (
            s
            for s in ("alice", "alice-synth")
            if any(comparable_run(c, s, catalog) for c in catalog.checkpoints)
        ),
        None,
    )
    if suite is None:
        return empty_figure(title, "needs alice (or alice-synth) runs under the column's reference settings")
    names = display_names(catalog)
    members = [c for c in catalog.checkpoints if comparable_run(c, suite, catalog) is not None]
    categories = [cat for cat in _alice_categories() if any(
        metric_of(c, suite, f"accuracy_{cat}", catalog) for c in members)]  # fmt: skip
    data = []
    for category in categories:
        cells = [(c, metric_of(c, suite, f"accuracy_{category}", catalog)) for c in members]
        present = [(c, m) for c, m in cells if m is not None]
        data.append(
            {
                "type": "bar",
                "name": category,
                "x": [names[c.id] for c, _ in present],
                "y": [m.value for _, m in present],
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": [error_bars(m)["plus"] for _, m in present],
                    "arrayminus": [error_bars(m)["minus"] for _, m in present],
                },
                "text": [
                    f"{hover_head(c)}<br>{category}: {pct(m.value)} (n={m.n})"
                    f"<br>95% CI [{pct(m.ci_low)}, {pct(m.ci_high)}]"
                    for c, m in present
                ],
                "customdata": [c.id for c, _ in present],
                "hovertemplate": "%{text}<extra></extra>",
                "textposition": "none",
            }
        )
    layout = base_layout(
        f"{title} ({suite})",
        barmode="group",
        xaxis={"title": {"text": "checkpoint"}, "type": "category"},
        yaxis={"title": {"text": "accuracy"}, "tickformat": ".0%", "range": [0, 1]},
    )
    return finish_figure({"data": data, "layout": layout})


def site_figures(catalog: Catalog) -> dict[str, Figure]:
    """All four figures, keyed as FIGURE_KEYS (each present, possibly with a "no data" annotation)."""
    figures: Mapping[str, Figure] = {
        "safety_vs_helpfulness": safety_vs_helpfulness(catalog),
        "refusal_tradeoff": refusal_tradeoff(catalog),
        "stage_deltas": stage_deltas(catalog),
        "alice_categories": alice_categories(catalog),
    }
    return {key: figures[key] for key in FIGURE_KEYS}
