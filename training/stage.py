"""One training stage, end to end: start point -> data -> decontamination -> train -> registry entry ->
evaluate -> gate against the parent -> rebuild the leaderboard.

Evaluation and the gate go through the Python API that `harness eval` and `harness gate --eval-missing`
use (harness.evaluate, harness.gate), so a stage's runs resume, hit the response cache and land where
`harness runs`, `harness gate` and the leaderboard find them. A stage whose checkpoint name is already in the registry
is not trained again (`harness pipeline` re-runs resume this way); its evaluation is re-run from disk.

Names follow the shared rule (harness.names), so `output_dir/NAME` is always a folder inside `output_dir`.
A stage makes that folder with an owner marker naming its registry and checkpoint; an unfinished attempt
is started over (deleted) only when the marker proves it is this registry's attempt at this name. Any
other folder there (a user's, another registry's checkpoint) is never deleted or written into.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.checkpoints import EmbeddedRef, GgufRef, parse_checkpoint
from harness.data import DataSource
from harness.errors import HarnessError, StorageError, UsageError
from harness.lineage import (
    CheckpointEntry,
    CheckpointRegistry,
    check_registry_name,
    check_tags,
    registry_path,
    resolve_checkpoint,
)
from harness.names import claim_folder, is_valid_name, owns, remove_owned_folder
from harness.runs.store import write_json_atomic
from harness.suite import SuiteOptions
from leaderboard.class_config import ClassEval, class_eval, load_class_config
from training.backend import TRAIN_LOG, StartPoint, StepLog, TrainResult, get_backend
from training.config import TrainRequest
from training.data_checks import StageData, load_stage_data
from training.schema import to_record

STAGE_FILE = "stage.json"
OWNER = "training stage"  # the purpose in the owner marker of a stage's output folder (harness.names)


@dataclass(frozen=True)
class SuiteResult:
    suite: str
    run_dir: str
    primary: str
    metrics: dict[str, Any]  # name -> {value, stderr, ci95, n}

    def primary_value(self) -> float | None:
        value = self.metrics.get(self.primary, {}).get("value")
        return None if value is None else float(value)


@dataclass(frozen=True)
class StageOutcome:
    entry: CheckpointEntry
    out_dir: Path
    trained: bool  # False: the checkpoint was already registered (resumed pipeline)
    evals: tuple[SuiteResult, ...]
    gate_verdict: str | None  # PASS / FAIL / INCONCLUSIVE / REFUSED, None when not gated
    gate_exit: int | None
    gate_note: str | None  # why a gate was refused
    site: str | None

    def to_record(self) -> dict[str, Any]:
        return {
            "checkpoint": self.entry.to_record(),
            "out_dir": str(self.out_dir),
            "trained": self.trained,
            "evals": [to_record(e) for e in self.evals],
            "gate": {"verdict": self.gate_verdict, "exit_code": self.gate_exit, "note": self.gate_note},
            "site": self.site,
        }


def start_point(text: str, root: Path) -> StartPoint:
    """Resolve `base`; a concrete reference not in the registry is registered as stage `base`, so every
    checkpoint has a parent and the lineage starts at the model the class began with."""
    ref, entry = resolve_checkpoint(text, root)
    if entry is None:
        registry = CheckpointRegistry(registry_path(root))
        name = fit_name(ref.slug())
        entry = registry.by_name(name) or registry.add(name, ref.raw, "base")
    return StartPoint(reference=ref.raw, entry=entry, base_model=entry.base_model)


def local_training_start(start: StartPoint, checkpoints: Path, root: Path) -> StartPoint:
    """The local backend trains transformers weights: a GGUF start point (embedded, gguf:PATH) is exported
    once and the export registered as a `base` child of the GGUF, so the gate compares the new LoRA with
    the same weights on the same backend (llama.cpp's 8-bit activations would otherwise blur the delta)."""
    if not isinstance(parse_checkpoint(start.reference), EmbeddedRef | GgufRef):
        return start
    from training.local_model import prepare_base

    base = prepare_base(start, checkpoints / "_base")
    reference = f"hf:{base.base_dir}"
    registry = CheckpointRegistry(registry_path(root))
    entry = next((e for e in registry.entries if e.reference == reference), None)
    if entry is None:
        name = fit_name(f"{start.entry.name if start.entry else 'base'}-hf")
        entry = registry.add(
            name, reference, "base", parent=start.entry.name if start.entry else None,
            details={"exported_from": start.reference, "by": "harness export-hf (float32)"},
        )  # fmt: skip
    return StartPoint(reference=reference, entry=entry, base_model=entry.base_model)


def fit_name(text: str) -> str:
    """`text` as a registry name: itself when it follows the name rule, else cleaned and cut to fit, with a
    digest of the whole so two long references never share a name."""
    if is_valid_name(text):
        return text
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.-")[:55] or "checkpoint"
    return f"{clean}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def owner_details(registry: CheckpointRegistry, name: str) -> dict[str, str]:
    """What the owner marker of a stage folder records: a folder made for another registry (or another
    name) is never taken for an unfinished attempt of this one."""
    return {"registry": str(registry.path.expanduser().resolve()), "name": name}


def _present(path: Path) -> bool:
    return path.exists() or path.is_symlink()  # a dangling symlink is there too


def _not_ours(path: Path, registry: CheckpointRegistry, name: str) -> bool:
    return _present(path) and not owns(path, OWNER, **owner_details(registry, name))


def _taken(name: str, registry: CheckpointRegistry, checkpoints: Path) -> bool:
    return registry.by_name(name) is not None or _not_ours(checkpoints / name, registry, name)


def _stage_name(request: TrainRequest, registry: CheckpointRegistry, checkpoints: Path) -> str:
    if request.config.name:
        return check_registry_name(request.config.name, "checkpoint name")
    # The default STAGE-N skips names taken in the registry and folders this registry did not make
    # (another registry's checkpoint, a user's folder): those are never reused, let alone deleted.
    index = len(registry.of_stage(request.stage)) + 1
    while _taken(f"{request.stage}-{index}", registry, checkpoints):
        index += 1
    return f"{request.stage}-{index}"


def _claim(out_dir: Path, owner: dict[str, str]) -> None:
    try:
        claim_folder(out_dir, OWNER, **owner)
    except OSError as error:
        raise StorageError(
            f"Cannot create the checkpoint folder {out_dir}: {error.strerror or error}.",
            "Make the output folder (config `output_dir`, --output-dir) writable and run again.",
        ) from None


def _train(
    request: TrainRequest, start: StartPoint, loaded: StageData, out_dir: Path, quiet: bool
) -> TrainResult:
    backend = get_backend(request.backend)
    log = StepLog(out_dir / TRAIN_LOG, quiet=quiet)
    if request.stage == "sft":
        result = backend.train_sft(request, start, loaded.examples, out_dir, log)
    elif request.stage == "dpo":
        result = backend.train_dpo(request, start, loaded.pairs, out_dir, log)
    else:
        result = backend.train_rlvr(request, start, loaded.prompts, out_dir, log)
    return result


def run_stage(request: TrainRequest, root: Path, data: DataSource, quiet: bool = False,
              base_dir: Path | None = None) -> StageOutcome:  # fmt: skip
    config = request.config
    check_tags(config.tags)
    checkpoints = Path(config.output_dir).expanduser().resolve()
    plan = stage_evals(request)  # read once: a bad class config is refused before any slow step
    registry = CheckpointRegistry(registry_path(root))
    name = _stage_name(request, registry, checkpoints)
    existing = registry.by_name(name)
    out_dir = checkpoints / name
    owner = owner_details(registry, name)
    if existing is not None:
        if existing.stage != request.stage:
            raise UsageError(f"The registry already has a checkpoint '{name}' of stage {existing.stage}.",
                             "Pick another name (config `name`).")  # fmt: skip
        _say(quiet, f"{name} is already trained ({existing.reference}); evaluating it again from disk.")
        entry, trained = existing, False
        out_dir = Path(str(existing.details.get("out_dir", out_dir)))  # where it was trained
    else:
        if _not_ours(out_dir, registry, name):  # refused before any slow step; nothing is touched
            raise UsageError(
                f"{out_dir} exists and was not made by the harness for checkpoint '{name}' of the registry "
                f"{registry.path}, so it is left untouched.",
                "Pick another name (--name or config `name`), or move that folder yourself.",
            )
        backend = get_backend(request.backend)
        start = start_point(config.base, root)
        backend.check(request, start)
        if _present(out_dir):  # an attempt of this registry that never reached it: start it over
            _say(quiet, f"{out_dir} holds an unfinished attempt (not in the registry); starting it over.")
            remove_owned_folder(out_dir, OWNER, **owner)
        _claim(out_dir, owner)
        (out_dir / "config.json").write_text(json.dumps(request.config_record(), indent=2) + "\n")
        loaded = load_stage_data(request, data, out_dir, base_dir)  # refuses contaminated data first
        data_record = loaded.details
        if request.backend == "local":
            start = local_training_start(start, checkpoints, root)
        result = _train(request, start, loaded, out_dir, quiet)
        assert start.entry is not None
        entry = registry.add(
            name, result.reference, request.stage, parent=start.entry.name, tags=config.tags,
            config_sha256=request.config_sha256(), data_sha256=data_record["sha256"], seed=config.seed,
            details={
                "backend": request.backend, "steps": result.steps, "examples": result.examples,
                "cost_usd": result.cost_usd, "config_file": request.source, "out_dir": str(out_dir),
                "train_log": str(out_dir / TRAIN_LOG), "data": data_record, **dict(result.details),
                # a DPO beta sweep is a tradeoff curve in `harness report` (reports/sweeps.py)
                **({"beta": config.dpo.beta} if request.stage == "dpo" else {}),
            },
        )  # fmt: skip
        trained = True
    evals = evaluate_checkpoint(entry, request, plan, root, data, quiet)
    verdict, code, note = (
        gate_against_parent(entry, plan, request, root, data, quiet)
        if config.eval.gate
        else (None, None, None)
    )
    site = rebuild_site(request, root, quiet)
    outcome = StageOutcome(entry, out_dir, trained, tuple(evals), verdict, code, note, site)
    if not _present(out_dir):  # a checkpoint registered by hand: its summary gets a folder of its own
        _claim(out_dir, owner)
    if owns(out_dir, OWNER, **owner):
        write_json_atomic(out_dir / STAGE_FILE, outcome.to_record())
    else:  # a folder the registry points at but this harness did not make: never written into
        _say(quiet, f"not writing {STAGE_FILE} into {out_dir}: the harness did not make that folder.")
    return outcome


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(f"harness: {text}", file=sys.stderr)


def evaluate_checkpoint(entry: CheckpointEntry, request: TrainRequest, plan: ClassEval, root: Path,
                        data: DataSource, quiet: bool) -> list[SuiteResult]:  # fmt: skip
    """The configured suites on the new checkpoint, as `harness eval` runs them (resume, cache, runs)."""
    from adapters.options import AdapterOptions
    from harness.api.evaluate import Generation, evaluate

    ev = request.config.eval
    if not plan.suites:
        return []
    _say(quiet, f"evaluating {entry.name} on {', '.join(plan.suites)}")
    results = evaluate(
        entry.reference, list(plan.suites), limit=plan.limit, runs=root, data_dir=data.data_dir,
        generation=Generation(**plan.generation), scoring=SuiteOptions(plan.judge, reasoning=plan.reasoning),
        backend=AdapterOptions(batch_size=ev.batch_size, device=request.config.device),
        progress=not quiet,
    )  # fmt: skip
    return [
        SuiteResult(r.suite, str(r.run_dir), r.primary, {k: m.to_record() for k, m in r.metrics.items()})
        for r in results.runs
    ]


def stage_evals(request: TrainRequest) -> ClassEval:
    """What the stage evaluates: `eval.suites` with `eval.limit`/`max_tokens`, or the class config's
    suites under all of its settings (a bad class config is a UsageError)."""
    ev = request.config.eval
    chosen = {"max_tokens": ev.max_tokens}
    if not ev.class_config or not ev.suites:  # `harness train --no-eval` empties the suites
        return ClassEval(
            tuple(ev.suites),
            ev.limit,
            {k: v for k, v in chosen.items() if v is not None},
            SuiteOptions().judge,
        )
    config = load_class_config(Path(ev.class_config).expanduser())
    return class_eval(config, None, None, {}, None, source="eval.class_config")


def gate_against_parent(entry: CheckpointEntry, plan: ClassEval, request: TrainRequest, root: Path,
                        data: DataSource, quiet: bool) -> tuple[str | None, int | None, str | None]:  # fmt: skip
    """The gate of the new checkpoint against its parent on the configured suites, evaluating what is
    missing (as `harness gate --eval-missing`)."""
    from harness.api.gate import gate

    registry = CheckpointRegistry(registry_path(root))
    parent = registry.by_name(entry.parent) if entry.parent else None
    suites = plan.suites
    if parent is None or not suites:
        return None, None, None
    try:
        result = gate(
            parent.reference, entry.reference, suites=list(suites), runs=root,
            policy=request.config.eval.policy or None, eval_missing=True, data_dir=data.data_dir,
            progress=not quiet,
        )  # fmt: skip
    except HarnessError as error:  # a refused gate is reported, the trained checkpoint stays
        _say(quiet, f"gate against {parent.name} refused: {error.message}")
        return "REFUSED", int(error.exit_code), error.message
    _say(quiet, f"gate {parent.name} -> {entry.name}: {result.verdict} (exit {result.exit_code})")
    if not quiet:
        print(result.table(), file=sys.stderr)
    return result.verdict, result.exit_code, None


def rebuild_site(request: TrainRequest, root: Path, quiet: bool) -> str | None:
    site = request.config.eval.leaderboard
    if not site:
        return None
    from leaderboard.site import build_site

    summary = build_site([root], Path(site).expanduser(), None)
    _say(quiet, summary.describe())
    return str(summary.out)


def with_name(request: TrainRequest, name: str) -> TrainRequest:
    return replace(request, config=replace(request.config, name=name))
