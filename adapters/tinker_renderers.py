"""Tinker prompt renderers: chat messages <-> tokens, token for token as tinker-cookbook's renderers of
the same names (why not tinker-cookbook itself: see adapters/tinker.py)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from harness.errors import DataError, UsageError
from harness.types import Message

RENDERER_ENV = "HARNESS_TINKER_RENDERER"
TOKENIZER_ENV = "HARNESS_TINKER_TOKENIZER"
RENDERERS = ("llama3", "qwen3", "qwen3_instruct", "qwen3_disable_thinking", "role_colon")
LLAMA3_TOKENIZER = "thinkingmachineslabinc/meta-llama-3-instruct-tokenizer"  # ungated; tinker-cookbook's


def renderer_name_for(model: str) -> str:
    """Which renderer formats prompts for `model` (see the module docstring)."""
    name = os.environ.get(RENDERER_ENV, "").strip()
    if not name:
        base = model.split(":", 1)[0]
        if base.startswith("meta-llama/"):
            name = "llama3"
        elif base.startswith("Qwen/") and base.endswith("-Instruct-2507"):
            name = "qwen3_instruct"
        elif base.startswith("Qwen/") and base.endswith("-Base"):
            name = "role_colon"
        elif base.startswith("Qwen/"):
            name = "qwen3"
    if name not in RENDERERS:
        raise UsageError(
            f"No renderer {'named ' + repr(name) if name else 'is known'} for the Tinker model '{model}'.",
            f"Set {RENDERER_ENV} to one of: {', '.join(RENDERERS)}.",
        )
    return name


def load_tokenizer(model: str) -> Any:
    folder = os.environ.get(TOKENIZER_ENV, "").strip()
    name = model.split(":", 1)[0]
    source = folder or (LLAMA3_TOKENIZER if name.startswith("meta-llama/Llama-3") else name)
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as error:
        where = f"the folder {folder}" if folder else f"the Hugging Face hub ('{source}')"
        raise DataError(
            f"Cannot load the tokenizer for the Tinker model '{model}' from {where}: {str(error)[:300]}",
            "Offline or gated: save the tokenizer once (AutoTokenizer.from_pretrained(...).save_pretrained(DIR))"
            f" and set {TOKENIZER_ENV}=DIR.",
        ) from None


class Renderer:
    """Chat messages <-> tokens, as tinker-cookbook's renderer of the same name does it.

    Each piece is tokenized separately, the way the cookbook does, so prompts match token for token.
    """

    def __init__(self, name: str, tokenizer: Any) -> None:
        self.name, self.tokenizer = name, tokenizer
        if name == "llama3":
            self._end = self._single("<|eot_id|>")
        elif name != "role_colon":
            self._end = self._single("<|im_end|>")

    def _encode(self, text: str, split_special: bool = False) -> list[int]:
        extra = {"split_special_tokens": True} if split_special else {}
        return list(self.tokenizer.encode(text, add_special_tokens=False, **extra))

    def _single(self, text: str) -> int:
        ids = self._encode(text)
        if len(ids) != 1:
            raise UsageError(
                f"The renderer '{self.name}' needs the special token {text}, which this tokenizer lacks.",
                f"Choose a renderer that fits the model with {RENDERER_ENV}.",
            )
        return ids[0]

    def build_generation_prompt(self, messages: Sequence[Message]) -> Any:
        import tinker

        tokens: list[int] = []
        if self.name == "llama3":
            tokens += self._encode("<|begin_of_text|>")
            for m in messages:
                tokens += self._encode(f"<|start_header_id|>{m.role}<|end_header_id|>\n\n")
                tokens += self._encode(m.content + "<|eot_id|>")
            tokens += self._encode("<|start_header_id|>assistant<|end_header_id|>\n\n")
        elif self.name == "role_colon":
            bos = self.tokenizer.bos_token
            tokens += self._encode(bos) if bos else []
            for m in messages:
                tokens += self._encode(m.role.capitalize() + ":") + self._encode(f" {m.content}\n\n")
            tokens += self._encode("Assistant:")
        else:  # the Qwen3 / ChatML family
            for i, m in enumerate(messages):
                newline = "\n" if i else ""  # between turns, not before the first
                tokens += self._encode(f"{newline}<|im_start|>{m.role}\n")
                tokens += [*self._encode(m.content, split_special=True), self._end]
            suffix = ("\n" if messages else "") + "<|im_start|>assistant\n"
            if self.name == "qwen3_disable_thinking":
                suffix += "<think>\n\n</think>\n\n"  # an empty reasoning block: answer directly
            tokens += self._encode(suffix)
        return tinker.ModelInput.from_ints(tokens)

    def get_stop_sequences(self) -> list[int] | list[str]:
        return ["\n\nUser:"] if self.name == "role_colon" else [self._end]

    def parse_response(self, tokens: Sequence[int]) -> tuple[str, bool]:
        """(text, ended cleanly). Reasoning in <think>...</think> is left out of the text."""
        tokens = list(tokens)
        if self.name == "role_colon":
            eos = self.tokenizer.eos_token_id
            ended = bool(tokens) and tokens[-1] == eos
            text = str(self.tokenizer.decode(tokens[:-1] if ended else tokens))
            parts = text.split("\n\nUser:")
            return parts[0].removeprefix(" ").removesuffix("\n\n"), ended or len(parts) > 1
        ended = self._end in tokens
        text = str(self.tokenizer.decode(tokens[: tokens.index(self._end)] if ended else tokens))
        if ended and self.name != "llama3" and "</think>" in text:  # a truncated turn stays whole
            text = text.partition("</think>")[2]
            text = text if self.name == "qwen3_instruct" else text.lstrip("\n")
        return text, ended
