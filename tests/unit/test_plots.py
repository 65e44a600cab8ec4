"""reports.plots on real runs (base -> sft -> dpo replayed with known outcomes, see test_compare) and on a
synthetic class of 1,000 checkpoints built from one real run's manifest."""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.runs.catalog import Catalog, CheckpointView, build_catalog, catalog_from_folders
from harness.types import Metric
from reports.plots import FIGURE_KEYS, MAX_ARROWS, site_figures
from tests.unit.test_compare import ClassRuns, make_class_runs


@pytest.fixture(scope="module")
def class_runs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> ClassRuns:
    return make_class_runs(tmp_path_factory.mktemp("class"))


@pytest.fixture(scope="module")
def catalog(class_runs: ClassRuns) -> Catalog:
    return catalog_from_folders([class_runs.root])


@pytest.fixture(scope="module")
def figures(catalog: Catalog) -> dict[str, dict[str, Any]]:
    return site_figures(catalog)


def _cp(catalog: Catalog, label: str) -> CheckpointView:
    found = catalog.by_label(label)
    assert found is not None
    return found


def _value(checkpoint: CheckpointView, suite: str, metric: str | None = None) -> float:
    run = checkpoint.runs[suite]
    found = run.metrics[metric or run.primary]
    assert found.value is not None
    return found.value


def _points(figure: dict[str, Any]) -> dict[str, tuple[float, float]]:
    out = {}
    for trace in figure["data"]:
        for cid, x, y in zip(trace.get("customdata", []), trace["x"], trace["y"], strict=True):
            out[cid] = (x, y)
    return out


def test_every_figure_is_strict_json_and_valid_plotly(figures: dict[str, dict[str, Any]]) -> None:
    assert list(figures) == list(FIGURE_KEYS)
    for figure in figures.values():
        assert set(figure) == {"data", "layout"}
        json.dumps(figure, allow_nan=False)
        assert not any("no data" in a.get("text", "") for a in figure["layout"]["annotations"])
    go = pytest.importorskip("plotly.graph_objects")
    for figure in figures.values():
        go.Figure(figure)  # raises on any property plotly does not know


def test_share_axes_span_0_to_100_percent(figures: dict[str, dict[str, Any]], catalog: Catalog) -> None:
    """Scores are shares in [0, 1]: plotly's autorange around a lone point at 0 spans -100%..100%."""
    for key in ("safety_vs_helpfulness", "refusal_tradeoff"):
        layout = figures[key]["layout"]
        assert layout["xaxis"]["range"] == layout["yaxis"]["range"] == [-0.05, 1.05], key
    assert figures["alice_categories"]["layout"]["yaxis"]["range"] == [0, 1]
    lone = Catalog((_cp(catalog, "base-1"),), catalog.reference_settings)
    assert site_figures(lone)["safety_vs_helpfulness"]["layout"]["yaxis"]["range"] == [-0.05, 1.05]


def test_the_site_plots_page_keeps_the_figure_order(class_runs: ClassRuns, tmp_path: Path) -> None:
    """Suites in their usual order (helpfulness and safety first, Alice last), never alphabetical."""
    import re

    pytest.importorskip("jinja2", reason="the site extra is not installed")
    from leaderboard.site import build_site

    build_site([class_runs.root], tmp_path / "site", None)
    page = (tmp_path / "site" / "plots.html").read_text()
    assert re.findall(r'data-figure="([a-z_]+)"', page) == list(FIGURE_KEYS)


def test_safety_vs_helpfulness_points_and_lineage_arrows(
    figures: dict[str, dict[str, Any]], catalog: Catalog
) -> None:
    figure = figures["safety_vs_helpfulness"]
    base, sft, dpo = (_cp(catalog, n) for n in ("base-1", "sft-1", "dpo-1"))
    points = _points(figure)
    # `other` ran gsm8k with another --limit: not comparable, so it has no helpfulness and no point.
    assert set(points) == {base.id, sft.id, dpo.id}
    assert points[base.id] == pytest.approx((8 / 12, _value(base, "safety")), abs=1e-6)
    assert points[sft.id] == pytest.approx((9 / 12, 1.0))
    assert points[dpo.id] == pytest.approx((9 / 12, _value(dpo, "safety")), abs=1e-6)
    assert [t["name"] for t in figure["data"]] == ["base", "sft", "dpo"]  # a trace per stage
    arrows = [(a["ax"], a["ay"], a["x"], a["y"]) for a in figure["layout"]["annotations"]]
    assert arrows == [
        pytest.approx((*points[base.id], *points[sft.id])),
        pytest.approx((*points[sft.id], *points[dpo.id])),
    ]
    assert all(a["axref"] == "x" and a["showarrow"] for a in figure["layout"]["annotations"])
    hover = figure["data"][0]["hovertext"][0]
    assert "base-1" in hover and "missing: ifeval, mbpp" in hover
    assert figure["data"][0]["text"] == ["base-1"] and figure["data"][0]["mode"] == "markers+text"
    assert "refusal-heuristic" in figure["layout"]["yaxis"]["title"]["text"]


def test_refusal_tradeoff_uses_harmbench_refusal_with_ci_error_bars(
    figures: dict[str, dict[str, Any]], catalog: Catalog
) -> None:
    figure = figures["refusal_tradeoff"]
    points = _points(figure)
    assert len(points) == 4  # the unregistered checkpoint's safety run is comparable
    base = _cp(catalog, "base-1")
    over = base.runs["safety"].metrics["xstest_safe_over_refusal_rate"]
    assert points[base.id] == pytest.approx((over.value, _value(base, "safety", "harmbench_refusal_rate")))
    trace = next(t for t in figure["data"] if t["name"] == "base")
    assert over.ci_high is not None and over.value is not None
    assert trace["error_x"]["array"][0] == pytest.approx(over.ci_high - over.value)
    assert "harmbench_refusal_rate" in figure["layout"]["yaxis"]["title"]["text"]


def test_stage_deltas_are_paired_and_ordered_by_lineage(
    figures: dict[str, dict[str, Any]], catalog: Catalog
) -> None:
    figure = figures["stage_deltas"]
    assert [t["name"] for t in figure["data"]] == ["base-1 → sft-1", "sft-1 → dpo-1"]
    first, second = figure["data"]
    assert first["x"] == ["gsm8k", "safety", "alice-synth"]
    base, sft, dpo = (_cp(catalog, n) for n in ("base-1", "sft-1", "dpo-1"))
    safety_delta = _value(sft, "safety") - _value(base, "safety")
    assert first["y"] == pytest.approx([1 / 12, safety_delta, 5 / 12], abs=1e-6)  # metrics.json: 6 digits
    assert second["y"] == pytest.approx([0.0, _value(dpo, "safety") - 1.0, 1 / 12], abs=1e-6)
    assert (second["error_y"]["array"][0], second["error_y"]["arrayminus"][0]) == (0.0, 0.0)  # identical
    assert all("paired bootstrap over 12 common samples" in text for text in first["text"])
    lows = [y - m for y, m in zip(first["y"], first["error_y"]["arrayminus"], strict=True)]
    assert lows[2] > 0  # alice: 5 of 12 improved, none regressed: the interval excludes 0


def test_stage_delta_without_common_samples_uses_both_runs_intervals(
    class_runs: ClassRuns, tmp_path: Path
) -> None:
    copy = tmp_path / "runs"
    shutil.copytree(class_runs.root, copy)
    catalog = catalog_from_folders([copy])
    dpo_run = _cp(catalog, "dpo-1").runs["gsm8k"]
    (dpo_run.run_dir / "samples.jsonl").write_text("")  # per-sample records gone: nothing to pair
    bars = site_figures(catalog)["stage_deltas"]["data"][1]
    assert bars["name"] == "sft-1 → dpo-1" and bars["x"][0] == "gsm8k"
    a, b = _cp(catalog, "sft-1").runs["gsm8k"].primary_metric(), dpo_run.primary_metric()
    assert a is not None and b is not None
    assert None not in (a.value, a.ci_low, a.ci_high, b.value, b.ci_low, b.ci_high)
    # Newcombe's square-and-add from the two Wilson intervals (equal runs: delta 0)
    up = math.hypot(b.ci_high - b.value, a.value - a.ci_low)  # type: ignore[operator]
    down = math.hypot(b.value - b.ci_low, a.ci_high - a.value)  # type: ignore[operator]
    assert (bars["y"][0], bars["error_y"]["array"][0], bars["error_y"]["arrayminus"][0]) == pytest.approx(
        (0.0, up, down)
    )
    assert "from the two runs' CIs" in bars["text"][0]


def test_alice_category_bars(figures: dict[str, dict[str, Any]], catalog: Catalog) -> None:
    figure = figures["alice_categories"]
    names = [t["name"] for t in figure["data"]]
    assert names == ["bit_manipulation", "cipher", "numeral", "unit_conversion", "gravity", "equation"]
    for trace in figure["data"]:
        assert trace["x"] == ["base-1", "dpo-1", "sft-1"]  # `other` has no alice run
        # two samples per category; base misses the first of each, sft only sample 0 (bit_manipulation)
        sft_value = 0.5 if trace["name"] == "bit_manipulation" else 1.0
        assert trace["y"] == [0.5, 1.0, sft_value]
        assert len(trace["error_y"]["array"]) == 3
    assert "alice-synth" in figure["layout"]["title"]["text"]


def test_empty_catalog_gives_every_figure_with_a_no_data_note() -> None:
    figures = site_figures(Catalog(checkpoints=(), reference_settings={}))
    assert list(figures) == list(FIGURE_KEYS)
    for key, figure in figures.items():
        json.dumps(figure, allow_nan=False)
        assert figure["data"] == []
        (note,) = figure["layout"]["annotations"]
        assert note["text"].startswith("no data: "), key
    assert "--parent" in figures["stage_deltas"]["layout"]["annotations"][0]["text"]


def test_a_class_of_1000_checkpoints_stays_light(catalog: Catalog) -> None:
    """Synthetic checkpoints reusing real manifests (no samples on disk: deltas come from the CIs)."""
    template = {s: r for s, r in _cp(catalog, "sft-1").runs.items()}
    checkpoints = []
    for i in range(1000):
        team, stage = f"team{i // 3:03d}", ("base", "sft", "dpo")[i % 3]
        v = (i % 97) / 97
        runs = {
            suite: replace(
                run,
                run_dir=Path(f"/nonexistent/{i}/{suite}"),
                metrics={
                    **run.metrics,
                    run.primary: Metric(run.primary, v, 0.01, max(0, v - 0.1), min(1, v + 0.1), 12),
                },
            )
            for suite, run in template.items()
        }
        checkpoints.append(
            CheckpointView(
                id=f"c{i}", label=f"{stage}-{i}", reference=f"replay:/x/{i}", team=team, stage=stage,
                base_model="smollm2", parent=None if stage == "base" else f"{('base', 'sft')[i % 3 - 1]}-{i - 1}",
                runs=runs,
            )
        )  # fmt: skip
    big = Catalog(tuple(checkpoints), catalog.reference_settings)
    start = time.perf_counter()
    figures = site_figures(big)
    seconds = time.perf_counter() - start
    assert seconds < 30
    text = json.dumps(figures, allow_nan=False)
    assert len(text) < 5_000_000
    scatter = figures["safety_vs_helpfulness"]
    assert sum(len(t["x"]) for t in scatter["data"] if t["name"] != "lineage") == 1000
    # 666 parent -> child links: more than MAX_ARROWS, so one line trace of segments, no annotations
    assert 666 > MAX_ARROWS and scatter["layout"]["annotations"] == []
    (lineage,) = [t for t in scatter["data"] if t["name"] == "lineage"]
    assert len(lineage["x"]) == 3 * 666
    deltas = figures["stage_deltas"]["data"]
    assert [t["name"] for t in deltas] == ["gsm8k", "safety", "alice-synth"]  # a trace per suite
    assert all(len(t["x"]) == 666 for t in deltas)
    assert len(figures["alice_categories"]["data"]) == 6
    assert build_catalog([]).checkpoints == ()
