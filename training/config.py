"""The training stage config: `harness train sft|dpo|rlvr --backend tinker|local --config FILE`.

One YAML file per stage; every key is optional except where marked, and each is documented below
(`harness train sft --example-config` prints them all with their defaults). The config's sha256 (over
its canonical JSON, after defaults are filled in) is recorded with the checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from harness.errors import UsageError
from training.schema import build, doc, to_record

Stage = Literal["sft", "dpo", "rlvr"]
Backend = Literal["local", "tinker"]
STAGES: tuple[Stage, ...] = ("sft", "dpo", "rlvr")
BACKENDS: tuple[Backend, ...] = ("local", "tinker")


@dataclass(frozen=True)
class DataConfig:
    path: str | None = doc(
        "local file: JSONL of chat `messages` (sft), `chosen`/`rejected` conversations (dpo), or RL prompts "
        "with `ground_truth` (rlvr: open-instruct RLVR rows or a `harness curate` pool)",
        None,
    )
    hub: str | None = doc("Hugging Face dataset id, used when `path` is not given", None)
    hub_config: str | None = doc("dataset config name on the hub", None)
    revision: str | None = doc("hub revision (a commit sha pins the data)", None)
    split: str = doc("split to read (hub datasets, and rlvr prompts from a suite)", "train")
    prompts: str | None = doc(
        "rlvr only: prompts from a suite's training data instead of a file: gsm8k:train, "
        "alice-synth:SEED (freshly generated puzzles), alice:train (Kaggle rows outside the eval split), "
        "mbpp:train",
        None,
    )
    datasets: tuple[str, ...] | None = doc(
        "rlvr files of open-instruct rows: keep only rows whose `dataset` is one of these (e.g. [gsm8k])",
        None,
    )
    limit: int | None = doc("use only the first N rows (after shuffling, if shuffle_seed is set)", None)
    shuffle_seed: int | None = doc("shuffle rows with this seed before `limit`", None)

    def __post_init__(self) -> None:
        given = [k for k in ("path", "hub", "prompts") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"data: give one of path, hub or prompts, not {' and '.join(given)}")
        if self.limit is not None and self.limit < 1:
            raise ValueError("data.limit must be at least 1")


@dataclass(frozen=True)
class LoraConfig:
    rank: int = doc("LoRA rank (Kaggle packages allow at most 32)", 16)
    alpha: int = doc("LoRA alpha (local; Tinker fixes its own scaling)", 32)
    dropout: float = doc("LoRA dropout (local)", 0.0)
    target_modules: tuple[str, ...] = doc(
        "modules that get LoRA weights (local)",
        ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    )

    def __post_init__(self) -> None:
        if self.rank < 1 or self.alpha < 1:
            raise ValueError("lora.rank and lora.alpha must be at least 1")


@dataclass(frozen=True)
class OptimConfig:
    learning_rate: float = doc("peak learning rate (LoRA)", 1e-4)
    batch_size: int = doc("examples per optimizer step (sft/dpo); for rlvr see rl.groups_per_step", 8)
    epochs: int = doc("passes over the data (sft/dpo)", 1)
    max_steps: int | None = doc("stop after this many optimizer steps (overrides epochs)", None)
    max_length: int = doc("tokens per example; longer ones are truncated", 1024)
    lr_schedule: Literal["constant", "linear"] = doc("linear decays to 0 over the run", "linear")
    warmup_steps: int = doc("linear warm-up steps", 0)
    weight_decay: float = doc("AdamW weight decay", 0.0)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.epochs < 1 or self.max_length < 8:
            raise ValueError("optim.batch_size and optim.epochs must be >= 1, optim.max_length >= 8")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("optim.max_steps must be at least 1")
        if not self.learning_rate > 0:
            raise ValueError("optim.learning_rate must be positive")


@dataclass(frozen=True)
class DpoConfig:
    beta: float = doc("DPO temperature: how far the policy may move from the reference", 0.1)

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise ValueError("dpo.beta must be positive")


@dataclass(frozen=True)
class RlConfig:
    steps: int = doc("optimizer steps", 10)
    groups_per_step: int = doc("prompts per step (each sampled group_size times)", 8)
    group_size: int = doc("completions per prompt; advantages are relative within the group", 8)
    max_new_tokens: int | None = doc(
        "sampled tokens per completion (default: the suite's pinned limit)", None
    )
    temperature: float = doc("sampling temperature for rollouts", 1.0)
    top_p: float = doc("nucleus sampling for rollouts", 1.0)
    clip_low: float = doc("PPO clip: ratio floor 1 - clip_low", 0.2)
    clip_high: float = doc(
        "DAPO clip-higher: ratio ceiling 1 + clip_high (> clip_low lets rare tokens grow)", 0.28
    )
    kl_coef: float = doc("KL penalty to the starting policy (DAPO: 0, no reference model needed)", 0.0)
    loss_aggregation: Literal["token", "sequence"] = doc(
        "token: mean over all tokens of the batch (DAPO); sequence: mean per completion, then over completions (GRPO)",
        "token",
    )
    normalize_advantages: bool = doc("divide group-relative advantages by the group's std (GRPO/DAPO)", True)
    dynamic_sampling: bool = doc(
        "drop groups whose rewards are all equal (all right or all wrong) and sample more", True
    )
    max_sampling_rounds: int = doc(
        "dynamic sampling: rounds of extra prompts before a step goes ahead short", 3
    )
    updates_per_batch: int = doc("gradient steps on each sampled batch (1 = on-policy)", 1)
    reasoning: Literal["none", "think-tags"] = doc(
        "think-tags: rewards score the text after the <think>...</think> blocks; a completion whose "
        "thinking never closed earns 0 (README: Evaluating reasoning models)",
        "none",
    )

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ValueError(
                "rl.group_size must be at least 2 (advantages compare completions of one prompt)"
            )
        if (
            self.steps < 1
            or self.groups_per_step < 1
            or self.max_sampling_rounds < 1
            or self.updates_per_batch < 1
        ):
            raise ValueError(
                "rl.steps, groups_per_step, max_sampling_rounds and updates_per_batch must be >= 1"
            )
        if not (0 <= self.clip_low < 1 and self.clip_high >= 0):
            raise ValueError("rl.clip_low must be in [0, 1) and rl.clip_high >= 0")
        if self.kl_coef < 0:
            raise ValueError("rl.kl_coef must be >= 0")


@dataclass(frozen=True)
class EvalConfig:
    suites: tuple[str, ...] = doc(
        "suites evaluated after training (and gated against the parent)", ("gsm8k", "ifeval")
    )
    limit: int | None = doc(
        "first N samples of each suite (null: all). 100 keeps the check after a stage to minutes; the gate's "
        "minimum detectable drop at 100 samples is several points, so set null (or use a class config) "
        "for numbers you report",
        100,
    )
    max_tokens: int | None = doc("override the suites' pinned max new tokens", None)
    gate: bool = doc(
        "run `harness gate` against the parent checkpoint (evaluating the parent if needed)", True
    )
    policy: str | None = doc("gate policy YAML (default: the shipped policy)", None)
    leaderboard: str | None = doc(
        "site folder rebuilt from the runs folder after the stage (null: none)", None
    )
    batch_size: int | None = doc("hf: prompts per generate call during evaluation", None)
    class_config: str | None = doc(
        "a class config (leaderboard.yaml): evaluate its suites under its limit, decoding and judge, so the "
        "stage's rows qualify on the class leaderboard (replaces `suites`, `limit` and `max_tokens`)",
        None,
    )

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError("eval.limit must be at least 1")


@dataclass(frozen=True)
class StageConfig:
    base: str = doc(
        "the checkpoint this stage starts from: embedded, gguf:PATH or hf:DIR[+lora:DIR] (local); "
        "tinker-base:MODEL or tinker://... (tinker); or a registry tag such as sft:latest",
        "embedded",
    )
    name: str | None = doc("registry name of the new checkpoint (default: STAGE-N)", None)
    tags: tuple[str, ...] = doc("extra registry tags (resolve as STAGE:TAG)", ())
    output_dir: str = doc(
        "where adapters, logs and the stage summary go (a folder per checkpoint)", "checkpoints"
    )
    seed: int = doc("seed for data order, LoRA init and sampling", 0)
    device: str | None = doc("local: torch device (default: cuda if available, else cpu)", None)
    data: DataConfig = field(default_factory=DataConfig, metadata={"doc": "training data"})
    lora: LoraConfig = field(default_factory=LoraConfig, metadata={"doc": "the LoRA adapter"})
    optim: OptimConfig = field(default_factory=OptimConfig, metadata={"doc": "optimizer and schedule"})
    dpo: DpoConfig = field(default_factory=DpoConfig, metadata={"doc": "dpo stage only"})
    rl: RlConfig = field(
        default_factory=RlConfig, metadata={"doc": "rlvr stage only (GRPO with DAPO options)"}
    )
    eval: EvalConfig = field(
        default_factory=EvalConfig, metadata={"doc": "after training: evaluate, gate, publish"}
    )


@dataclass(frozen=True)
class TrainRequest:
    """What `harness train` was asked to do: the stage, the backend and the validated config."""

    stage: Stage
    backend: Backend
    config: StageConfig
    source: str  # the config file (or "<pipeline FILE: stage N>")
    allow_contamination: bool = False

    def config_record(self) -> dict[str, Any]:
        return {"stage": self.stage, "backend": self.backend, **to_record(self.config)}

    def config_sha256(self) -> str:
        blob = json.dumps(self.config_record(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def parse_stage_config(mapping: Any, source: str) -> StageConfig:
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise UsageError(
            f"{source}: a training config is a YAML mapping of keys, not {type(mapping).__name__}."
        )
    return build(StageConfig, mapping, source)


def read_yaml(path: Path) -> Any:
    from harness.readers import read_yaml as read_strict

    return read_strict(path, "config file", fix="Fix the file; `--example-config` prints every key.")


def load_stage_config(path: Path) -> StageConfig:
    return parse_stage_config(read_yaml(path), str(path))


def with_overrides(config: StageConfig, **values: Any) -> StageConfig:
    """CLI flags (--base, --name, --output-dir, --max-steps ...) win over the file."""
    top = {k: v for k, v in values.items() if v is not None and k in StageConfig.__dataclass_fields__}
    config = replace(config, **top)
    if values.get("max_steps") is not None:
        config = replace(config, optim=replace(config.optim, max_steps=values["max_steps"]))
    if values.get("rl_steps") is not None:
        config = replace(config, rl=replace(config.rl, steps=values["rl_steps"]))
    return config
