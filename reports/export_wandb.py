"""`harness export wandb`: harness runs and checkpoints as Weights & Biases runs and model artifacts.

One W&B run per harness run (one suite on one checkpoint), grouped by checkpoint: a harness run is the
unit that has one manifest, one settings hash and one sample set, so its config, summary and table are
exactly that run's, and W&B's run table compares checkpoints suite by suite. Each logs:
- config: the manifest (suite settings, generation, data hash, git revision, lineage), references redacted
  as `harness runs` shows them;
- summary: every metric as {value, stderr, ci_low, ci_high, n, ci_method}, the reasoning block of reasoning
  runs, and the gate verdict of a trained checkpoint;
- a `samples` table: id, prompt, target, response (thinking and answer for reasoning runs), extracted
  values, every score; texts clipped to `clip` characters.

Each registered checkpoint (and its ancestors) gets a run of job type `checkpoint` that logs a `model`
artifact named after its stage, aliased with its registry name and tags (so `wandb:E/P/sft:latest` reads
like `sft:latest`), and that uses its parent's artifact: W&B draws base -> sft -> dpo. The artifact holds
no weights: a small JSON of the registry entry, the concrete reference, hashes and seed as metadata, and a
`file://` reference (not checksummed, never uploaded) where the weights are a local path. Eval runs use
the model artifact they evaluated. W&B refuses `use_artifact` in offline mode, so offline runs record the
artifact they would use under config `uses_artifacts` and only an online export draws the graph.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.checkpoints import GgufRef, HfRef, VllmRef, parse_checkpoint
from harness.errors import UsageError
from harness.lineage import CheckpointEntry, CheckpointRegistry, registry_path
from harness.runs.catalog import RunView
from harness.wandb_refs import ARTIFACT_TYPE, WANDB_MISSING
from reports.wandb_rows import (
    artifact_metadata,
    metric_summary,
    redacted_entry,
    run_config,
    stored_gate,
    table_columns,
    table_rows,
)

DEFAULT_PROJECT = "harness"
DEFAULT_CLIP = 1000
ENTRY_FILE = "harness_checkpoint.json"


@dataclass(frozen=True)
class WandbTarget:
    project: str = DEFAULT_PROJECT
    entity: str | None = None
    clip: int = DEFAULT_CLIP  # characters per table cell; 0 keeps whole texts


@dataclass(frozen=True)
class Exported:
    kind: str  # "checkpoint" (logged a model artifact) or "eval" (one harness run)
    name: str
    run_path: str  # ENTITY/PROJECT/RUN_ID
    files: str  # the local folder of the W&B run (`wandb sync` it when offline)
    offline: bool
    artifact: str | None = None  # the model artifact logged (checkpoint) or used (eval)

    def describe(self) -> str:
        what = f"{self.kind} {self.name}"
        model = (
            ""
            if self.artifact is None
            else (" -> " if self.kind == "checkpoint" else " uses ") + self.artifact
        )
        return f"{what}{model}: {self.run_path}" + (f" (offline: {self.files})" if self.offline else "")


def _wandb() -> Any:
    try:
        import wandb
    except ImportError:
        raise UsageError("harness export wandb needs the wandb package.", WANDB_MISSING) from None
    return wandb


def _settings(wandb: Any) -> Any:
    # No machine metadata (it records the command line, which may carry an endpoint's credentials), no
    # system metrics, no console capture, no code or requirements upload: only what is logged here.
    return wandb.Settings(
        x_disable_meta=True, x_disable_stats=True, x_save_requirements=False, console="off",
        save_code=False, disable_git=True, quiet=True,
    )  # fmt: skip


def _use(run: Any, artifact: str) -> None:
    """Declare the model artifact as the run's input (an edge of W&B's lineage graph)."""
    try:
        run.use_artifact(artifact, type=ARTIFACT_TYPE)
    except TypeError:
        if not run.offline:
            raise  # offline, W&B raises "Cannot use artifact when in offline mode."; config keeps the link


def _local_weights(reference: str) -> list[Path]:
    """The local paths a reference's weights live at (none for servers, hub ids, Tinker)."""
    ref = parse_checkpoint(reference)
    named: list[str | None] = []
    if isinstance(ref, HfRef):
        named = [ref.path, ref.lora]
    elif isinstance(ref, VllmRef):
        named = [ref.base, ref.lora]
    elif isinstance(ref, GgufRef):
        named = [ref.path]
    return [Path(p).expanduser().resolve() for p in named if p and Path(p).expanduser().exists()]


def _entries(
    runs: Sequence[RunView], names: Iterable[str], registry: CheckpointRegistry
) -> list[CheckpointEntry]:
    """The checkpoints to log, each with its registered ancestors, parents first (registry order)."""
    found: dict[str, CheckpointEntry] = {}
    wanted = [registry.by_name(name) or _unknown(name, registry) for name in names]
    for run in runs:
        if run.lineage and run.lineage.get("name"):
            wanted.append(
                registry.by_name(str(run.lineage["name"])) or CheckpointEntry.from_record(run.lineage)
            )
    for entry in wanted:
        chain = registry.lineage(entry) if registry.by_name(entry.name) else [entry]
        for member in chain:
            found.setdefault(member.name, member)
    order = {entry.name: index for index, entry in enumerate(registry.entries)}
    return sorted(found.values(), key=lambda e: order.get(e.name, len(order)))


def _unknown(name: str, registry: CheckpointRegistry) -> CheckpointEntry:
    raise UsageError(f"No checkpoint named '{name}' in the registry {registry.path}.", registry.known_text())


def _log_checkpoint(wandb: Any, target: WandbTarget, entry: CheckpointEntry, parent: str | None,
                    gate: Mapping[str, Any] | None) -> Exported:  # fmt: skip
    record = redacted_entry(entry.to_record())
    config: dict[str, Any] = {"checkpoint": record, "uses_artifacts": [] if parent is None else [parent]}
    run = wandb.init(
        project=target.project, entity=target.entity, name=f"{entry.name} [{entry.stage}]", group=entry.name,
        job_type="checkpoint", tags=[entry.stage], config=config, settings=_settings(wandb),
    )  # fmt: skip
    try:
        if parent is not None:
            _use(run, parent)
        artifact = wandb.Artifact(
            entry.stage, type=ARTIFACT_TYPE, metadata=artifact_metadata(record, gate),
            description=f"harness checkpoint {entry.name} ({record['reference']}); no weights uploaded",
        )  # fmt: skip
        with artifact.new_file(ENTRY_FILE, mode="w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2, sort_keys=True)
        for index, weights in enumerate(_local_weights(entry.reference)):
            artifact.add_reference(weights.as_uri(), name=f"weights/{index}-{weights.name}", checksum=False)
        run.log_artifact(artifact, aliases=[entry.name, *entry.tags])
        if gate is not None:
            run.summary["gate"] = dict(gate)
        if not run.offline:
            artifact.wait()  # committed before a child's run or an eval run uses it by name
        path = f"{run.entity}/{run.project}/{entry.stage}:{entry.name}"
        return Exported("checkpoint", entry.name, run.path, run.settings.sync_dir, run.offline, path)
    finally:
        run.finish()


def _log_eval(wandb: Any, target: WandbTarget, view: RunView, model: str | None,
              gate: Mapping[str, Any] | None) -> Exported:  # fmt: skip
    label = str((view.lineage or {}).get("name") or view.manifest.checkpoint)
    config = {**run_config(view), "uses_artifacts": [] if model is None else [model]}
    run = wandb.init(
        project=target.project, entity=target.entity, name=f"{label} {view.suite}", group=label,
        job_type="eval", tags=[view.suite], config=config, settings=_settings(wandb),
    )  # fmt: skip
    try:
        if model is not None:
            _use(run, model)
        summary = metric_summary(view)
        if gate is not None:
            summary["gate"] = dict(gate)
        run.summary.update(summary)
        samples = view.samples()
        columns = table_columns(samples)
        run.log({"samples": wandb.Table(columns=columns, data=table_rows(samples, columns, target.clip))})
        return Exported("eval", f"{label} {view.suite}", run.path, run.settings.sync_dir, run.offline, model)
    finally:
        run.finish()


def export_to_wandb(
    runs: Sequence[RunView],
    runs_root: Path,
    target: WandbTarget,
    *,
    checkpoints: Sequence[str] = (),
    gates: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Exported]:
    """Log the checkpoints of `runs` (and the registry names in `checkpoints`) with their ancestors as
    model artifacts, then each run. `gates`: registry name -> gate record ({verdict, exit_code, note,
    against}) from a caller that has it; otherwise a training stage's stage.json supplies it."""
    wandb = _wandb()
    registry = CheckpointRegistry(registry_path(runs_root))
    artifacts: dict[str, str] = {}
    gate_of: dict[str, Mapping[str, Any] | None] = {}
    exported = []
    for entry in _entries(runs, checkpoints, registry):
        gate = (gates or {}).get(entry.name) or stored_gate(entry.to_record())
        gate_of[entry.name] = gate
        parent = None if entry.parent is None else artifacts.get(entry.parent)
        done = _log_checkpoint(wandb, target, entry, parent, gate)
        artifacts[entry.name] = str(done.artifact)
        exported.append(done)
    for view in runs:
        name = str((view.lineage or {}).get("name") or "")
        exported.append(_log_eval(wandb, target, view, artifacts.get(name), gate_of.get(name)))
    return exported
