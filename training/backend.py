"""What every training backend provides, and the records a stage leaves behind.

A backend (local: TRL + peft; tinker: the Tinker SDK) turns a start point and data into a new checkpoint
reference. The stage around it (training/stage.py) does everything else: decontamination, hashes, the
registry entry, evaluation, the gate and the leaderboard.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.lineage import CheckpointEntry
from training.config import TrainRequest
from training.data import ChatExample, PreferencePair
from training.prompts import RlPrompt

TRAIN_LOG = "train_log.jsonl"
ROLLOUTS = "rollouts.jsonl"  # rlvr: every sampled completion with its reward


@dataclass(frozen=True)
class StartPoint:
    """The checkpoint a stage starts from, resolved."""

    reference: str  # concrete: embedded, gguf:PATH, hf:DIR[+lora:DIR], tinker-base:MODEL, tinker://...
    entry: CheckpointEntry | None  # its registry entry (the parent of the new checkpoint)
    base_model: str  # the original base model (lineage root)

    @property
    def details(self) -> Mapping[str, Any]:
        return {} if self.entry is None else self.entry.details


@dataclass(frozen=True)
class TrainResult:
    reference: str  # the new checkpoint, concrete (what the registry entry points at)
    steps: int  # optimizer steps taken
    examples: int  # training examples (sft/dpo) or completions (rlvr) seen
    cost_usd: float | None = None  # what the service billed (None: local, no bill)
    details: Mapping[str, Any] = field(default_factory=dict)  # adapter dir, LoRA rank, Tinker state path ...


class StepLog:
    """`train_log.jsonl`: one line per optimizer step (flushed), plus a short progress line on stderr."""

    def __init__(self, path: Path, quiet: bool = False) -> None:
        self.path = path
        self.quiet = quiet
        self.records: list[dict[str, Any]] = []
        self._start = time.monotonic()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("", encoding="utf-8")
        (path.parent / ROLLOUTS).unlink(missing_ok=True)

    def step(self, step: int, **values: float | int | str | None) -> None:
        record: dict[str, Any] = {"step": step, "elapsed_s": round(time.monotonic() - self._start, 3)}
        for key, value in values.items():
            record[key] = None if isinstance(value, float) and not math.isfinite(value) else value
        self.records.append(record)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
        if not self.quiet:
            shown = " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in record.items()
                if k not in ("step", "elapsed_s") and v is not None
            )
            print(f"harness: step {step}: {shown}", file=sys.stderr)

    def rollout(self, step: int, **values: Any) -> None:
        """One sampled completion (rlvr), appended to rollouts.jsonl beside the step log."""
        with (self.path.parent / ROLLOUTS).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, **values}, ensure_ascii=False, sort_keys=True) + "\n")

    def last(self, key: str) -> Any:
        return next((r[key] for r in reversed(self.records) if r.get(key) is not None), None)


class TrainingBackend(Protocol):
    name: str

    def check(self, request: TrainRequest, start: StartPoint) -> None:
        """Fail fast (UsageError, MissingExtraError) before data is read or anything is trained."""
        ...

    def train_sft(
        self,
        request: TrainRequest,
        start: StartPoint,
        examples: Sequence[ChatExample],
        out_dir: Path,
        log: StepLog,
    ) -> TrainResult: ...

    def train_dpo(
        self,
        request: TrainRequest,
        start: StartPoint,
        pairs: Sequence[PreferencePair],
        out_dir: Path,
        log: StepLog,
    ) -> TrainResult: ...

    def train_rlvr(
        self,
        request: TrainRequest,
        start: StartPoint,
        prompts: Sequence[RlPrompt],
        out_dir: Path,
        log: StepLog,
    ) -> TrainResult: ...


def steps_for(n_examples: int, batch_size: int, epochs: int, max_steps: int | None) -> int:
    """Optimizer steps of an SFT/DPO run: ceil(examples / batch) per epoch, capped by max_steps."""
    per_epoch = max(1, math.ceil(n_examples / batch_size))
    total = per_epoch * epochs
    return total if max_steps is None else min(total, max_steps)


def learning_rate_at(step: int, total: int, peak: float, schedule: str, warmup: int) -> float:
    """Step is 0-based. Linear warm-up, then constant or linear decay to 0 at the end."""
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant":
        return peak
    remaining = max(1, total - warmup)
    return peak * max(0.0, 1.0 - (step - warmup) / remaining)


def get_backend(name: str) -> TrainingBackend:
    from harness.registry import Registry

    backends: Registry[str] = Registry("training backend")
    backends.register("local", "training.local_backend:LocalBackend")
    backends.register("tinker", "training.tinker_backend:TinkerBackend")
    module_name, _, attr = backends.get(name).partition(":")
    import importlib

    backend: TrainingBackend = getattr(importlib.import_module(module_name), attr)()
    return backend
