"""The leaderboard's index data: one row per checkpoint, a cell per suite, references, lineage.

Pure data (JSON-able dicts) built from a Catalog; the site writes it to `data/index.js` and the
checkpoint pages render from it. Values stay fractions in [0, 1]; the browser formats them as %.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DataError
from harness.runs.catalog import Catalog, CheckpointView, RunView, average, primary_value
from harness.runs.provenance import SpotCheck, is_replay, read_spot_checks
from leaderboard.class_config import (
    TIE_RULES,
    ClassConfig,
    column_of,
    differences,
    expected_columns,
    rank_rows,
    row_reasons,
)
from leaderboard.spot_check_file import still_holds

MAX_RANKED_SEARCH = 12  # columns searched for the ranked set (2^12 subsets); a board has ~6
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
    """Why a cell is not ranked with its column (None: it is), naming each differing setting."""
    if not run.complete:
        return f"run is {run.manifest.status}, not complete: not ranked"
    if catalog.comparable(run):
        return None
    if reference is None:
        return "no reference settings for this suite: not ranked"
    parts = differences(run, column_of(reference), "column")
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


def reasoning_cell(run: RunView) -> dict[str, Any] | None:
    """What thinking cost a reasoning run, for its index cell: the share that ended inside reasoning (no
    answer) and the mean thinking length, in tokens (characters when the backend counted none)."""
    summary = run.reasoning
    if summary is None:
        return None
    counted = bool(summary.reasoning_tokens.mean or summary.answer_tokens.mean)
    thinking = summary.reasoning_tokens if counted else summary.reasoning_chars
    return {
        "mode": summary.mode,
        "ended": summary.ended_inside.value,
        "n": summary.ended_inside.n,
        "thinking": thinking.mean,
        "unit": "tokens" if counted else "characters",
    }


def _cell(checkpoint_id: str, run: RunView, catalog: Catalog, refs: Mapping[str, RunView]) -> dict[str, Any]:
    metric = run.primary_metric()
    reason = incomparable_reason(run, refs.get(run.suite), catalog)
    cell: dict[str, Any] = {
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
    reasoning = reasoning_cell(run)
    if reasoning is not None:  # only reasoning runs carry it: other boards' data stay as they were
        cell["reasoning"] = reasoning
    return cell


class SpotChecks:
    """The staff's spot checks (`harness leaderboard verify --site-data`), read once per team folder. A
    check counts only while the team's folder holds exactly the responses it checked."""

    def __init__(self) -> None:
        self._by_root: dict[Path, Mapping[str, SpotCheck]] = {}

    def badge(self, checkpoint: CheckpointView) -> dict[str, Any] | None:
        if checkpoint.team is None or not checkpoint.runs:
            return None
        root = next(iter(checkpoint.runs.values())).run_dir.parents[2]  # <team>/<checkpoint>/<suite@v>/<hash>
        if root not in self._by_root:
            self._by_root[root] = read_spot_checks(root)
        check = self._by_root[root].get(checkpoint.reference)
        if check is None:
            return None
        return {
            "checked": check.checked,
            "agreed": check.agreed,
            "passed": check.passed,
            "date": check.date[:10],
            "current": still_holds(root, check),
        }


@dataclass(frozen=True)
class IndexData:
    payload: dict[str, Any]  # what data/index.js holds
    parents: Mapping[str, CheckpointView | None]
    refs: Mapping[str, RunView]


def build_index(
    catalog: Catalog, references: Sequence[Mapping[str, Any]], config: ClassConfig | None = None
) -> IndexData:
    """The index payload. Ranks compare rows over one set of suites only: the class config's (rows
    qualify by `class_config.row_reasons`), else the set that ranks the most cells (`_ranked_suites`)."""
    suites = catalog.suites()
    if config is not None:  # the class's columns first, in its order
        suites = [*config.suites, *(s for s in suites if s not in config.suites)]
    refs = reference_runs(catalog)
    parents = _parents(catalog)
    spot_checks = SpotChecks()
    rows: list[dict[str, Any]] = []
    for c in catalog.checkpoints:
        cells = {suite: _cell(c.id, run, catalog, refs) for suite, run in c.runs.items()}
        values = [primary_value(c, s, catalog) for s in suites]
        parent = parents.get(c.id)
        runs = list(c.runs.values())
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
                "covered": [s for s, v in zip(suites, values, strict=True) if v is not None],
                "rank": None,
                "qualified": False,
                "unranked_reasons": [],
                "replay": any(is_replay(run.manifest) for run in runs),
                "spot_check": spot_checks.badge(c),
                "finished": max((run.manifest.created_at for run in runs), default=""),
                "_checkpoint": c,
            }
        )
    ranked_suites, why_none = _ranked_suites(rows, suites, config)
    _rank(rows, ranked_suites, catalog, config, refs)
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
        "ranked_suites": len(ranked_suites),
        "ranked_suite_names": list(ranked_suites),
        "unranked_note": why_none,
        "class_config": None if config is None else config.describe(),
        "tie_rule": TIE_RULES[config.tie_rule if config is not None else "competition"],
        "filters": {
            "team": sorted({r["team"] for r in rows if r["team"]}),
            "stage": sorted({r["stage"] for r in rows if r["stage"]}),
            "base_model": sorted({r["base_model"] for r in rows if r["base_model"]}),
        },
    }
    return IndexData(payload=payload, parents=parents, refs=refs)


def _ranked_suites(
    rows: Sequence[Mapping[str, Any]], suites: Sequence[str], config: ClassConfig | None
) -> tuple[tuple[str, ...], str | None]:
    """The one set of suites that ranks are computed over, and why nobody is ranked (when so).

    With a class config: its suites. Without: the set of columns that ranks the most cells (rows
    covering it x its size; a row may cover more), the larger set on equal cells. Two different sets
    that rank as many cells and are as large would make the choice arbitrary: then no row is ranked."""
    if config is not None:
        return tuple(config.suites), None
    covered = [frozenset(r["covered"]) for r in rows]
    if len(suites) <= MAX_RANKED_SEARCH:
        candidates = [s for n in range(1, len(suites) + 1) for s in itertools.combinations(suites, n)]
    else:  # too many subsets to try: the sets some row covers
        candidates = [tuple(x for x in suites if x in c) for c in set(covered) if c]
    best: list[tuple[int, int, tuple[str, ...]]] = []
    for subset in candidates:
        wanted = frozenset(subset)
        n_rows = sum(wanted <= c for c in covered)
        if n_rows:
            best.append((n_rows * len(subset), len(subset), subset))
    if not best:
        return (), None
    best.sort(key=lambda t: (-t[0], -t[1]))
    if len(best) > 1 and best[0][:2] == best[1][:2]:
        sets = " and ".join("{" + ", ".join(b[2]) + "}" for b in best[:2])
        return (), (
            f"Not ranked: rows cover different sets of suites ({sets}), and ranking either would compare "
            "averages over different suites. A class config (leaderboard.yaml) pins which suites rank."
        )
    return best[0][2], None


def _rank(
    rows: list[dict[str, Any]],
    ranked: Sequence[str],
    catalog: Catalog,
    config: ClassConfig | None,
    refs: Mapping[str, RunView],
) -> None:
    """Fill rank, qualified, unranked_reasons and (for ranked rows) the average over the ranked suites."""
    columns = expected_columns(config) if config is not None else None
    scores: list[tuple[str, float, str]] = []
    for row in rows:
        checkpoint: CheckpointView = row.pop("_checkpoint")
        if columns is not None:
            reasons = row_reasons(checkpoint, columns)
        else:
            reasons = _missing(checkpoint, ranked, catalog, refs) if ranked else []
        values = [primary_value(checkpoint, s, catalog) for s in ranked]
        if ranked and not reasons and all(v is not None for v in values):
            row["qualified"] = True
            row["average"] = average(values)
            row["average_n"] = len(values)
            scores.append((row["id"], float(row["average"]), str(row["finished"])))
        else:
            row["unranked_reasons"] = reasons or ["not ranked: no common set of suites (see above)"]
    ranks = rank_rows(scores, config.tie_rule if config is not None else "competition")
    for row in rows:
        row["rank"] = ranks.get(row["id"])


def _missing(
    checkpoint: CheckpointView, ranked: Sequence[str], catalog: Catalog, refs: Mapping[str, RunView]
) -> list[str]:
    reasons = []
    for suite in ranked:
        run = checkpoint.runs.get(suite)
        if run is None:
            reasons.append(f"{suite}: no run (ranked rows cover {', '.join(ranked)})")
        elif (why := incomparable_reason(run, refs.get(suite), catalog)) is not None:
            reasons.append(f"{suite}: {why}")
        elif run.primary_metric() is None:
            reasons.append(f"{suite}: no primary metric")
    return reasons


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
