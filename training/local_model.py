"""The start point of local training (TRL + peft), shared by the SFT/DPO backend and the local RL policy.

- `prepare_base`: the transformers folder a stage trains on. A GGUF (`embedded`, `gguf:PATH`) is exported
  once into the stages' shared cache (`harness export-hf`'s dequantized safetensors folder; TRL refuses a
  GGUF-loaded model) and reused while the GGUF's fingerprint matches `harness_export.json`; `hf:DIR` and
  `hf:DIR+lora:DIR` are used as they are.
- `load_for_training`: the base plus one trainable LoRA named "default". Continuing a parent LoRA
  (`hf:DIR+lora:PARENT`), the adapter starts as a copy of the parent's weights with the parent's
  rank/alpha/targets, so one adapter over the original base carries the whole lineage (SFT -> DPO -> RL):
  what `hf:BASE+lora:DIR`, vLLM and a Kaggle package need. A fresh adapter follows the stage's config.
- `load_reference`: the frozen reference policy (DPO's implicit reward, RL's KL) is the START point: the
  parent adapter loaded a second time as "reference", or the bare base (adapters disabled) when there is none.
- `chat_tokens`: token ids of a conversation through the tokenizer's chat template, with a mask that is 1
  exactly on the assistant turns (their content and end-of-turn token), the tokens SFT learns.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.checkpoints import EmbeddedRef, GgufRef, HfRef, parse_checkpoint
from harness.errors import UsageError
from harness.types import Message
from training.backend import StartPoint
from training.config import LoraConfig

TRAINED_ADAPTER = "default"  # the adapter being trained (peft's default name)
REFERENCE_ADAPTER = "reference"  # the frozen copy of the parent adapter (load_reference)
LOCAL_FORMS = """\
  embedded              the SmolLM2-135M-Instruct GGUF (exported once to a transformers folder)
  gguf:PATH             a local GGUF file (exported once to a transformers folder)
  hf:DIR                a transformers folder (e.g. written by `harness export-hf`)
  hf:DIR+lora:DIR       a transformers folder plus a peft LoRA (the new adapter continues it)
  STAGE:TAG             a registered checkpoint of one of these forms, e.g. sft:latest"""


@dataclass(frozen=True)
class LocalBase:
    base_dir: Path  # a transformers folder (absolute)
    parent_lora: Path | None  # the parent's LoRA adapter folder, when the start point is hf:DIR+lora:DIR


@dataclass(frozen=True)
class LoraSettings:
    """The LoRA actually trained: the config's, or the parent's when continuing one."""

    rank: int
    alpha: int
    dropout: float
    targets: tuple[str, ...]
    continued_from: str | None  # the parent adapter folder, or None for a fresh adapter

    @property
    def continued(self) -> bool:
        return self.continued_from is not None

    def record(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "alpha": self.alpha,
            "dropout": self.dropout,
            "targets": list(self.targets),
            "continued_from": self.continued_from,
        }


def _not_local(reference: str, why: str) -> UsageError:
    return UsageError(
        f"The local training backend cannot start from '{reference}': {why}.",
        f"Start from one of these forms (or use --backend tinker for Tinker checkpoints):\n{LOCAL_FORMS}",
    )


def check_start(start: StartPoint) -> None:
    """Fail fast on a start point the local backend cannot train from (no export, no model load)."""
    from adapters import require_extra
    from adapters.hf import resolve_lora_dir, resolve_model_dir
    from adapters.hf_export import has_chat_template
    from adapters.llama_cpp import embedded_gguf_path, resolve_gguf

    ref = parse_checkpoint(start.reference)
    if isinstance(ref, EmbeddedRef | GgufRef):
        require_extra("gguf", "hf", "Exporting a GGUF for local training")
        gguf = embedded_gguf_path() if isinstance(ref, EmbeddedRef) else resolve_gguf(ref.path)
        if not gguf.is_file():
            raise UsageError(f"The embedded GGUF {gguf} is missing.", "Reinstall the local extra.")
    elif isinstance(ref, HfRef):
        model_dir = resolve_model_dir(ref.path)
        if ref.lora:
            resolve_lora_dir(ref.lora)
        if not has_chat_template(model_dir):  # chat data is tokenized through the template
            raise UsageError(
                f"The tokenizer in {model_dir} has no chat template, so chat training data cannot be rendered.",
                "Save a tokenizer with a chat_template into the folder (harness export-hf keeps the GGUF's).",
            )
    else:
        raise _not_local(ref.raw, f"a {ref.form} checkpoint has no local weights to train")


def _export_name(gguf: Path, fingerprint: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", gguf.stem).strip("_.") or "model"
    return f"{stem}-{fingerprint[:8]}"


def _export_matches(folder: Path, fingerprint: str) -> bool:
    from adapters.hf_export import EXPORT_RECORD

    record_path = folder / EXPORT_RECORD
    if not record_path.is_file() or not any(folder.glob("*.safetensors")):
        return False
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return bool(record.get("source_fingerprint") == fingerprint)


def _remove_stale_export(target: Path) -> None:
    """Replace an export of other weights, but only a folder that export_gguf wrote (its record inside)."""
    from adapters.hf_export import EXPORT_RECORD

    if target.is_symlink() or not (target / EXPORT_RECORD).is_file():
        raise UsageError(
            f"{target} exists and is not an export the harness made, so it is left untouched.",
            "Move or delete it yourself, or set another output_dir.",
        )
    shutil.rmtree(target)


def exported_base(gguf: Path, cache_dir: Path) -> Path:
    """The GGUF's transformers export in cache_dir, made once; a second stage (or a rerun) reuses it."""
    from adapters.common import file_fingerprint
    from adapters.hf_export import export_gguf

    fingerprint = file_fingerprint(gguf)
    target = cache_dir / _export_name(gguf, fingerprint)
    if _export_matches(target, fingerprint):
        return target.resolve()
    # Export beside the target and rename: a crash or a concurrent stage never leaves half a folder there.
    staging = cache_dir / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    export_gguf(gguf, staging, force=True)
    if _export_matches(target, fingerprint):  # another stage finished first
        shutil.rmtree(staging, ignore_errors=True)
    else:
        try:
            if target.exists() or target.is_symlink():
                _remove_stale_export(target)
        except UsageError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        staging.rename(target)
    return target.resolve()


def prepare_base(start: StartPoint, cache_dir: Path) -> LocalBase:
    from adapters.hf import resolve_lora_dir, resolve_model_dir
    from adapters.llama_cpp import embedded_gguf_path, resolve_gguf

    ref = parse_checkpoint(start.reference)
    if isinstance(ref, EmbeddedRef):
        return LocalBase(exported_base(embedded_gguf_path(), cache_dir), None)
    if isinstance(ref, GgufRef):
        return LocalBase(exported_base(resolve_gguf(ref.path), cache_dir), None)
    if isinstance(ref, HfRef):
        lora = resolve_lora_dir(ref.lora) if ref.lora else None
        return LocalBase(resolve_model_dir(ref.path), lora)
    raise _not_local(ref.raw, f"a {ref.form} checkpoint has no local weights to train")


def training_device(requested: str | None, base: LocalBase) -> str:
    from adapters.hf import resolve_device_and_dtype

    return resolve_device_and_dtype(requested, base.base_dir)[0]


def load_tokenizer(base: LocalBase) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base.base_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _settings_of(peft_config: Any, continued_from: str | None) -> LoraSettings:
    targets = peft_config.target_modules
    targets = (targets,) if isinstance(targets, str) else tuple(sorted(targets or ()))
    return LoraSettings(
        rank=int(peft_config.r),
        alpha=int(peft_config.lora_alpha),
        dropout=float(peft_config.lora_dropout),
        targets=targets,
        continued_from=continued_from,
    )


def load_for_training(
    base: LocalBase, lora: LoraConfig, device: str | None, seed: int
) -> tuple[Any, Any, LoraSettings]:
    """(peft model with the trainable adapter "default" on `device`, tokenizer, the LoRA settings used)."""
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    torch.manual_seed(seed)  # the fresh adapter's A matrices (B starts at 0: the adapter starts as a no-op)
    # float32 master weights everywhere: on CUDA the trainer runs bf16 autocast over them.
    model: Any = AutoModelForCausalLM.from_pretrained(base.base_dir, dtype=torch.float32)
    if base.parent_lora is not None:
        peft_model: Any = PeftModel.from_pretrained(
            model, str(base.parent_lora), adapter_name=TRAINED_ADAPTER, is_trainable=True
        )
        settings = _settings_of(peft_model.peft_config[TRAINED_ADAPTER], str(base.parent_lora))
    else:
        config = PeftLoraConfig(
            r=lora.rank,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules),
            task_type="CAUSAL_LM",
        )
        peft_model = get_peft_model(model, config)
        settings = _settings_of(peft_model.peft_config[TRAINED_ADAPTER], None)
    peft_model.to(training_device(device, base))
    return peft_model, load_tokenizer(base), settings


def load_reference(model: Any, base: LocalBase) -> str | None:
    """The reference policy: the parent adapter as a frozen second adapter, or None (= adapters disabled).

    Use it with `with reference_policy(model, name): ...` under torch.no_grad().
    """
    if base.parent_lora is None:
        return None
    if REFERENCE_ADAPTER not in model.peft_config:
        model.load_adapter(str(base.parent_lora), adapter_name=REFERENCE_ADAPTER, is_trainable=False)
    # load_adapter leaves "default" active; make sure it is, and that only "default" trains.
    model.set_adapter(TRAINED_ADAPTER)
    return REFERENCE_ADAPTER


@contextlib.contextmanager
def reference_policy(model: Any, adapter: str | None) -> Iterator[None]:
    """Run the model as the reference policy inside the block: `adapter` active (frozen), or no adapter.

    peft's set_adapter() makes the activated adapter trainable unless inference_mode=True, and freezes the
    others; leaving the block makes "default" the active, trainable adapter again.
    """
    if adapter is None:
        with model.disable_adapter():
            yield
        return
    model.set_adapter(adapter, inference_mode=True)
    try:
        yield
    finally:
        model.set_adapter(TRAINED_ADAPTER)


def save_adapter(model: Any, tokenizer: Any, out_dir: Path) -> Path:
    """Write adapter "default" only (never the reference copy) and the tokenizer to out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), selected_adapters=[TRAINED_ADAPTER], safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    if not (out_dir / "adapter_config.json").is_file():
        raise RuntimeError(f"peft wrote no adapter_config.json to {out_dir}")
    return out_dir.resolve()


def checkpoint_reference(base: LocalBase, adapter_dir: Path) -> str:
    return f"hf:{base.base_dir.resolve()}+lora:{adapter_dir.resolve()}"


def _as_dicts(messages: Sequence[Message | Mapping[str, str]]) -> list[dict[str, str]]:
    out = []
    for m in messages:
        if isinstance(m, Message):
            out.append({"role": m.role, "content": m.content})
        else:
            out.append({"role": str(m["role"]), "content": str(m["content"])})
    return out


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    if not messages:
        return ""
    return str(
        tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    )


def _shared_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def assistant_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant turn in it.

    A turn starts where the conversation rendered up to it with the generation prompt stops (the model
    writes from there at inference) and ends where the conversation rendered through it stops. A template
    that renders earlier turns differently later on (e.g. dropping old reasoning) is handled by the common
    prefix, as TRL does with tokens.
    """
    text = _render(tokenizer, messages, generation_prompt=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = _shared_prefix(_render(tokenizer, messages[:i], generation_prompt=True), text)
        end = _shared_prefix(_render(tokenizer, messages[: i + 1], generation_prompt=False), text)
        if end > start:
            spans.append((start, end))
    return text, spans


def chat_tokens(
    tokenizer: Any, messages: Sequence[Message | Mapping[str, str]]
) -> tuple[list[int], list[int]]:
    """(token ids, mask): mask is 1 exactly on assistant-turn tokens, content plus end-of-turn token.

    The rendered text is tokenized once without the tokenizer's own special tokens (the template writes
    BOS where the model wants one, so none is doubled). Inside an assistant span, what follows its last
    special token (ChatML's newline after <|im_end|>) belongs to the template, not to the answer.
    """
    text, spans = assistant_spans(tokenizer, _as_dicts(messages))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(encoded["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(o) for o in encoded["offset_mapping"]]
    special = set(tokenizer.all_special_ids) | {
        i for i, t in tokenizer.added_tokens_decoder.items() if getattr(t, "special", False)
    }
    mask = [0] * len(ids)
    for start, end in spans:
        inside = [k for k, (s, _) in enumerate(offsets) if start <= s < end]
        specials = [k for k in inside if ids[k] in special]
        if specials:
            inside = [k for k in inside if k <= specials[-1]]
        for k in inside:
            mask[k] = 1
    return ids, mask


def token_logprobs(logits: Any, input_ids: Any) -> Any:
    """Per-token log-probabilities of input_ids[:, 1:] under logits[:, :-1] (shape B x T-1), differentiable.

    gather - logsumexp instead of log_softmax: no second B x T x V tensor (the vocabulary is the big axis).
    """
    import torch

    logits = logits[:, :-1, :].float()
    targets = input_ids[:, 1:].unsqueeze(-1)
    picked = torch.gather(logits, -1, targets).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)
