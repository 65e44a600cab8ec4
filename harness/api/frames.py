"""pandas DataFrames of runs: one row per metric, or one per sample (pandas comes with the `pandas`
extra; nothing else in the harness needs it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harness.errors import MissingExtraError
from harness.runs.catalog import RunView

if TYPE_CHECKING:
    import pandas

METRIC_COLUMNS = (
    "checkpoint", "suite", "metric", "value", "stderr", "ci_low", "ci_high", "n", "ci_method", "primary",
    "settings_hash", "run_dir",
)  # fmt: skip


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise MissingExtraError(
            "DataFrames need pandas, which is not installed.",
            "Install it: pip install -e '.[pandas]' (or pip install 'post-train-harness[pandas]').",
        ) from None
    return pandas


def metrics_frame(runs: Sequence[RunView]) -> pandas.DataFrame:
    """One row per (run, metric); values are fractions (0.5 = 50%), None where not a number. A reasoning
    run adds its `ended_inside_reasoning` share (never primary: it is what thinking cost, not a score)."""
    rows = []
    for run in runs:
        extra = {} if run.reasoning is None else {run.reasoning.ended_inside.name: run.reasoning.ended_inside}
        for name, m in {**run.metrics, **extra}.items():
            where = (name == run.primary, run.manifest.settings_hash, str(run.run_dir))
            rows.append((run.manifest.checkpoint, run.suite, name, m.value, m.stderr, m.ci_low, m.ci_high, m.n,
                         m.ci_method, *where))  # fmt: skip
    return _pandas().DataFrame(rows, columns=list(METRIC_COLUMNS))


def samples_frame(runs: Sequence[RunView]) -> pandas.DataFrame:
    """One row per sample: its prompt, target, first response, every per-sample score (`score.NAME`)
    and every extracted value (`extracted.NAME`). Reasoning runs add the first response's `reasoning`
    (its thinking) and `answer` (None: it ended inside its thinking, so had no answer)."""
    rows: list[dict[str, Any]] = []
    for run in runs:
        for record in run.samples():
            row: dict[str, Any] = {
                "checkpoint": run.manifest.checkpoint,
                "suite": run.suite,
                "sample_id": record.id,
                "prompt": record.prompt,
                "target": record.target,
                "response": record.completions[0].text if record.completions else None,
                "n_responses": sum(len(c.texts) for c in record.completions),
            }
            if record.reasoning:
                row.update(reasoning=record.reasoning[0].reasoning, answer=record.reasoning[0].answer)
            row.update({f"score.{k}": v for k, v in record.scores.items()})
            row.update({f"extracted.{k}": v for k, v in record.extracted.items()})
            row["run_dir"] = str(run.run_dir)
            rows.append(row)
    return _pandas().DataFrame(rows)
