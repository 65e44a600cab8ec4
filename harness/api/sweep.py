"""The local executor of a sweep file: every checkpoint's suites at once in this process, through one
scheduler (`harness.evaluate_many`), so checkpoints served by one server share its request queue."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UsageError
from harness.sweep.spec import SweepCheckpoint, SweepSpec

if TYPE_CHECKING:
    from adapters.options import AdapterOptions
    from harness.api.evaluate import EvalResults
    from harness.api.evaluate_many import CheckpointJob

log = logging.getLogger("harness")
_FIX = "See the sweep file format in docs/sweeps.md."
# The sweep file's backend keys and the AdapterOptions fields they set.
_FIELDS = {
    "concurrency": "concurrency",
    "timeout": "timeout_s",
    "max_attempts": "max_attempts",
    "batch_size": "batch_size",
    "device": "device",
    "api_key_env": "api_key_env",
}


def run_sweep_local(spec: SweepSpec, runs_root: Path, progress: bool) -> list[EvalResults]:
    """Evaluate every checkpoint of `spec` on its suites with the file's limit, generation, judge and data
    folder; one EvalResults per checkpoint, in file order."""
    from harness.api.evaluate import Generation
    from harness.api.evaluate_many import evaluate_many
    from harness.suite import SuiteOptions

    jobs = [checkpoint_job(spec, i, checkpoint) for i, checkpoint in enumerate(spec.checkpoints)]
    for checkpoint in spec.checkpoints:
        if checkpoint.serve:
            log.warning(
                "%s: `serve` is for the Slurm executor; locally the server must already be running.",
                checkpoint.reference,
            )
    generation = Generation(
        **{k: _generation_value(spec, k, v) for k, v in spec.generation.items() if v is not None}
    )
    return evaluate_many(
        jobs,
        limit=spec.limit,
        runs=runs_root,
        data_dir=spec.data_dir,
        generation=generation,
        scoring=SuiteOptions(spec.judge) if spec.judge else None,
        progress=progress,
    )


def checkpoint_job(spec: SweepSpec, index: int, checkpoint: SweepCheckpoint) -> CheckpointJob:
    """A sweep checkpoint as `evaluate_many` takes it: its suites, and its backend options and replicas
    as AdapterOptions."""
    from harness.api.evaluate_many import CheckpointJob

    return CheckpointJob(checkpoint.reference, checkpoint.suites, adapter_options(spec, index, checkpoint))


def adapter_options(spec: SweepSpec, index: int, checkpoint: SweepCheckpoint) -> AdapterOptions | None:
    """The checkpoint's `backend` and `replicas` as AdapterOptions (None: neither given, the defaults)."""
    from adapters.options import AdapterOptions

    if not checkpoint.backend and not checkpoint.replicas:
        return None
    where = f"checkpoints[{index}].backend"
    values = {
        _FIELDS[key]: _checked(spec, f"{where}.{key}", key, value)
        for key, value in checkpoint.backend.items()
    }
    return AdapterOptions(replicas=checkpoint.replicas, **values)


# generation key -> (accepted types, least value or None)
_GENERATION: dict[str, tuple[tuple[type, ...], float | None]] = {
    "seed": ((int,), None),
    "samples": ((int,), 1),
    "temperature": ((int, float), 0),
    "top_p": ((int, float), 0),
    "max_tokens": ((int,), 1),
    "thinking_budget": ((int,), 0),
    "logprobs": ((bool,), None),
}


def _generation_value(spec: SweepSpec, key: str, value: Any) -> Any:
    kinds, least = _GENERATION[key]
    right_kind = isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))
    if not right_kind or (least is not None and not value >= least):
        wanted = (
            "true or false" if bool in kinds else f"a number >= {least}" if least is not None else "a number"
        )
        raise UsageError(f"The sweep file {spec.path}: 'generation.{key}' must be {wanted}.", _FIX)
    return value


def _checked(spec: SweepSpec, where: str, key: str, value: Any) -> Any:
    def bad(problem: str) -> UsageError:
        return UsageError(f"The sweep file {spec.path}: '{where}' {problem}.", _FIX)

    if key in ("concurrency", "max_attempts", "batch_size"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise bad("must be a whole number >= 1")
        return value
    if key == "timeout":
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise bad("must be a positive number of seconds")
        return float(value)
    if not isinstance(value, str) or not value.strip():  # device, api_key_env
        raise bad("must be a non-empty string")
    return value
