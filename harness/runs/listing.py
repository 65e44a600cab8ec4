"""What `harness runs` and `harness.list_runs` show: one typed row per run folder, with the settings that
tell runs of one checkpoint and suite apart (limit, max_tokens, temperature, judge, ...), filtered."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.checkpoints import redact_reference
from harness.runs.manifest import Manifest
from harness.runs.store import MANIFEST, METRICS, SAMPLES, SamplesFile, find_runs, read_json, read_metrics

NONE = "-"  # judge and reasoning mode of a run that has none

# The order of `to_record` and of `harness runs --csv`.
FIELDS = (
    "run",
    "checkpoint",
    "suite",
    "suite_version",
    "status",
    "samples_done",
    "samples_total",
    "primary_metric",
    "primary_value",
    "limit",
    "max_tokens",
    "temperature",
    "top_p",
    "samples_per_prompt",
    "seed",
    "judge",
    "reasoning",
    "created_at",
)


@dataclass(frozen=True)
class RunListing:
    """One run folder as listed: what was run, under which settings, and how far it got."""

    run: str  # the run folder, relative to the runs folder
    checkpoint: str  # the reference as stored, with any credentials redacted
    suite: str
    suite_version: str
    status: str  # running | complete | interrupted | failed
    samples_done: int  # records in samples.jsonl
    samples_total: int  # samples the run selects (after --limit)
    primary_metric: str | None  # None before metrics.json exists
    primary_value: float | None  # a fraction in [0, 1] for most metrics
    limit: int | None
    max_tokens: int
    temperature: float
    top_p: float
    samples_per_prompt: int
    seed: int | None
    judge: str  # the suite's judge setting, NONE for suites without one
    reasoning: str  # the suite's reasoning setting, NONE when the run has none
    created_at: str  # ISO 8601, UTC

    def to_record(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS}


def list_runs(
    root: Path,
    checkpoint: str | None = None,
    suite: str | None = None,
    status: str | None = None,
) -> list[RunListing]:
    """The runs under `root`, in folder order: those whose (redacted) checkpoint reference contains
    `checkpoint`, whose suite is `suite` and whose status is `status` (None: any). A manifest, metrics
    or samples file the harness did not write is a DataError naming it."""
    listed = []
    for run_dir in find_runs(root):
        manifest = Manifest.from_record(read_json(run_dir / MANIFEST, "run manifest"), run_dir / MANIFEST)
        reference = redact_reference(manifest.checkpoint)
        if checkpoint is not None and checkpoint not in reference:
            continue
        if (suite is not None and manifest.suite != suite) or (
            status is not None and manifest.status != status
        ):
            continue
        listed.append(_listing(run_dir, root, manifest, reference))
    return listed


def _listing(run_dir: Path, root: Path, manifest: Manifest, reference: str) -> RunListing:
    name: str | None = None
    value: float | None = None
    if (run_dir / METRICS).is_file():
        name, metrics = read_metrics(run_dir)
        value = metrics.get(name, {}).get("value")
    # Counted as the runner and the gate read them: a repeated sample id or a bad line is an error.
    done = len(SamplesFile(run_dir / SAMPLES).load(repair=False).records)
    gen = manifest.generation
    return RunListing(
        run=str(run_dir.relative_to(root)),
        checkpoint=reference,
        suite=manifest.suite,
        suite_version=manifest.suite_version,
        status=manifest.status,
        samples_done=done,
        samples_total=manifest.n_samples,
        primary_metric=name,
        primary_value=value,
        limit=manifest.limit,
        max_tokens=gen.max_tokens,
        temperature=gen.temperature,
        top_p=gen.top_p,
        samples_per_prompt=gen.n,
        seed=gen.seed,
        judge=_setting(manifest, "judge"),
        reasoning=_reasoning(manifest),
        created_at=manifest.created_at,
    )


def _setting(manifest: Manifest, name: str) -> str:
    value = manifest.suite_settings.get(name)
    return NONE if value is None else str(value)


def _reasoning(manifest: Manifest) -> str:
    """The mode ("think-tags"; "think-tags:[[...]]" with other tags than <think>), NONE for none."""
    record = manifest.suite_settings.get("reasoning")
    if not isinstance(record, Mapping):
        return NONE if record is None else str(record)
    mode, open_tag, close_tag = record.get("mode"), record.get("open_tag"), record.get("close_tag")
    if open_tag in (None, "<think>") and close_tag in (None, "</think>"):
        return str(mode)
    return f"{mode}:{open_tag}...{close_tag}"


def any_reasoning(listed: Sequence[RunListing]) -> bool:
    """Whether the reasoning column says anything (it is left out when no run has a mode)."""
    return any(row.reasoning != NONE for row in listed)
