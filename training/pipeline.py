"""`harness pipeline FILE`: a whole recipe (base -> SFT -> DPO, or SFT -> RLVR rounds), stage after stage,
keeping the best checkpoint by a declared validation metric (not necessarily the last).

```yaml
name: course              # stage checkpoints are named NAME-<i>-<stage>[-r<k>]
base: embedded            # where the first stage starts
backend: local            # default backend of every stage
defaults: {eval: {suites: [gsm8k], limit: 20}}   # stage config keys merged into every stage
stages:
  - {stage: sft, config: sft.yaml}                # a stage config file, then inline keys over it
  - {stage: rlvr, repeat: 2, data: {prompts: "gsm8k:train"}}
select: {suite: gsm8k, limit: 50, mode: max, tag: best, continue_from: last}
```

Validation (`select`): either a registered suite (`suite`, its `metric`, default the primary, run like
`harness eval` with `limit`/`max_tokens`) or held-out training prompts (`prompts: gsm8k:train`, the LAST
`limit` prompts of that source, greedy, scored by the suite's reward: metric `pass_rate`). Picking the
best on the test split you report inflates that number; prefer `prompts` or a suite you do not report.
The start checkpoint competes too (`include_base`). The winner gets the registry tag `select.tag`
(moved off any earlier holder); with `continue_from: best` each stage starts from the best so far, so
a round that made things worse is dropped. Re-running the same file resumes: stages whose checkpoint
is registered are not trained again, and evaluations come from disk.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from harness.data import DataSource
from harness.errors import UsageError
from harness.lineage import (
    CheckpointEntry,
    CheckpointRegistry,
    check_registry_name,
    check_tags,
    registry_path,
)
from harness.names import check_name, claim_folder, owns
from harness.runs.store import write_json_atomic
from training.config import BACKENDS, STAGES, Backend, Stage, TrainRequest, parse_stage_config, read_yaml
from training.schema import build, doc, to_record

PIPELINE_FILE = "pipeline.json"
OWNER = "pipeline summary"  # the purpose in the owner marker of a pipeline's summary folder


@dataclass(frozen=True)
class SelectConfig:
    suite: str | None = doc("validation suite (registered), run with limit/max_tokens", None)
    prompts: str | None = doc(
        "or held-out prompts: a source such as gsm8k:train or a prompt file (the last `limit` of them)", None
    )
    metric: str | None = doc(
        "metric to compare (default: the suite's primary, or pass_rate for prompts)", None
    )
    limit: int = doc("validation samples", 50)
    max_tokens: int | None = doc("max new tokens for validation (default: the suite's pinned limit)", None)
    mode: Literal["max", "min"] = doc("higher or lower is better", "max")
    tag: str = doc("registry tag given to the best checkpoint", "best")
    continue_from: Literal["last", "best"] = doc("where each next stage starts", "last")
    include_base: bool = doc("the start checkpoint competes too", True)

    def __post_init__(self) -> None:
        if (self.suite is None) == (self.prompts is None):
            raise ValueError("select: give exactly one of suite or prompts")
        if self.limit < 1:
            raise ValueError("select.limit must be at least 1")


@dataclass(frozen=True)
class StagePlan:
    stage: Stage
    backend: Backend
    name: str
    mapping: dict[str, Any]  # the stage config, merged (validated when it runs: `base` is filled in then)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def plan(raw: Any, source: Path) -> tuple[str, str, list[StagePlan], SelectConfig | None]:
    if not isinstance(raw, dict):
        raise UsageError(f"{source}: a pipeline file is a YAML mapping.", "See `harness pipeline --help`.")
    known = {"name", "base", "backend", "defaults", "stages", "select"}
    if unknown := sorted(map(str, set(raw) - known)):
        raise UsageError(
            f"{source}: unknown key(s) {', '.join(unknown)}.", f"Known keys: {', '.join(sorted(known))}."
        )
    name, base = str(raw.get("name") or source.stem), str(raw.get("base") or "embedded")
    check_name(name, f"pipeline name (`name` in {source}, else the file's stem)")
    backend, defaults = raw.get("backend", "local"), raw.get("defaults") or {}
    stages = raw.get("stages")
    if not isinstance(stages, list) or not stages:
        raise UsageError(f"{source}: 'stages' must be a non-empty list.")
    plans: list[StagePlan] = []
    for index, item in enumerate(stages, start=1):
        if not isinstance(item, dict) or item.get("stage") not in STAGES:
            raise UsageError(f"{source}: stage {index} needs `stage: sft | dpo | rlvr`.")
        item = dict(item)
        stage, stage_backend = item.pop("stage"), item.pop("backend", backend)
        if stage_backend not in BACKENDS:
            raise UsageError(f"{source}: stage {index}: backend must be one of {', '.join(BACKENDS)}.")
        repeat = item.pop("repeat", 1)
        if not isinstance(repeat, int) or repeat < 1:
            raise UsageError(f"{source}: stage {index}: repeat must be a whole number >= 1.")
        file_part: dict[str, Any] = {}
        if "config" in item:
            path = Path(str(item.pop("config")))
            file_part = read_yaml(path if path.is_absolute() else source.parent / path) or {}
        mapping = _merge(_merge(defaults, file_part), item)
        for round_ in range(1, repeat + 1):
            suffix = f"-r{round_}" if repeat > 1 else ""
            stage_name = (
                mapping.get("name")
                if repeat == 1 and mapping.get("name")
                else f"{name}-{index}-{stage}{suffix}"
            )
            check_registry_name(str(stage_name), f"checkpoint name of stage {index} in {source}")
            plans.append(StagePlan(stage, stage_backend, str(stage_name), {**mapping, "name": stage_name}))
    select = None if raw.get("select") is None else build(SelectConfig, raw["select"], str(source), "select")
    if select is not None and select.prompts and (source.parent / select.prompts).is_file():
        select = replace(select, prompts=str(source.parent / select.prompts))  # relative to the pipeline file
    if select is not None:
        check_registry_name(select.tag, "select.tag")
    for p in plans:  # validate every stage before the first one trains
        check_tags(parse_stage_config({**p.mapping, "base": base}, f"{source} ({p.name})").tags)
    return name, base, plans, select


@dataclass(frozen=True)
class Candidate:
    entry: CheckpointEntry
    value: float | None


def validation_value(
    entry: CheckpointEntry, select: SelectConfig, root: Path, data: DataSource
) -> float | None:
    if select.suite is not None:
        from harness.api.evaluate import Generation, evaluate

        results = evaluate(
            entry.reference, [select.suite], limit=select.limit, runs=root, data_dir=data.data_dir,
            generation=Generation(max_tokens=select.max_tokens or None),
            progress=False,  # as before: `quiet` does not reach validation evals
        )  # fmt: skip
        (result,) = results.runs
        metric = select.metric or result.primary
        if metric not in result.metrics:
            raise UsageError(f"select.metric '{metric}' is not a metric of {select.suite}.",
                             f"Its metrics: {', '.join(result.metrics)}.")  # fmt: skip
        return result.metrics[metric].value
    return _prompt_validation(entry, select, root, data)


def _prompt_validation(
    entry: CheckpointEntry, select: SelectConfig, root: Path, data: DataSource
) -> float | None:
    from dataclasses import replace

    from harness.api.evaluate import evaluate_suites, run_sync
    from harness.checkpoints import parse_checkpoint
    from training.prompt_suite import PromptSuite, prompts_sha256
    from training.prompts import file_prompts, suite_prompts

    assert select.prompts is not None
    path = Path(select.prompts).expanduser()
    every = file_prompts(path) if path.is_file() else suite_prompts(select.prompts, data, None)
    prompts = every[-select.limit :]
    suite = PromptSuite("validation", prompts, select.prompts, prompts_sha256(prompts))
    settings = suite.default_settings()
    if select.max_tokens:
        settings = replace(settings, max_tokens=select.max_tokens)
    results = run_sync(
        evaluate_suites(parse_checkpoint(entry.reference), None, [(suite, settings)], limit=None,
                        root=root / ".validation", data=data),
        "evaluate",
    )  # fmt: skip
    metric = results.runs[0].metrics.get(select.metric or "pass_rate")
    return None if metric is None else metric.value


def _better(value: float | None, best: float | None, mode: str) -> bool:
    if value is None:
        return False
    return best is None or (value > best if mode == "max" else value < best)


def run_pipeline(
    path: Path, root: Path, data: DataSource, allow_contamination: bool, quiet: bool
) -> dict[str, Any]:
    from training.stage import run_stage, start_point

    name, base, plans, select = plan(read_yaml(path), path)
    registry = CheckpointRegistry(registry_path(root))
    out = Path(plans[0].mapping.get("output_dir", "checkpoints")).expanduser().resolve() / name
    owner = {"registry": str(registry.path.expanduser().resolve()), "name": name}
    _check_summary_folder(out, owner)  # before the first stage trains
    start = start_point(base, root)
    assert start.entry is not None
    candidates: list[Candidate] = []
    best: Candidate | None = None
    if select is not None and select.include_base:
        best = Candidate(start.entry, validation_value(start.entry, select, root, data))
        candidates.append(best)
    stages_done = []
    last_ref = base
    for step in plans:
        origin = (
            last_ref
            if select is None or select.continue_from == "last" or best is None
            else _tag_ref(best.entry)
        )
        config = parse_stage_config({**step.mapping, "base": origin}, f"{path} ({step.name})")
        request = TrainRequest(step.stage, step.backend, config, f"{path} ({step.name})", allow_contamination)
        outcome = run_stage(request, root, data, quiet, path.parent)
        stages_done.append(outcome.to_record())
        last_ref = _tag_ref(outcome.entry)
        if select is not None:
            candidate = Candidate(outcome.entry, validation_value(outcome.entry, select, root, data))
            candidates.append(candidate)
            if _better(candidate.value, None if best is None else best.value, select.mode):
                best = candidate
            _say(
                quiet,
                f"validation {select.metric or select.suite or select.prompts}: {outcome.entry.name} = {candidate.value}",
            )
    summary: dict[str, Any] = {"pipeline": name, "file": str(path), "stages": stages_done,
                               "select": None if select is None else to_record(select)}  # fmt: skip
    if select is not None and best is not None:
        registry.tag(best.entry.name, select.tag)
        summary["validation"] = [
            {"name": c.entry.name, "stage": c.entry.stage, "value": c.value} for c in candidates
        ]
        summary["best"] = {"name": best.entry.name, "reference": best.entry.reference, "value": best.value,
                           "tag": f"{best.entry.stage}:{select.tag}"}  # fmt: skip
    if not (out.exists() or out.is_symlink()):
        claim_folder(out, OWNER, **owner)
    write_json_atomic(out / PIPELINE_FILE, summary)
    summary["summary_file"] = str(out / PIPELINE_FILE)
    return summary


def _check_summary_folder(out: Path, owner: dict[str, str]) -> None:
    """The summary is written only into a folder this pipeline made (or an older summary folder that
    holds nothing but its pipeline.json): never into a checkpoint's or a user's folder."""
    if not (out.exists() or out.is_symlink()) or owns(out, OWNER, **owner):
        return
    if out.is_dir() and not out.is_symlink() and {p.name for p in out.iterdir()} <= {PIPELINE_FILE}:
        return
    raise UsageError(
        f"{out} exists and was not made by this pipeline, so its summary is not written there.",
        "Set another `name` in the pipeline file, or move that folder yourself.",
    )


def _tag_ref(entry: CheckpointEntry) -> str:
    return f"{entry.stage}:{entry.name}"


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(f"harness: {text}", file=sys.stderr)
