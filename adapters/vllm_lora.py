"""A peft LoRA folder as vLLM will take it: its config checked for what vLLM refuses (vllm/lora/peft_helper.py),
its rank rounded up to a `max_lora_rank` vLLM accepts, before any GPU work."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.errors import UsageError

# vllm/config/lora.py: MaxLoRARanks = Literal[1, 8, 16, 32, 64, 128, 256, 320, 512]; vLLM 0.8's
# LoRAConfig accepted (8, ..., 512) without 1, so ranks below 8 round up to 8, which every version takes.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def lora_rank(config: Mapping[str, Any], where: str = "adapter_config.json") -> int:
    """The largest rank in a peft LoRA config: `r`, or any per-module `rank_pattern` override."""
    r = config.get("r")
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise UsageError(f"{where} has no positive integer 'r' (LoRA rank): {r!r}.", "Is this a peft LoRA?")
    pattern = config.get("rank_pattern") or {}
    ranks = [r, *(v for v in pattern.values() if isinstance(v, int))] if isinstance(pattern, dict) else [r]
    return max(ranks)


def vllm_max_lora_rank(rank: int) -> int:
    """The smallest `max_lora_rank` vLLM accepts that holds `rank`."""
    for allowed in VLLM_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise UsageError(
        f"The LoRA rank {rank} is above {VLLM_LORA_RANKS[-1]}, the largest max_lora_rank vLLM accepts.",
        "Serve it with hf:BASE+lora:PATH, or merge the adapter into the base weights.",
    )


def read_lora_config(adapter_dir: Path) -> dict[str, Any]:
    """adapter_config.json, checked for what vLLM refuses (vllm/lora/peft_helper.py) before any GPU work."""
    path = adapter_dir / "adapter_config.json"
    if not path.is_file():
        raise UsageError(
            f"{adapter_dir} is not a peft LoRA folder (no adapter_config.json).",
            "Point +lora: at the folder that save_pretrained() wrote.",
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UsageError(f"{path} is not readable JSON: {error}.", "Re-save the adapter.") from None
    if not isinstance(config, dict):
        raise UsageError(f"{path} does not hold a JSON object.", "Re-save the adapter.")
    peft_type = str(config.get("peft_type", "LORA")).upper()
    problems = []
    if peft_type != "LORA":
        problems.append(f"it is a {peft_type} adapter, and vLLM loads only LoRA")
    if config.get("use_dora"):
        problems.append("it uses DoRA, which vLLM does not support")
    if config.get("modules_to_save"):
        problems.append(f"it saves full modules {config['modules_to_save']}, which vLLM does not load")
    if problems:
        raise UsageError(
            f"vLLM cannot serve the adapter in {adapter_dir}: {'; '.join(problems)}.",
            "Evaluate it with hf:BASE+lora:PATH instead.",
        )
    return config


def resolve_lora(path_text: str) -> Path:
    path = Path(path_text).expanduser()
    if not path.is_dir():
        raise UsageError(f"The LoRA folder {path} does not exist.", "Check the path after '+lora:'.")
    return path.resolve()
