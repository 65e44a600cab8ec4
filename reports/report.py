"""`harness report RUN_OR_CHECKPOINT... --out DIR`: one Markdown and one self-contained HTML report.

Sections: metric tables per checkpoint and suite (value, 95% CI, n); the leaderboard's plots (plotly,
HTML only: no offline PNG renderer is installed); a paired comparison of each checkpoint with its parent
when both are covered (else of the two checkpoints when exactly two are named): deltas with CIs per
suite and qualitative wins/losses; response length and refusal statistics; a model card.

DIR receives report.md, report.html, plotly.min.js (copied from the installed plotly package, so the page
works offline from file://) and safety_verdicts.csv (every per-sample safety verdict).
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import MissingExtraError
from harness.runs.catalog import Catalog, CheckpointView, RunView
from harness.runs.manifest import now_iso
from harness.runs.store import SampleRecord
from harness.version import __version__
from reports.calibration import CALIBRATION_FIGURE_KEY, CalibrationSection, calibration_section
from reports.diversity import DiversitySection, diversity_section
from reports.efficiency import EfficiencySection, efficiency_section
from reports.model_card import ModelCard, build_card, read_card
from reports.qualitative import Pair, compare_pair
from reports.render import render
from reports.sections import (
    CheckpointTables,
    LengthRow,
    RefusalSection,
    is_safety,
    length_row,
    metric_tables,
    reasoning_note,
    refusal_section,
)
from reports.select import Selection, select
from reports.sweeps import SWEEP_FIGURE_KEY, SweepSection, sweep_section

PLOTLY_JS = "plotly.min.js"
VERDICTS_CSV = "safety_verdicts.csv"


@dataclass(frozen=True)
class Figure:
    key: str
    title: str
    figure: Mapping[str, Any]


@dataclass(frozen=True)
class ReportSummary:
    out: Path
    files: tuple[Path, ...]
    checkpoints: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    figures: tuple[str, ...]
    missing_card_fields: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        lines = [f"report on {len(self.checkpoints)} checkpoint(s): {', '.join(self.checkpoints)}"]
        lines += [f"  compared {a} -> {b}" for a, b in self.pairs]
        lines.append(f"  {len(self.figures)} plot(s) in report.html")
        if self.missing_card_fields:
            lines.append(
                f"  model card: {', '.join(self.missing_card_fields)} not provided "
                "(registry entry details or --card FILE)"
            )
        lines += [f"wrote {path}" for path in self.files]
        return "\n".join(lines)


def _pairs(order: Sequence[CheckpointView]) -> list[tuple[CheckpointView, CheckpointView, str]]:
    by_label = {c.label: c for c in order}
    pairs = [
        (by_label[c.parent], c, f"{c.label} ({c.stage or 'no stage'}) against its parent {c.parent}")
        for c in order
        if c.parent and c.parent in by_label and by_label[c.parent] is not c
    ]
    if not pairs and len(order) == 2:
        pairs = [(order[0], order[1], "The two checkpoints named, in that order")]
    return pairs


def _figures(catalog: Catalog) -> list[Figure]:
    from reports.plots import site_figures

    figures = []
    for key, figure in site_figures(catalog).items():
        title = figure.get("layout", {}).get("title", key)
        text = title.get("text", key) if isinstance(title, Mapping) else str(title)
        figures.append(Figure(key, str(text), figure))
    return figures


def _copy_plotly(out: Path) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("plotly")
    folders = spec.submodule_search_locations if spec is not None else None
    source = Path(folders[0]) / "package_data" / PLOTLY_JS if folders else None
    if source is None or not source.is_file():
        raise MissingExtraError(
            "The report's plots need plotly.min.js from the plotly package, which is not installed.",
            "pip install 'post-train-harness[site]'",
        )
    target = out / PLOTLY_JS
    shutil.copyfile(source, target)
    return target


def _registry_entries(runs_root: Path) -> tuple[dict[str, dict[str, Any]], Any]:
    from harness.lineage import CheckpointRegistry, registry_path

    path = registry_path(runs_root)
    registry = CheckpointRegistry(path) if path.is_file() else None
    entries = {e.name: e.to_record() for e in registry.entries} if registry else {}
    return entries, registry


def _write_verdicts(path: Path, sections: Sequence[RefusalSection]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["checkpoint", "suite", "judge", "sample_id", "subset", "category", "verdict", "expected", "safe"]
        )
        for s in sections:
            for v in s.verdicts:
                writer.writerow(
                    [s.checkpoint, s.suite, s.judge or "", v.sample_id, v.subset, v.category, v.verdict,
                     v.expected, int(v.safe)]
                )  # fmt: skip


def build_report(
    arguments: Sequence[str],
    out: Path,
    runs_root: Path,
    card_file: Path | None = None,
    examples: int = 3,
    sweep_key: str = "beta",
) -> ReportSummary:
    selection: Selection = select(arguments, runs_root)
    catalog, order = selection.catalog, selection.order
    card = read_card(card_file) if card_file is not None else {}
    out.mkdir(parents=True, exist_ok=True)

    records: dict[Path, tuple[SampleRecord, ...]] = {}

    def samples(run: RunView) -> tuple[SampleRecord, ...]:
        if run.run_dir not in records:
            records[run.run_dir] = run.samples()
        return records[run.run_dir]

    tables: list[CheckpointTables] = metric_tables(order, catalog)
    suites = catalog.suites()
    lengths: list[LengthRow] = [
        length_row(c.label, c.runs[s], samples(c.runs[s])) for s in suites for c in order if s in c.runs
    ]
    refusals = [
        refusal_section(c.label, run, samples(run))
        for c in order
        for run in c.runs.values()
        if is_safety(run)
    ]
    efficiency: EfficiencySection = efficiency_section(order, samples)
    diversity: DiversitySection = diversity_section(order, samples)
    pairs: list[Pair] = [compare_pair(a, b, reason, catalog, examples) for a, b, reason in _pairs(order)]
    figures = _figures(catalog)
    sweeps: SweepSection = sweep_section(order, catalog, key=sweep_key)
    if sweeps.families:
        figures.append(Figure(SWEEP_FIGURE_KEY, sweeps.title, sweeps.figure))
    calibration: CalibrationSection = calibration_section(order, samples)
    if calibration.measured:
        figures.append(Figure(CALIBRATION_FIGURE_KEY, calibration.title, calibration.figure))

    entries, registry = _registry_entries(runs_root)
    subject = pairs[0].b if pairs else order[-1]
    lineage: list[str] = []
    if registry is not None and registry.by_name(subject.label) is not None:
        lineage = [e.name for e in registry.lineage(registry.by_name(subject.label))]
    model_card: ModelCard = build_card(subject, order, card, card_file, entries, lineage)

    context = {
        "title": f"Evaluation report: {', '.join(c.label for c in order)}",
        "generated_at": now_iso(),
        "harness_version": __version__,
        "order": order,
        "suites": suites,
        "catalog": catalog,
        "tables": tables,
        "summary": [
            (
                ct.checkpoint.label,
                [
                    next((r for t in ct.suites if t.suite == s for r in t.rows if r.primary), None)
                    for s in suites
                ],
                [next((reasoning_note(t.reasoning) for t in ct.suites if t.suite == s), "") for s in suites],
            )
            for ct in tables
        ],
        "pairs": pairs,
        "figures": figures,
        "lengths": lengths,
        "refusals": refusals,
        "efficiency": efficiency,
        "diversity": diversity,
        "calibration": calibration,
        "sweeps": sweeps,
        "card": model_card,
        "plotly_js": PLOTLY_JS,
        "verdicts_csv": VERDICTS_CSV if refusals else None,
    }
    plotly_js = _copy_plotly(out)
    files = [out / "report.md", out / "report.html", plotly_js]
    files[0].write_text(render("report.md", context), encoding="utf-8")
    files[1].write_text(render("report.html", context), encoding="utf-8")
    if refusals:
        _write_verdicts(out / VERDICTS_CSV, refusals)
        files.append(out / VERDICTS_CSV)
    return ReportSummary(
        out=out,
        files=tuple(files),
        checkpoints=tuple(c.label for c in order),
        pairs=tuple((p.a.label, p.b.label) for p in pairs),
        figures=tuple(f.title for f in figures),
        missing_card_fields=tuple(model_card.missing),
    )
