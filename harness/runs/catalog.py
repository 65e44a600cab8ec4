"""What the leaderboard, the reports and the submissions read: runs grouped into checkpoints.

Runs are read from one or more runs folders (their manifests and metrics files; per-sample records
only on demand). Each checkpoint gets at most one run per suite: the complete run with the most
samples (then the newest). A suite's column compares only runs with the same suite version and
settings hash (the hash covers the generation settings, `--limit` and the safety judge). The
column's *reference settings* are pinned by a class config (leaderboard/class_config.py) when there is
one, else those most checkpoints were run with; a cell run otherwise is shown but never ranked against
the others. A run under the pinned settings is preferred when a checkpoint has several.

Team and lineage: a runs folder may hold `submission.json` (`{"team": ...}`, written by
`harness leaderboard submit`). Name, stage, parent and base model come from the checkpoint registry as it
is when the runs are read (`<runs>/registry.jsonl`, or `$HARNESS_REGISTRY` for a folder that is not a
submission), matched by the run's concrete checkpoint reference, so registering a checkpoint after
evaluating it just works; a run whose reference is not registered there falls back to the entry its
manifest recorded when it was evaluated (`lineage`), which is what submitted bundles carry.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.errors import DataError
from harness.readers import MiB, read_json_object
from harness.reasoning_stats import ReasoningSummary
from harness.runs.manifest import Manifest
from harness.runs.store import MANIFEST, METRICS, SAMPLES, SampleRecord, SamplesFile, find_runs
from harness.types import Metric

SUBMISSION_FILE = "submission.json"
HELPFULNESS_SUITES = ("ifeval", "gsm8k", "mbpp")  # the "helpfulness" axis of the tradeoff plots
SUITE_ORDER = ("ifeval", "gsm8k", "mbpp", "safety", "alice", "alice-synth")
MAX_JSON_BYTES = 16 * MiB  # a manifest or metrics file is a few KB; bigger is not the harness's
_RUN_FIX = "Delete the run folder (see `harness runs`) and run the evaluation again."


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A run's JSON file: bounded, strict UTF-8, depth-limited (harness.readers), one-paragraph errors."""
    return read_json_object(path, what, MAX_JSON_BYTES, _RUN_FIX)


@dataclass(frozen=True)
class RunView:
    run_dir: Path
    manifest: Manifest
    primary: str
    metrics: Mapping[str, Metric]
    team: str | None = None
    registered: Mapping[str, Any] | None = None  # the registry entry of its checkpoint when read
    reasoning: ReasoningSummary | None = None  # reasoning runs: ended inside reasoning, thinking lengths

    @property
    def suite(self) -> str:
        return self.manifest.suite

    @property
    def lineage(self) -> Mapping[str, Any] | None:
        """The checkpoint's registry entry: as registered now, else as recorded at evaluation time."""
        return self.registered if self.registered is not None else self.manifest.lineage

    @property
    def comparability_key(self) -> tuple[str, str, str]:
        """Runs with equal keys were produced under identical suite version and settings."""
        return (self.manifest.suite, self.manifest.suite_version, self.manifest.settings_hash)

    @property
    def complete(self) -> bool:
        return self.manifest.status == "complete" and bool(self.metrics)

    @property
    def judge(self) -> str | None:
        judge = self.manifest.suite_settings.get("judge")
        return None if judge is None else str(judge)

    def primary_metric(self) -> Metric | None:
        return self.metrics.get(self.primary)

    def samples(self) -> tuple[SampleRecord, ...]:
        """The per-sample records; a repeated sample id is a DataError naming the file, line and id."""
        return SamplesFile(self.run_dir / SAMPLES).load(repair=False).records


@dataclass(frozen=True)
class CheckpointView:
    id: str  # stable, URL-safe
    label: str  # registry name, else the reference
    reference: str
    team: str | None
    stage: str | None
    base_model: str | None
    parent: str | None  # the parent's registry name (matched to a label by the site)
    runs: Mapping[str, RunView] = field(default_factory=dict)  # suite -> chosen run


@dataclass(frozen=True)
class Catalog:
    checkpoints: tuple[CheckpointView, ...]
    reference_settings: Mapping[str, tuple[str, str, str]]  # suite -> comparability key of its column

    def suites(self) -> list[str]:
        present = {s for c in self.checkpoints for s in c.runs}
        return [s for s in SUITE_ORDER if s in present] + sorted(present - set(SUITE_ORDER))

    def comparable(self, run: RunView) -> bool:
        return self.reference_settings.get(run.suite) == run.comparability_key

    def by_label(self, label: str) -> CheckpointView | None:
        return next((c for c in self.checkpoints if c.label == label), None)


def _team_of(root: Path) -> str | None:
    path = root / SUBMISSION_FILE
    if not path.is_file():
        return None
    team = read_json(path, "submission file").get("team")
    return None if team is None else str(team)


def team_of(root: Path) -> str | None:
    """The team a runs folder was submitted by (its submission.json), else None."""
    return _team_of(root)


def parse_metrics(payload: Mapping[str, Any], path: Path) -> tuple[str, dict[str, Metric]]:
    """(primary metric name, metrics) of a metrics file's content as read_json read it from `path`."""
    try:
        primary = str(payload.get("primary", ""))
        return primary, {str(k): Metric.from_record(str(k), v) for k, v in payload["metrics"].items()}
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as error:
        raise DataError(
            f"The metrics file {path} is malformed ({type(error).__name__}: {error}).",
            "Recompute it from the samples: harness rescore RUN.",
        ) from None


def parse_reasoning(payload: Mapping[str, Any]) -> ReasoningSummary | None:
    """The "reasoning" block of a metrics file's content (None: absent). A damaged block reads as absent:
    it is a report on the run, not its scores, so it must not make the run unreadable."""
    try:
        summary = ReasoningSummary.from_record(payload.get("reasoning"))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError):
        return None
    if summary is None:
        return None
    rate = summary.ended_inside
    numbers = (rate.value, rate.stderr, rate.ci_low, rate.ci_high)
    if rate.n < 0 or not all(_is_number(x) for x in numbers) or not 0 <= (rate.value or 0) <= 1:
        return None
    return summary


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def load_run(run_dir: Path, team: str | None = None) -> RunView:
    manifest = Manifest.from_record(read_json(run_dir / MANIFEST, "run manifest"), run_dir / MANIFEST)
    metrics: dict[str, Metric] = {}
    primary, reasoning = "", None
    if (run_dir / METRICS).is_file():
        payload = read_json(run_dir / METRICS, "metrics file")
        primary, metrics = parse_metrics(payload, run_dir / METRICS)
        reasoning = parse_reasoning(payload)
    return RunView(run_dir, manifest, primary, metrics, team=team, reasoning=reasoning)


def registered_entries(root: Path, submitted: bool) -> dict[str, Mapping[str, Any]]:
    """Concrete checkpoint reference -> the last registry entry naming it, from the registry that goes
    with a runs folder (a submission's own file only: the reader's $HARNESS_REGISTRY says nothing about
    another team's checkpoints). A malformed registry is a DataError naming its path and line."""
    from harness.lineage import REGISTRY_FILE, CheckpointRegistry, registry_path

    path = root / REGISTRY_FILE if submitted else registry_path(root)
    if not path.is_file():
        return {}
    return {entry.reference: entry.to_record() for entry in CheckpointRegistry(path).entries}


def load_runs(roots: Iterable[Path]) -> list[RunView]:
    runs: list[RunView] = []
    for root in roots:
        if not root.is_dir():
            raise DataError(
                f"The runs folder {root} does not exist.", "Pass folders made by `harness eval --runs DIR`."
            )
        team = _team_of(root)
        entries = registered_entries(root, submitted=team is not None)
        runs.extend(with_registered([load_run(run_dir, team) for run_dir in find_runs(root)], entries))
    return runs


def with_registered(runs: Iterable[RunView], entries: Mapping[str, Mapping[str, Any]]) -> list[RunView]:
    """The runs, each carrying the registry entry of its checkpoint reference (if there is one)."""
    return [
        run if (entry := entries.get(run.manifest.checkpoint)) is None else replace(run, registered=entry)
        for run in runs
    ]


def checkpoint_id(text: str) -> str:
    import hashlib

    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.")[:60] or "checkpoint"
    return f"{clean}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _better(candidate: RunView, current: RunView | None, pinned: Mapping[str, tuple[str, str, str]]) -> bool:
    if current is None:
        return True
    wanted = pinned.get(candidate.suite)
    if wanted is not None and (candidate.comparability_key == wanted) != (
        current.comparability_key == wanted
    ):
        return candidate.comparability_key == wanted  # a run under the pinned settings is the one shown
    if candidate.complete != current.complete:
        return candidate.complete
    if candidate.manifest.n_samples != current.manifest.n_samples:
        return candidate.manifest.n_samples > current.manifest.n_samples
    return candidate.manifest.created_at > current.manifest.created_at


def build_catalog(
    runs: Sequence[RunView], pinned: Mapping[str, tuple[str, str, str]] | None = None
) -> Catalog:
    """Group runs by (team, checkpoint); pick one run per suite; fix each column's reference settings:
    `pinned` (a class config's, suite -> comparability key) where given, else the most common."""
    pinned = pinned or {}
    grouped: dict[tuple[str | None, str], dict[str, RunView]] = {}
    lineage: dict[tuple[str | None, str], Mapping[str, Any]] = {}
    for run in runs:
        key = (run.team, run.manifest.checkpoint)
        chosen = grouped.setdefault(key, {})
        if _better(run, chosen.get(run.suite), pinned):
            chosen[run.suite] = run
        if run.lineage:
            lineage[key] = run.lineage
    checkpoints = []
    for (team, reference), by_suite in grouped.items():
        entry = lineage.get((team, reference), {})
        label = str(entry.get("name") or reference)
        checkpoints.append(
            CheckpointView(
                id=checkpoint_id(f"{team or ''}/{label}"),
                label=label,
                reference=reference,
                team=team,
                stage=None if entry.get("stage") is None else str(entry["stage"]),
                base_model=None if entry.get("base_model") is None else str(entry["base_model"]),
                parent=None if entry.get("parent") is None else str(entry["parent"]),
                runs=dict(by_suite),
            )
        )
    counts: dict[str, Counter[tuple[str, str, str]]] = {}
    for checkpoint in checkpoints:
        for run in checkpoint.runs.values():
            if run.complete:
                counts.setdefault(run.suite, Counter())[run.comparability_key] += 1
    # Most common settings win; ties go to the larger sample (the hash differs with --limit).
    column_settings = {
        suite: max(counter.items(), key=lambda kv: (kv[1], _n_of(checkpoints, kv[0])))[0]
        for suite, counter in counts.items()
    } | dict(pinned)
    checkpoints.sort(key=lambda c: (c.team or "", c.label))
    return Catalog(checkpoints=tuple(checkpoints), reference_settings=column_settings)


def _n_of(checkpoints: Sequence[CheckpointView], key: tuple[str, str, str]) -> int:
    return max(
        (r.manifest.n_samples for c in checkpoints for r in c.runs.values() if r.comparability_key == key),
        default=0,
    )


def primary_value(checkpoint: CheckpointView, suite: str, catalog: Catalog) -> float | None:
    """The suite's primary metric for ranking: None when missing, incomplete or run under other settings."""
    run = checkpoint.runs.get(suite)
    if run is None or not run.complete or not catalog.comparable(run):
        return None
    metric = run.primary_metric()
    return None if metric is None else metric.value


def average(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def catalog_from_folders(roots: Sequence[Path]) -> Catalog:
    return build_catalog(load_runs(roots))


def dump_json(payload: Any) -> str:
    """Compact, deterministic JSON for site data files."""
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
