"""How to reach a model (AdapterOptions) and the missing-extra check; imported by the registry and by
every adapter module, so neither imports the other's package init."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from harness.errors import MissingExtraError


@dataclass(frozen=True)
class AdapterOptions:
    concurrency: int | None = None  # None: the adapter's own default
    timeout_s: float = 600.0
    api_key_env: str | None = None
    max_attempts: int = 8
    n_ctx: int | None = None
    batch_size: int | None = None  # local batched backends (hf); None: the adapter's default
    device: str | None = None  # hf: "cpu", "cuda", "cuda:1"; None: cuda when available
    tensor_parallel_size: int = 1  # vllm: GPUs to shard over
    price_table: str | None = None  # tinker: JSON file overriding the built-in USD prices per 1M tokens
    max_reply_bytes: int | None = None  # endpoints: bytes read per reply; None: scaled by max_tokens x n
    # Reasoning models: the open tag of a think block (harness.reasoning.ReasoningSpec.open_tag). Adapters that
    # render the chat template themselves flag a prompt that ends inside it (Completion.opened_in_prompt).
    think_open_tag: str = "<think>"
    # Endpoints: other base URLs serving the same model (adapters/replicas.py); requests go to the least
    # loaded one, and a failing one is drained until it recovers.
    replicas: tuple[str, ...] = ()


def opens_thinking(prompt: str, open_tag: str) -> bool:
    """Whether a rendered generation prompt ends inside an open think block (R1 distills, some Qwen3
    templates end with `<think>\n`): the model's text then starts inside the thinking."""
    return bool(open_tag) and prompt.rstrip().endswith(open_tag)


def require_extra(module: str, extra: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(
            f"{what} needs the '{extra}' extra, which is not installed (no '{module}' module).",
            f"Install it: pip install -e '.[{extra}]' (or pip install 'post-train-harness[{extra}]').",
        )
