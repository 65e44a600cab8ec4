"""The leaderboard's index data: one row per checkpoint, a cell per suite, references, lineage.

Pure data (JSON-able dicts) built from a Catalog; the site writes it to `data/index.js` and the
checkpoint pages render from it. Values stay fractions in [0, 1]; the browser formats them as %.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DataError
from harness.runs.catalog import Catalog, CheckpointView, RunView, average, primary_value

REFERENCE_FILE = Path(__file__).resolve().parent / "reference_scores.json"


def run_page(checkpoint_id: str, suite: str) -> str:
    """Site-relative path of a run's sample browser (also the stem of its data file)."""
    return f"runs/{checkpoint_id}/{suite}.html"


def checkpoint_page(checkpoint_id: str) -> str:
    return f"checkpoints/{checkpoint_id}.html"


def _describe_settings(run: RunView) -> dict[str, Any]:
    m = run.manifest
    return {
        "version": m.suite_version,
        "hash": m.settings_hash,
        "judge": run.judge,
        "limit": m.limit,
        "n": m.n_samples,
    }


def incomparable_reason(run: RunView, reference: RunView | None, catalog: Catalog) -> str | None:
    """Why a cell is not ranked with its column (None: it is)."""
    if not run.complete:
        return f"run is {run.manifest.status}, not complete: not ranked"
    if catalog.comparable(run):
        return None
    if reference is None:
        return "no reference settings for this suite: not ranked"
    mine, ref = run.manifest, reference.manifest
    parts = []
    if mine.suite_version != ref.suite_version:
        parts.append(f"suite version {mine.suite_version} (column: {ref.suite_version})")
    if run.judge != reference.judge:
        parts.append(f"safety judge {run.judge} (column: {reference.judge})")
    if mine.limit != ref.limit:
        parts.append(f"--limit {mine.limit or 'none'} (column: {ref.limit or 'none'})")
    if mine.generation != ref.generation:
        parts.append("other generation settings")
    if not parts:
        parts.append(f"settings hash {mine.settings_hash} (column: {ref.settings_hash})")
    return "run under other settings than the column: " + "; ".join(parts) + ": not ranked"


def reference_runs(catalog: Catalog) -> dict[str, RunView]:
    """One run per suite carrying the column's reference settings (to explain differences)."""
    out: dict[str, RunView] = {}
    for checkpoint in catalog.checkpoints:
        for suite, run in checkpoint.runs.items():
            if suite not in out and catalog.comparable(run):
                out[suite] = run
    return out


def _parents(catalog: Catalog) -> dict[str, CheckpointView | None]:
    """checkpoint id -> parent checkpoint (same team first, then any team), by registry name."""
    by_team_label = {(c.team, c.label): c for c in catalog.checkpoints}
    by_label: dict[str, CheckpointView] = {}
    for c in catalog.checkpoints:
        by_label.setdefault(c.label, c)
    out: dict[str, CheckpointView | None] = {}
    for c in catalog.checkpoints:
        if c.parent is None:
            out[c.id] = None
            continue
        out[c.id] = by_team_label.get((c.team, c.parent)) or by_label.get(c.parent)
    return out


def lineage_chain(
    checkpoint: CheckpointView, parents: Mapping[str, CheckpointView | None]
) -> list[dict[str, Any]]:
    """Root first: [{label, id|None, stage}], following parents (cycle-safe)."""
    chain = [{"label": checkpoint.label, "id": checkpoint.id, "stage": checkpoint.stage}]
    seen = {checkpoint.id}
    current: CheckpointView | None = checkpoint
    while current is not None and current.parent is not None:
        parent = parents.get(current.id)
        if parent is None:
            chain.append({"label": current.parent, "id": None, "stage": None})  # not on this board
            break
        if parent.id in seen:
            break
        seen.add(parent.id)
        chain.append({"label": parent.label, "id": parent.id, "stage": parent.stage})
        current = parent
    chain.reverse()
    if chain and chain[0]["id"] is not None and checkpoint.base_model:
        root = chain[0]
        root_is_base = root["label"] == checkpoint.base_model or root["stage"] == "base"
        if not root_is_base:
            chain.insert(0, {"label": checkpoint.base_model, "id": None, "stage": "base"})
    return chain


def _cell(checkpoint_id: str, run: RunView, catalog: Catalog, refs: Mapping[str, RunView]) -> dict[str, Any]:
    metric = run.primary_metric()
    reason = incomparable_reason(run, refs.get(run.suite), catalog)
    return {
        "metric": run.primary,
        "value": None if metric is None else metric.value,
        "lo": None if metric is None else metric.ci_low,
        "hi": None if metric is None else metric.ci_high,
        "n": 0 if metric is None else metric.n,
        "ranked": reason is None and metric is not None and metric.value is not None,
        "reason": reason,
        "judge": run.judge,
        "run": run_page(checkpoint_id, run.suite),
    }


@dataclass(frozen=True)
class IndexData:
    payload: dict[str, Any]  # what data/index.js holds
    parents: Mapping[str, CheckpointView | None]
    refs: Mapping[str, RunView]


def build_index(catalog: Catalog, references: Sequence[Mapping[str, Any]]) -> IndexData:
    suites = catalog.suites()
    refs = reference_runs(catalog)
    parents = _parents(catalog)
    rows: list[dict[str, Any]] = []
    for c in catalog.checkpoints:
        cells = {suite: _cell(c.id, run, catalog, refs) for suite, run in c.runs.items()}
        values = [primary_value(c, s, catalog) for s in suites]
        parent = parents.get(c.id)
        rows.append(
            {
                "id": c.id,
                "label": c.label,
                "reference": c.reference,
                "team": c.team,
                "stage": c.stage,
                "base_model": c.base_model,
                "parent": c.parent,
                "parent_id": None if parent is None else parent.id,
                "lineage": lineage_chain(c, parents),
                "href": checkpoint_page(c.id),
                "cells": cells,
                "average": average(values),
                "average_n": sum(v is not None for v in values),
                "rank": None,
            }
        )
    # Rank by the average of ranked cells, among rows ranked on as many suites as the most complete row:
    # an average over fewer suites is shown but would not be comparable. Ties share the better rank.
    full = max((r["average_n"] for r in rows), default=0)
    ranked = sorted(
        (r for r in rows if r["average"] is not None and r["average_n"] == full), key=lambda r: -r["average"]
    )
    previous: tuple[float, int] | None = None
    for position, row in enumerate(ranked, start=1):
        rank = previous[1] if previous is not None and previous[0] == row["average"] else position
        row["rank"] = rank
        previous = (row["average"], rank)
    columns = []
    for suite in suites:
        ref = refs.get(suite)
        columns.append(
            {
                "suite": suite,
                "metric": ref.primary if ref is not None else _any_primary(catalog, suite),
                "settings": None if ref is None else _describe_settings(ref),
            }
        )
    payload = {
        "suites": columns,
        "rows": rows,
        "references": [dict(r) for r in references],
        "ranked_suites": full,
        "filters": {
            "team": sorted({r["team"] for r in rows if r["team"]}),
            "stage": sorted({r["stage"] for r in rows if r["stage"]}),
            "base_model": sorted({r["base_model"] for r in rows if r["base_model"]}),
        },
    }
    return IndexData(payload=payload, parents=parents, refs=refs)


def _any_primary(catalog: Catalog, suite: str) -> str:
    return next((c.runs[suite].primary for c in catalog.checkpoints if suite in c.runs), "")


def load_references(path: Path | None) -> list[dict[str, Any]]:
    """Published reference rows: None = the shipped file; a path named 'none' = no rows."""
    if path is not None and path.name == "none" and not path.exists():
        return []
    source = REFERENCE_FILE if path is None else path
    try:
        payload = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            f"The reference scores file {source} does not exist.",
            "Pass --references FILE, or --references none for no reference rows.",
        ) from None
    except json.JSONDecodeError as error:
        raise DataError(
            f"The reference scores file {source} is not valid JSON (line {error.lineno}: {error.msg}).",
            "Fix the file; it is a list of {model, regime, source, scores}.",
        ) from None
    rows = payload.get("references") if isinstance(payload, dict) else payload
    if not isinstance(rows, list):
        raise DataError(
            f"The reference scores file {source} holds no list of references.",
            'Write a JSON list (or {"references": [...]}) of {model, regime, source, scores}.',
        )
    out = []
    for number, row in enumerate(rows, start=1):
        problem = _reference_problem(row)
        if problem:
            raise DataError(
                f"Reference {number} in {source} is malformed: {problem}.",
                "Each reference is {model, regime, source (URL), scores: {suite: percent}}.",
            )
        out.append(
            {
                "model": row["model"],
                "regime": row["regime"],
                "source": row["source"],
                "note": str(row.get("note", "")),
                # Published numbers are percentages; the site keeps fractions.
                "scores": {str(k): float(v) / 100.0 for k, v in row["scores"].items()},
            }
        )
    return out


def _reference_problem(row: object) -> str | None:
    if not isinstance(row, dict):
        return "not an object"
    for key in ("model", "regime", "source"):
        if not isinstance(row.get(key), str) or not row[key]:
            return f"'{key}' must be a non-empty string"
    if not str(row["source"]).startswith(("http://", "https://")):
        return "'source' must be a URL"
    scores = row.get("scores")
    if not isinstance(scores, dict) or not all(isinstance(v, int | float) for v in scores.values()):
        return "'scores' must map suite names to numbers"
    if not all(0 <= float(v) <= 100 for v in scores.values()):
        return "'scores' are percentages in [0, 100]"
    return None
