"""The local training backend: TRL's SFTTrainer and DPOTrainer on a peft LoRA (CPU or one GPU).

- Start point: `embedded` / `gguf:PATH` are exported once to `<output_dir>/_base/` (shared by every stage
  of that folder); `hf:DIR[+lora:DIR]` is used in place (training/local_model.py). The new checkpoint is
  `hf:BASE+lora:<out_dir>/adapter`, one adapter over the original base that carries the whole lineage.
- SFT: each conversation is tokenized through the tokenizer's chat template by `chat_tokens`, and TRL gets
  `input_ids` + `labels` with -100 everywhere but the assistant turns (content and end-of-turn token), so
  system and user tokens carry no loss whatever the template. Longer examples are cut at
  optim.max_length (keeping the start); one left with no assistant token is dropped (and counted).
- DPO: TRL's conversational preference format (prompt / chosen / rejected messages). Given a peft model
  whose adapter is the parent's (no ref_model), TRL 1.x copies that adapter into a frozen "ref" adapter and
  computes the reference log-probabilities with it, so the reference policy is the start point (the SFT
  model), never the bare base; a fresh adapter's copy is a no-op, i.e. the base.
- Schedule: the shared `learning_rate_at` (linear warm-up, then constant or linear decay), in a LambdaLR
  replacing the Trainer's own, so the learning rates match the Tinker backend's step for step.
- One `log.step` per optimizer step (loss, learning rate, grad norm and TRL's metrics); nothing is saved
  but the final adapter (`out_dir/adapter`): no Trainer checkpoints, no report_to integrations.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import DataError, UsageError
from training.backend import StartPoint, StepLog, TrainResult, learning_rate_at, steps_for
from training.config import StageConfig, TrainRequest
from training.data import ChatExample, PreferencePair
from training.local_model import (
    LocalBase,
    LoraSettings,
    chat_tokens,
    check_start,
    checkpoint_reference,
    load_for_training,
    prepare_base,
    save_adapter,
    training_device,
)
from training.prompts import RlPrompt

BASE_CACHE = "_base"  # beside the checkpoint folders: one export serves every stage of an output_dir
TRAINER_DIR = "_trainer"  # the Trainer's scratch output_dir inside the checkpoint folder, removed after
ADAPTER_DIR = "adapter"
# TRL's per-step metrics worth keeping in train_log.jsonl, under names without "/".
_LOGGED = {
    "grad_norm": "grad_norm",
    "mean_token_accuracy": "token_accuracy",
    "num_tokens": "tokens",
    "rewards/chosen": "reward_chosen",
    "rewards/rejected": "reward_rejected",
    "rewards/margins": "reward_margin",
    "rewards/accuracies": "reward_accuracy",
    "logps/chosen": "logp_chosen",
    "logps/rejected": "logp_rejected",
}


def _require_extras(stage: str) -> None:
    from adapters import require_extra

    what = f"Local {stage} training (--backend local)"
    for module in ("torch", "transformers", "peft", "trl", "datasets"):
        require_extra(module, "hf", what)


def _check_device(device: str | None) -> None:
    if device is None:
        return
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise UsageError(
            f"Unknown torch device '{device}' in the config.", "Use cpu, cuda or cuda:N."
        ) from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device: {device} was asked for, but torch sees no CUDA GPU.", "Use device: cpu.")


def step_logger(log: StepLog) -> Any:
    """A TrainerCallback writing one train_log line per optimizer step (Trainer logs every step)."""
    from transformers import TrainerCallback

    class _StepLogger(TrainerCallback):
        def on_log(
            self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None, **kw: Any
        ) -> None:
            if not logs or "loss" not in logs:
                return  # the end-of-training summary (train_runtime, train_loss ...)
            values: dict[str, float | int | str | None] = {
                "loss": float(logs["loss"]),
                "learning_rate": float(logs.get("learning_rate", math.nan)),
            }
            for key, name in _LOGGED.items():
                if key in logs:
                    values[name] = float(logs[key])
            log.step(int(state.global_step), **values)

    return _StepLogger()


def with_schedule(trainer_cls: Any, total: int, config: StageConfig) -> Any:
    """trainer_cls whose scheduler is the shared learning_rate_at (the optimizer carries the peak rate)."""
    optim = config.optim

    class Scheduled(trainer_cls):  # type: ignore[misc]
        def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
            from torch.optim.lr_scheduler import LambdaLR

            trainer: Any = self
            if trainer.lr_scheduler is None:
                trainer.lr_scheduler = LambdaLR(
                    optimizer or trainer.optimizer,
                    lambda step: learning_rate_at(step, total, 1.0, optim.lr_schedule, optim.warmup_steps),
                )
            return trainer.lr_scheduler

    return Scheduled


def checkpointing_flag() -> str:
    """transformers 5.2x renamed gradient_checkpointing (now a deprecated alias) to activation_checkpointing."""
    from transformers import TrainingArguments

    fields = TrainingArguments.__dataclass_fields__
    return "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """No `datasets` progress bars while TRL maps the (small) training set; the previous setting comes back."""
    import warnings

    from datasets.utils.tqdm import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    with warnings.catch_warnings():  # HF_DATASETS_DISABLE_PROGRESS_BARS, when set, wins (with a warning)
        warnings.simplefilter("ignore")
        disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                enable_progress_bars()


def without_printer(trainer: Any) -> Any:
    """disable_tqdm makes the Trainer print every log dict; train_log.jsonl and StepLog already say it."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def trainer_args(config: StageConfig, device: str, steps: int, scratch: Path) -> dict[str, Any]:
    """TrainingArguments shared by SFT and DPO (TRL's own defaults turned off where they hurt here)."""
    import torch

    cuda = torch.device(device).type == "cuda"
    return {
        "output_dir": str(scratch),
        "per_device_train_batch_size": config.optim.batch_size,
        "gradient_accumulation_steps": 1,
        "max_steps": steps,
        "learning_rate": config.optim.learning_rate,
        "weight_decay": config.optim.weight_decay,
        "seed": config.seed,
        "data_seed": config.seed,
        "max_length": config.optim.max_length,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        # TRL defaults to gradient checkpointing and bf16; a LoRA on a small model wants neither on CPU.
        checkpointing_flag(): False,
        "bf16": cuda and torch.cuda.is_bf16_supported(),
        "use_cpu": not cuda,
        "dataloader_num_workers": 0,
    }


def examples_seen(n: int, batch: int, steps: int) -> int:
    """Examples the sampler hands out in `steps` batches over epochs of n (the last batch may be short)."""
    per_epoch = max(1, math.ceil(n / batch))
    epochs, rest = divmod(steps, per_epoch)
    return epochs * n + min(rest * batch, n)


def sft_rows(
    tokenizer: Any, examples: Sequence[ChatExample], max_length: int
) -> tuple[list[dict[str, Any]], int]:
    """(pre-tokenized rows with input_ids + labels, examples dropped because no assistant token fit)."""
    rows, dropped = [], 0
    for example in examples:
        ids, mask = chat_tokens(tokenizer, example.messages)
        ids, mask = ids[:max_length], mask[:max_length]
        if not any(mask):
            dropped += 1
            continue
        rows.append({"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask, strict=True)]})
    return rows, dropped


def dpo_rows(
    tokenizer: Any, pairs: Sequence[PreferencePair], max_length: int
) -> tuple[list[dict[str, Any]], int]:
    """(TRL conversational preference rows, pairs dropped because the prompt alone fills max_length)."""
    rows, dropped = [], 0
    for pair in pairs:
        prompt = [{"role": m.role, "content": m.content} for m in pair.prompt]
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) >= max_length:
            dropped += 1  # TRL drops these too (no completion token would be left)
            continue
        rows.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": pair.chosen}],
                "rejected": [{"role": "assistant", "content": pair.rejected}],
            }
        )
    return rows, dropped


def _no_rows(stage: str, total: int, max_length: int) -> DataError:
    return DataError(
        f"None of the {total} {stage} examples leaves a response token within optim.max_length = {max_length}.",
        "Raise optim.max_length or use shorter examples.",
    )


def build_sft_trainer(
    request: TrainRequest, model: Any, tokenizer: Any, rows: list[dict[str, Any]], steps: int, out_dir: Path,
    log: StepLog,
) -> Any:  # fmt: skip
    from datasets import Dataset
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    config = request.config
    args = SFTConfig(**trainer_args(config, str(model.device), steps, out_dir / TRAINER_DIR))
    with quiet_datasets():
        trainer = with_schedule(SFTTrainer, steps, config)(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            callbacks=[step_logger(log)],
        )
    return without_printer(trainer)


def build_dpo_trainer(
    request: TrainRequest, model: Any, tokenizer: Any, rows: list[dict[str, Any]], steps: int, out_dir: Path,
    log: StepLog,
) -> Any:  # fmt: skip
    from datasets import Dataset
    from trl.trainer.dpo_config import DPOConfig
    from trl.trainer.dpo_trainer import DPOTrainer

    config = request.config
    args = DPOConfig(
        **trainer_args(config, str(model.device), steps, out_dir / TRAINER_DIR),
        beta=config.dpo.beta,
        loss_type=["sigmoid"],
        precompute_ref_log_probs=False,
    )
    # No ref_model: TRL copies the start adapter into a frozen "ref" adapter (see the module docstring).
    with quiet_datasets():
        trainer = with_schedule(DPOTrainer, steps, config)(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            callbacks=[step_logger(log)],
        )
    return without_printer(trainer)


def _note_lora(config: StageConfig, lora: LoraSettings) -> None:
    if lora.continued and (lora.rank, lora.alpha) != (config.lora.rank, config.lora.alpha):
        print(
            f"harness: continuing the parent LoRA {lora.continued_from}: rank {lora.rank}, alpha {lora.alpha} "
            f"(the config's lora.rank {config.lora.rank} / alpha {config.lora.alpha} apply to fresh adapters only)",
            file=sys.stderr,
        )


def _finish(
    trainer: Any, model: Any, tokenizer: Any, base: LocalBase, lora: LoraSettings, out_dir: Path, log: StepLog,
    steps: int, seen: int, extra: dict[str, Any],
) -> TrainResult:  # fmt: skip
    try:
        output = trainer.train()
        adapter_dir = save_adapter(model, tokenizer, out_dir / ADAPTER_DIR)
    finally:
        shutil.rmtree(out_dir / TRAINER_DIR, ignore_errors=True)
    runtime = float(output.metrics.get("train_runtime", math.nan))
    details = {
        "backend": "local",
        "adapter_dir": str(adapter_dir),
        "base_dir": str(base.base_dir),
        "lora": lora.record(),
        "final_loss": log.last("loss"),
        "seconds_per_step": round(runtime / max(1, steps), 3),
        "trl_version": importlib.metadata.version("trl"),
        "device": str(model.device),
        **extra,
    }
    return TrainResult(checkpoint_reference(base, adapter_dir), steps, seen, None, details)


class LocalBackend:
    name = "local"

    def check(self, request: TrainRequest, start: StartPoint) -> None:
        _require_extras(request.stage)
        check_start(start)
        _check_device(request.config.device)

    def _load(
        self, request: TrainRequest, start: StartPoint, out_dir: Path
    ) -> tuple[LocalBase, Any, Any, LoraSettings]:
        config = request.config
        base = prepare_base(start, out_dir.parent / BASE_CACHE)
        training_device(config.device, base)  # a bad device fails before the model loads
        model, tokenizer, lora = load_for_training(base, config.lora, config.device, config.seed)
        _note_lora(config, lora)
        return base, model, tokenizer, lora

    def train_sft(
        self,
        request: TrainRequest,
        start: StartPoint,
        examples: Sequence[ChatExample],
        out_dir: Path,
        log: StepLog,
    ) -> TrainResult:
        optim = request.config.optim
        base, model, tokenizer, lora = self._load(request, start, out_dir)
        rows, dropped = sft_rows(tokenizer, examples, optim.max_length)
        if not rows:
            raise _no_rows("sft", len(examples), optim.max_length)
        steps = steps_for(len(rows), optim.batch_size, optim.epochs, optim.max_steps)
        trainer = build_sft_trainer(request, model, tokenizer, rows, steps, out_dir, log)
        seen = examples_seen(len(rows), optim.batch_size, steps)
        extra = {"stage": "sft", "examples_dropped": dropped, "loss_tokens": "assistant turns"}
        return _finish(trainer, model, tokenizer, base, lora, out_dir, log, steps, seen, extra)

    def train_dpo(
        self,
        request: TrainRequest,
        start: StartPoint,
        pairs: Sequence[PreferencePair],
        out_dir: Path,
        log: StepLog,
    ) -> TrainResult:
        optim = request.config.optim
        base, model, tokenizer, lora = self._load(request, start, out_dir)
        rows, dropped = dpo_rows(tokenizer, pairs, optim.max_length)
        if not rows:
            raise _no_rows("dpo", len(pairs), optim.max_length)
        steps = steps_for(len(rows), optim.batch_size, optim.epochs, optim.max_steps)
        trainer = build_dpo_trainer(request, model, tokenizer, rows, steps, out_dir, log)
        seen = examples_seen(len(rows), optim.batch_size, steps)
        reference = "parent adapter (frozen copy)" if lora.continued else "base model (fresh adapter)"
        extra = {
            "stage": "dpo",
            "examples_dropped": dropped,
            "beta": request.config.dpo.beta,
            "reference": reference,
        }
        return _finish(trainer, model, tokenizer, base, lora, out_dir, log, steps, seen, extra)

    def train_rlvr(
        self,
        request: TrainRequest,
        start: StartPoint,
        prompts: Sequence[RlPrompt],
        out_dir: Path,
        log: StepLog,
    ) -> TrainResult:
        from training.local_rl import train_rlvr_local

        return train_rlvr_local(request, start, prompts, out_dir, log)
