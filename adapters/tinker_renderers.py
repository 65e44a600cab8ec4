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
TRAIN_ON = ("last_assistant_message", "all_assistant_messages")  # tinker-cookbook's TrainOnWhat values


def _frame_thinking(reasoning: str) -> str:
    """Qwen3's template frames the produced turn's reasoning, even an empty one (tinker-cookbook 0.5.8)."""
    return "<think>\n" + reasoning.strip("\n") + "\n</think>\n\n"


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

    # -- supervised examples (SFT and DPO) ------------------------------------------------------------

    def build_supervised_example(
        self, messages: Sequence[Message], train_on: str = "last_assistant_message"
    ) -> tuple[list[int], list[float]]:
        """Tokens of the whole conversation and a 0/1 loss weight per token, as tinker-cookbook 0.5.8's
        `Renderer.build_supervised_example` builds them (`train_on`: its TrainOnWhat
        `last_assistant_message`, the default, or `all_assistant_messages`).

        Each message is a header (weight 0) and an output (the content plus the end-of-turn token:
        weight 1 where trained); role_colon appends the "User:" overlap of its stop sequence after the
        last message. Qwen3 and Qwen3-disable-thinking write the empty `<think>\\n\\n</think>\\n\\n`
        block their template puts on the produced (last) assistant turn. Then, as the cookbook's
        `_train_after_the_generation_prompt`, whatever the generation prompt itself supplies carries
        no loss (the disable-thinking renderer's empty block).
        """
        if train_on not in TRAIN_ON:
            raise ValueError(f"train_on must be one of {TRAIN_ON}, not {train_on!r}")
        messages = list(messages)
        last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
        tokens: list[int] = []
        weights: list[float] = []

        def add(ids: list[int], weight: float) -> None:
            tokens.extend(ids)
            weights.extend([weight] * len(ids))

        if self.name == "llama3":
            add(self._encode("<|begin_of_text|>"), 0.0)
        elif self.name == "role_colon" and self.tokenizer.bos_token:
            add(self._encode(self.tokenizer.bos_token), 0.0)
        for index, message in enumerate(messages):
            is_last = index == len(messages) - 1
            trained = message.role == "assistant" and (is_last or train_on == "all_assistant_messages")
            weight = 1.0 if trained else 0.0
            if self.name == "llama3":
                add(self._encode(f"<|start_header_id|>{message.role}<|end_header_id|>\n\n"), 0.0)
                add(self._encode(message.content + "<|eot_id|>"), weight)
            elif self.name == "role_colon":
                add(self._encode(message.role.capitalize() + ":"), 0.0)
                add(self._encode(f" {message.content}\n\n"), weight)
                if is_last:  # the cookbook's stop_overlap ("<UNUSED>" after a non-assistant turn)
                    add(self._encode("User:" if message.role == "assistant" else "<UNUSED>"), weight)
            else:
                add(self._encode(("\n" if index else "") + f"<|im_start|>{message.role}\n"), 0.0)
                add([*self._encode(self._qwen_output(message, is_last, last_user), split_special=True),
                     self._end], weight)  # fmt: skip
        boundary = len(messages) - 1
        if train_on == "last_assistant_message" and messages and messages[-1].role == "assistant":
            prompt = self.build_generation_prompt(messages[:boundary]).to_ints()
            if tokens[: len(prompt)] == prompt:
                weights[: len(prompt)] = [0.0] * len(prompt)
            elif self.name == "qwen3_disable_thinking":
                raise DataError(
                    "The renderer qwen3_disable_thinking has thinking turned off, but this assistant turn "
                    "contains reasoning: training on it would teach the model to reason after being told "
                    "not to.",
                    f"Use the qwen3 renderer ({RENDERER_ENV}=qwen3), or remove the reasoning from the turn.",
                )
        return tokens, weights

    def _qwen_output(self, message: Message, is_last: bool, last_user: int) -> str:
        """The cookbook's Qwen3Renderer.render_message content for string content (history keeps
        what it says; only the produced turn is framed, as strip_thinking_from_history=True does)."""
        content = message.content
        frames = (
            self.name in ("qwen3", "qwen3_disable_thinking")
            and message.role == "assistant"
            and last_user >= 0
            and is_last
        )
        if self.name == "qwen3_disable_thinking" and message.role == "assistant" and is_last and content:
            if last_user < 0:
                raise DataError(
                    "This conversation has no user message, so Qwen3's template writes no empty think "
                    "block on the produced turn, but the generation prompt always opens one.",
                    "Add a user message, or render with thinking enabled (qwen3).",
                )
        if frames and "</think>" in content:
            reasoning, _, rest = content.partition("</think>")
            content = _frame_thinking(reasoning.rpartition("<think>")[2]) + rest.lstrip("\n")
        if frames and "<think>" not in message.content:
            content = _frame_thinking("") + content.lstrip("\n")
        return content

    def get_stop_sequences(self) -> list[int] | list[str]:
        return ["\n\nUser:"] if self.name == "role_colon" else [self._end]

    def parse_response(self, tokens: Sequence[int]) -> tuple[str, bool]:
        """(text, ended cleanly). Reasoning in <think>...</think> is left out of the text."""
        text, _, ended = self.parse_reasoned(tokens)
        return text, ended

    def parse_reasoned(self, tokens: Sequence[int]) -> tuple[str, str | None, bool]:
        """(text, the reasoning left out of it or None, ended cleanly): parse_response's split, with the
        thinking kept (harness.reasoning stores it as the response's separate reasoning)."""
        tokens = list(tokens)
        if self.name == "role_colon":
            eos = self.tokenizer.eos_token_id
            ended = bool(tokens) and tokens[-1] == eos
            text = str(self.tokenizer.decode(tokens[:-1] if ended else tokens))
            parts = text.split("\n\nUser:")
            return parts[0].removeprefix(" ").removesuffix("\n\n"), None, ended or len(parts) > 1
        ended = self._end in tokens
        text = str(self.tokenizer.decode(tokens[: tokens.index(self._end)] if ended else tokens))
        reasoning = None
        if ended and self.name != "llama3" and "</think>" in text:  # a truncated turn stays whole
            thought, _, text = text.partition("</think>")
            reasoning = thought.partition("<think>")[2] if "<think>" in thought else thought
            reasoning = reasoning.strip() or None  # an empty think block: nothing was thought
            text = text if self.name == "qwen3_instruct" else text.lstrip("\n")
        return text, reasoning, ended
