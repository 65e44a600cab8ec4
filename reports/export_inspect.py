"""`harness export inspect`: each harness run as an inspect-ai `.eval` log, for `inspect view`.

One log per run, written with `inspect_ai.log.write_eval_log` and read back by `read_eval_log`:
- samples (reports.inspect_samples): the exact input, the target, the response (a reasoning run's thinking
  as a `ContentReasoning` part, then its answer), one `Score` per harness score, the sample's metadata;
- results: one `EvalScore` per metric, named for it (its scorer too, so the viewer ties it to the sample
  scores of that name), carrying the value and its `stderr` as metrics and the 95% CI in metadata; the
  suite's primary metric comes first and is the headline. A metric that is not a number (no samples)
  is NaN, inspect's own "no value";
- the eval spec: task = suite, task version = suite version, the model as `harness/<reference>` (how
  `inspect eval --model` names it; credentials redacted), the generation settings as a `GenerateConfig`,
  the git revision, the created time and the run's settings hash, suite settings and data in metadata;
- status: "success" for a complete run, "cancelled" for an interrupted one, "error" otherwise.

Which runs: each argument is resolved like `harness report` does (reports.select): a run folder is that
run, a checkpoint contributes its chosen run per suite.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.checkpoints import redact_reference
from harness.errors import MissingExtraError
from harness.runs.catalog import RunView
from harness.types import Metric

if TYPE_CHECKING:
    from inspect_ai.log import EvalLog, EvalScore, EvalStatus
    from inspect_ai.model import GenerateConfig

# A run's status -> inspect's; any other run status (failed, running) is "error".
STATUS: dict[str, EvalStatus] = {"complete": "success", "interrupted": "cancelled"}
STDERR = "stderr"  # inspect's name for a metric's standard error (its built-in `stderr()` metric)


@dataclass(frozen=True)
class ExportedLog:
    run_dir: Path
    path: Path
    suite: str
    checkpoint: str  # redacted
    samples: int
    status: str  # the inspect status
    note: str | None  # why stored prompts stand in for the rebuilt inputs, if they do


@dataclass(frozen=True)
class InspectExport:
    out: Path
    logs: tuple[ExportedLog, ...]

    def describe(self) -> str:
        lines = [
            f"Wrote {len(self.logs)} inspect log(s) to {self.out}:",
            *(
                f"  {log.path.name}  ({log.checkpoint}, {log.suite}, {log.samples} samples, {log.status})"
                for log in self.logs
            ),
            *(f"  note: {log.path.name}: {log.note}" for log in self.logs if log.note),
            f"View them: inspect view --log-dir {self.out}",
        ]
        return "\n".join(lines)


def _require_inspect() -> None:
    try:
        import inspect_ai  # noqa: F401
    except ImportError:
        raise MissingExtraError(
            "Exporting inspect logs needs inspect-ai, which is not installed.",
            "Install it: pip install -e '.[inspect]' (or pip install 'post-train-harness[inspect]').",
        ) from None


def selected_runs(arguments: Sequence[str], runs_root: Path) -> list[RunView]:
    """Every argument's runs, in argument order, each run once. Arguments are resolved one at a time, so
    two run folders of one checkpoint and suite are both exported (a report would choose one)."""
    from reports.select import select

    runs: dict[Path, RunView] = {}
    for argument in arguments:
        selection = select([argument], runs_root)
        for checkpoint in selection.order:
            for suite in selection.catalog.suites():
                if suite in checkpoint.runs:
                    runs.setdefault(checkpoint.runs[suite].run_dir, checkpoint.runs[suite])
    return list(runs.values())


def model_name(run: RunView) -> str:
    return f"harness/{redact_reference(run.manifest.checkpoint)}"


def generate_config(run: RunView) -> GenerateConfig:
    from inspect_ai.model import GenerateConfig

    gen = run.manifest.generation
    return GenerateConfig(
        max_tokens=gen.max_tokens, temperature=gen.temperature, top_p=gen.top_p,
        stop_seqs=list(gen.stop) or None, num_choices=gen.n, seed=gen.seed, reasoning_tokens=gen.thinking_budget,
    )  # fmt: skip


def eval_score(metric: Metric, primary: bool) -> EvalScore:
    from inspect_ai.log import EvalMetric, EvalScore

    metrics = {
        metric.name: EvalMetric(name=metric.name, value=math.nan if metric.value is None else metric.value)
    }
    if metric.stderr is not None:
        metrics[STDERR] = EvalMetric(name=STDERR, value=metric.stderr)
    return EvalScore(
        name=metric.name, scorer=metric.name, scored_samples=metric.n, metrics=metrics,
        metadata={"ci95": [metric.ci_low, metric.ci_high], "ci_method": metric.ci_method, "n": metric.n,
                  "primary": primary},
    )  # fmt: skip


def _log_id(run: RunView) -> str:
    """Stable per run: the same run exports to the same file name (a re-export replaces it)."""
    m = run.manifest
    key = "\0".join((str(run.team), m.checkpoint, m.suite, m.suite_version, m.settings_hash))
    return hashlib.sha256(key.encode()).hexdigest()[:22]


def log_file_name(run: RunView) -> str:
    """inspect's `{timestamp}_{task}_{id}.eval`, which its log listing parses."""
    created = datetime.fromisoformat(run.manifest.created_at)
    offset = created.strftime("%z") or "+0000"
    stamp = created.strftime("%Y-%m-%dT%H-%M-%S") + f"{offset[:3]}-{offset[3:]}"
    return f"{stamp}_{run.suite.replace('_', '-')}_{_log_id(run)}.eval"


def _spec_metadata(run: RunView) -> dict[str, Any]:
    m = run.manifest
    lineage = run.lineage or {}
    return {
        "harness_version": m.harness_version, "settings_hash": m.settings_hash,
        "suite_settings": dict(m.suite_settings), "adapter": m.adapter,
        "data": {"source": redact_reference(m.data_source), "sha256": m.data_sha256},
        "checkpoint_name": lineage.get("name"), "stage": lineage.get("stage"), "team": run.team,
    }  # fmt: skip


def eval_log(run: RunView, data_dir: Path | None = None) -> tuple[EvalLog, str | None]:
    """(the run as an inspect log, a note when stored prompts stand in for rebuilt inputs)."""
    import inspect_ai
    from inspect_ai.log import (
        EvalConfig,
        EvalDataset,
        EvalError,
        EvalLog,
        EvalPlan,
        EvalPlanStep,
        EvalResults,
        EvalRevision,
        EvalSpec,
        EvalStats,
        HeadlineMetric,
    )
    from inspect_ai.model import ModelUsage

    from harness.reasoning import ReasoningSpec
    from reports.inspect_samples import eval_sample, sample_inputs

    m = run.manifest
    records = run.samples()
    inputs = sample_inputs(run, records, data_dir)
    model = model_name(run)
    reasoning = ReasoningSpec.from_pinned(m.suite_settings, str(run.run_dir))
    config = generate_config(run)
    spec = EvalSpec(
        eval_id=_log_id(run), run_id=_log_id(run), task_id=_log_id(run), created=m.created_at,
        task=m.suite, task_version=m.suite_version,
        dataset=EvalDataset(name=m.suite, location=redact_reference(m.data_source), samples=m.n_total,
                            sample_ids=[r.id for r in records]),
        model=model, model_generate_config=config, model_args={"adapter": m.adapter},
        config=EvalConfig(limit=m.limit, epochs=1),
        # The manifest records the commit, not where the repository lives.
        revision=None if m.git_revision is None else EvalRevision(
            type="git", origin="", commit=m.git_revision, dirty=m.git_dirty),
        packages={"inspect_ai": inspect_ai.__version__, "post-train-harness": m.harness_version},
        metadata=_spec_metadata(run),
    )  # fmt: skip
    # The primary metric first (the viewer's headline), the others as stored.
    ordered = sorted(run.metrics.values(), key=lambda metric: metric.name != run.primary)
    results = EvalResults(
        total_samples=m.n_samples, completed_samples=len(records),
        scores=[eval_score(metric, metric.name == run.primary) for metric in ordered],
        headline=HeadlineMetric(scorer=run.primary, metric=run.primary) if run.primary in run.metrics else None,
        metadata=None if run.reasoning is None else {"reasoning": run.reasoning.to_record()},
    )  # fmt: skip
    invocations = m.invocations
    usage = ModelUsage(
        input_tokens=m.prompt_tokens, output_tokens=m.completion_tokens,
        total_tokens=m.prompt_tokens + m.completion_tokens, total_cost=m.cost_usd or None,
    )  # fmt: skip
    stats = EvalStats(
        started_at=invocations[0].started_at if invocations else m.created_at,
        completed_at=(invocations[-1].finished_at or "") if invocations else "",
        model_usage={model: usage},
    )
    status: EvalStatus = STATUS.get(m.status, "error")
    error = None
    if status == "error":
        message = next((i.error for i in reversed(invocations) if i.error), None) or f"The run is {m.status}."
        error = EvalError(message=message, traceback="", traceback_ansi="")
    log = EvalLog(
        status=status, eval=spec,
        plan=EvalPlan(steps=[EvalPlanStep(solver="harness/generate", params={"suite": m.suite})], config=config),
        results=results, stats=stats, error=error,
        samples=[eval_sample(run, record, model, inputs, reasoning) for record in records],
    )  # fmt: skip
    return log, inputs.note


def export_inspect(
    arguments: Sequence[str], out: Path, runs_root: Path, data_dir: Path | None = None
) -> InspectExport:
    """Write one `.eval` log per selected run into `out` (created); see the module docstring."""
    _require_inspect()
    from inspect_ai.log import write_eval_log

    runs = selected_runs(arguments, runs_root)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for run in runs:
        log, note = eval_log(run, data_dir)
        path = out / log_file_name(run)
        write_eval_log(log, str(path))
        n = len(log.samples or [])
        written.append(ExportedLog(run.run_dir, path, run.suite, model_name(run), n, log.status, note))
    return InspectExport(out, tuple(written))
