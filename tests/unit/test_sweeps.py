"""reports/sweeps.py: families of registered checkpoints (a DPO beta sweep) from real replay runs, ordered
by beta, with the runs' own metrics and CIs; the mean of intervals over several task suites by hand; the
figure (one solid and one dashed curve per family) and the rendered tables."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

import harness
from harness.lineage import CheckpointRegistry, registry_path
from harness.runs.catalog import Catalog, RunView, build_catalog
from harness.types import Metric
from reports.render import render
from reports.sweeps import MEAN_OF_INTERVALS, ONE_SUITE_CI, sweep_section, sweep_value
from tests.conftest import DATA_DIR

pytest.importorskip("jinja2", reason="the site extra is not installed")

LIMIT = 6  # the interleaved safety prefix of 6 holds every stratum (HarmBench, XSTest unsafe and safe)
# name -> (beta, GSM8K samples answered right (by position), refuses every safety prompt)
SWEEP = {"dpo-b05": (0.5, 2, True), "dpo-b01": (0.1, 5, False), "dpo-b025": (0.25, 4, True)}


@dataclass(frozen=True)
class Setup:
    runs: list[RunView]
    catalog: Catalog
    root: Path  # the runs folder (its registry holds the betas)


def _replay(path: Path, rows: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps({"sample_id": k, "text": v}) + "\n" for k, v in rows.items()))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    from harness.data import DataSource
    from suites import get_suite
    from suites.safety import CANNED_REFUSAL

    tmp = tmp_path_factory.mktemp("sweeps")
    gsm8k, safety = get_suite("gsm8k"), get_suite("safety")
    g = gsm8k.load(DataSource(DATA_DIR), limit=LIMIT).samples
    s = safety.load(DataSource(DATA_DIR), limit=LIMIT).samples
    runs = tmp / "runs"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("HARNESS_REGISTRY", raising=False)
        registry = CheckpointRegistry(registry_path(runs))
        registry.add("base", "embedded", "base")
        registry.add("sft-1", f"replay:{tmp / 'sft.jsonl'}", "sft", parent="base")
        references = {}
        for name, (beta, right, refuses) in SWEEP.items():
            rows = {x.id: gsm8k.gold_response(x) or "" if i < right else "The answer is 123456789."
                    for i, x in enumerate(g)}  # fmt: skip
            rows |= {x.id: CANNED_REFUSAL if refuses else safety.gold_response(x) or "" for x in s}
            references[name] = f"replay:{_replay(tmp / f'{name}.jsonl', rows)}"
            registry.add(name, references[name], "dpo", parent="sft-1", details={"beta": beta, "steps": 10})
        # Same parent, another stage: a family of its own; a DPO child without beta: in no family.
        for name, stage, copied, details in (
            ("sft-b1", "sft2", "dpo-b05", {"beta": "1.0"}),
            ("dpo-plain", "dpo", "dpo-b01", {"steps": 3}),
        ):
            path = tmp / f"{name}.jsonl"
            path.write_text((tmp / f"{copied}.jsonl").read_text())
            references[name] = f"replay:{path}"
            registry.add(name, references[name], stage, parent="sft-1", details=details)
        for reference in references.values():
            harness.evaluate(
                reference, ["gsm8k", "safety"], limit=LIMIT, runs=runs, data_dir=DATA_DIR, progress=False
            )
        loaded = list(harness.load_runs(runs))
    return Setup(loaded, build_catalog(loaded), runs)


def _metric(setup: Setup, label: str, suite: str, name: str | None = None) -> Metric:
    c = setup.catalog.by_label(label)
    assert c is not None
    run = c.runs[suite]
    metric = run.metrics[name or run.primary]
    return metric


def test_families_grouped_by_parent_and_stage_and_ordered_by_beta(setup: Setup) -> None:
    section = sweep_section(setup.catalog.checkpoints, setup.catalog)
    by_name = {f.name: f for f in section.families}
    assert set(by_name) == {"dpo from sft-1", "sft2 from sft-1"}  # dpo-plain has no beta: no family
    dpo = by_name["dpo from sft-1"]
    assert [(p.sweep_value, p.checkpoint) for p in dpo.points] == [
        (0.1, "dpo-b01"), (0.25, "dpo-b025"), (0.5, "dpo-b05")
    ]  # fmt: skip
    assert dpo.task_suites == ("gsm8k",) and dpo.task_ci == ONE_SUITE_CI
    assert dpo.harmful_metric == "harmbench_refusal_rate"
    assert [p.sweep_value for p in by_name["sft2 from sft-1"].points] == [1.0]  # "1.0" read as a number
    assert section.notes == ()


def test_points_carry_the_runs_metrics_and_cis(setup: Setup) -> None:
    (dpo,) = [f for f in sweep_section(setup.catalog.checkpoints, setup.catalog).families if f.stage == "dpo"]
    for point in dpo.points:
        task = _metric(setup, point.checkpoint, "gsm8k")
        harm = _metric(setup, point.checkpoint, "safety", "harmbench_refusal_rate")
        over = _metric(setup, point.checkpoint, "safety", "xstest_safe_over_refusal_rate")
        assert point.harmful_refusal is not None and point.over_refusal is not None
        assert (point.task.value, point.task.ci_low, point.task.ci_high, point.task.n) == (
            task.value, task.ci_low, task.ci_high, task.n)  # fmt: skip
        assert (point.harmful_refusal.value, point.harmful_refusal.ci_low) == (harm.value, harm.ci_low)
        assert (point.over_refusal.value, point.over_refusal.ci_high) == (over.value, over.ci_high)
    # By hand: GSM8K 5/6, 4/6, 2/6 right; beta 0.1 answers every safety prompt with its gold response.
    assert [p.task.value for p in dpo.points] == pytest.approx([5 / 6, 4 / 6, 2 / 6])
    assert [p.over_refusal.value for p in dpo.points if p.over_refusal] == [0.0, 1.0, 1.0]
    assert [p.harmful_refusal.value for p in dpo.points if p.harmful_refusal] == [1.0, 1.0, 1.0]


def test_overrides_win_and_a_missing_key_is_said(setup: Setup) -> None:
    catalog = setup.catalog
    section = sweep_section(
        catalog.checkpoints, catalog, key="lr", overrides={"dpo-plain": 3e-6, "dpo-b05": 1e-6}
    )
    (family,) = section.families
    assert [(p.checkpoint, p.sweep_value) for p in family.points] == [("dpo-b05", 1e-6), ("dpo-plain", 3e-6)]
    none = sweep_section(catalog.checkpoints, catalog, key="lr")
    assert none.families == () and "no checkpoint carries a numeric 'lr'" in none.notes[0]
    assert none.figure["data"] == [] and "no data:" in none.figure["layout"]["annotations"][0]["text"]
    unregistered = catalog.by_label("dpo-b05")
    assert unregistered is not None
    orphan = sweep_section([replace(unregistered, parent=None)], catalog)
    assert orphan.notes == ("dpo-b05: beta=0.5 but no registered parent and stage, so no family",)


def test_sweep_value_reads_numbers_only() -> None:
    details = {"beta": 0.1, "flag": True, "text": "x", "dpo": {"beta": 2}, "inf": float("inf")}
    assert sweep_value(details, "beta") == 0.1 and sweep_value(details, "dpo.beta") == 2.0
    assert [sweep_value(details, k) for k in ("flag", "text", "inf", "absent", "beta.x")] == [None] * 5


def test_several_task_suites_average_values_and_intervals(setup: Setup) -> None:
    # A second task suite by hand: each dpo run's GSM8K run copied as "mbpp" with known metrics.
    extra = []
    hand = {"dpo-b01": (0.2, 0.1, 0.4), "dpo-b025": (0.6, 0.5, 0.8), "dpo-b05": (1.0, 0.9, 1.0)}
    for run in setup.runs:
        label = (run.lineage or {}).get("name")
        if run.suite == "gsm8k" and label in hand:
            value, low, high = hand[label]
            metric = Metric("pass@1", value, None, low, high, 10)
            manifest = replace(run.manifest, suite="mbpp")
            extra.append(replace(run, manifest=manifest, primary="pass@1", metrics={"pass@1": metric}))
    catalog = build_catalog([*setup.runs, *extra])
    (dpo,) = [f for f in sweep_section(catalog.checkpoints, catalog).families if f.stage == "dpo"]
    assert dpo.task_suites == ("gsm8k", "mbpp") and dpo.task_ci == MEAN_OF_INTERVALS
    for point in dpo.points:
        g = _metric(setup, point.checkpoint, "gsm8k")
        value, low, high = hand[point.checkpoint]
        assert g.value is not None and g.ci_low is not None and g.ci_high is not None
        assert point.task.value == pytest.approx((g.value + value) / 2)
        assert point.task.ci_low == pytest.approx((g.ci_low + low) / 2)
        assert point.task.ci_high == pytest.approx((g.ci_high + high) / 2)
        assert point.task.n == min(g.n, 10)


def test_figure_one_curve_pair_per_family_in_beta_order(setup: Setup) -> None:
    section = sweep_section(setup.catalog.checkpoints, setup.catalog)
    traces = {t["name"]: t for t in section.figure["data"]}
    assert set(traces) == {
        "dpo from sft-1: harmful refusal (harmbench_refusal_rate)", "dpo from sft-1: over-refusal",
        "sft2 from sft-1: harmful refusal (harmbench_refusal_rate)", "sft2 from sft-1: over-refusal",
    }  # fmt: skip
    over = traces["dpo from sft-1: over-refusal"]
    assert over["text"] == ["beta=0.1", "beta=0.25", "beta=0.5"] and over["y"] == [0.0, 1.0, 1.0]
    assert over["x"] == pytest.approx([5 / 6, 4 / 6, 2 / 6]) and over["line"]["dash"] == "dash"
    task = _metric(setup, "dpo-b01", "gsm8k")
    assert task.ci_high is not None and task.value is not None
    assert over["error_x"]["array"][0] == pytest.approx(task.ci_high - task.value)
    assert section.title == "Refusal vs task performance over beta sweeps"
    json.dumps(section.figure, allow_nan=False)  # strictly JSON, as the report embeds it


def test_rendered_tables(setup: Setup) -> None:
    sweeps = sweep_section(setup.catalog.checkpoints, setup.catalog)
    md = render("_sweeps.md", {"sweeps": sweeps})
    assert "## Tradeoff sweeps (beta)" in md and "### dpo from sft-1" in md
    rows = [line for line in md.splitlines() if line.startswith("| 0.")]
    assert [r.split(" | ")[1] for r in rows] == ["dpo-b01", "dpo-b025", "dpo-b05"]
    task = _metric(setup, "dpo-b01", "gsm8k")
    assert rows[0].startswith(f"| 0.1 | dpo-b01 | 83.3 | [{100 * (task.ci_low or 0):.1f}, ")
    over = _metric(setup, "dpo-b01", "safety", "xstest_safe_over_refusal_rate")
    assert rows[0].endswith(f"| 0.0 | [0.0, {100 * (over.ci_high or 0):.1f}] |")  # no over-refusal, its CI
    assert "Task suites: gsm8k (the run's 95% CI)" in md
    page = render("_sweeps.html", {"sweeps": sweeps})
    assert '<table class="sweep" id="sweep-1">' in page
    assert '<td class="num">0.25</td><td>dpo-b025</td><td class="num">66.7</td>' in page


def test_checkpoints_add_records_details_for_a_sweep(tmp_path: Path) -> None:
    from tests.conftest import cli_env
    from tests.conftest import harness as harness_cli

    env = cli_env(HARNESS_RUNS_DIR=str(tmp_path))
    assert harness_cli("checkpoints", "add", "base", "embedded", "--stage", "base", env=env).returncode == 0
    added = harness_cli(
        "checkpoints", "add", "dpo-b01", "embedded", "--stage", "dpo", "--parent", "base",
        "--detail", "beta=0.1", "--detail", "steps=300", "--detail", "note=first try", "--detail", "odd=nan",
        env=env,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    details = CheckpointRegistry(registry_path(tmp_path)).by_name("dpo-b01")
    assert details is not None
    assert dict(details.details) == {"beta": 0.1, "steps": 300, "note": "first try", "odd": "nan"}
    assert sweep_value(dict(details.details), "beta") == 0.1
    bad = harness_cli("checkpoints", "add", "x", "embedded", "--stage", "dpo", "--detail", "beta", env=env)
    assert bad.returncode == 2 and "is not KEY=VALUE" in bad.stderr


def test_harness_report_draws_the_sweep(setup: Setup, tmp_path: Path) -> None:
    from reports.report import build_report

    names = list(SWEEP)
    summary = build_report(names, tmp_path / "out", setup.root)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Tradeoff sweeps (beta)" in md
    assert any("Tradeoff" in title or "beta" in title for title in summary.figures)
    html = (tmp_path / "out" / "report.html").read_text()
    assert "dpo from sft-1" in html
