"""Reasoning models: split each response into its thinking and its answer, so suites score the answer only.

One parser per checkpoint, chosen by `--reasoning MODE`:
- `none`: the whole text is the answer (the default; runs made before this module keep their hashes).
- `think-tags`: `<think>...</think>` blocks (tags configurable) are thinking; the rest is the answer. A close
  tag with no open tag before it means the generation prompt opened the block (R1 distills, Qwen3: the chat
  template ends with `<think>`), as does an adapter that saw the rendered prompt end inside an open tag.
  An open tag inside a code fence or inline code of the answer is text, not thinking; inside thinking the
  first close tag ends the block (what vLLM's parsers do).
- `field`: the server separated them (`reasoning_content` / `reasoning` beside `content`: vLLM
  `--reasoning-parser`, llama.cpp `--reasoning-format`, NIM); the content is the answer, tags untouched.
- `auto`: `field` for a response that came with a reasoning field, else `think-tags`.

A response whose thinking never closed has no answer (`answer is None`): it scores 0 and is counted in the
run's "ended inside reasoning" rate. It is never scored from the thinking text.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from harness.errors import DataError, UsageError
from harness.types import Completion

ReasoningMode = Literal["none", "think-tags", "auto", "field"]
MODES: tuple[ReasoningMode, ...] = ("none", "think-tags", "auto", "field")
# Bump when a change to the parsing rules could change an answer: runs under another version never mix.
PARSER_VERSION = "1"
_FENCE = re.compile(r"^[ \t]*(```|~~~)", re.MULTILINE)
_MAX_TAG = 64


@dataclass(frozen=True)
class ReasoningSpec:
    """How one checkpoint's responses are split; part of every suite's pinned settings (so of the settings
    hash and the manifest) whenever the mode is not `none`."""

    mode: ReasoningMode = "none"
    open_tag: str = "<think>"
    close_tag: str = "</think>"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"Unknown reasoning mode '{self.mode}'.", f"Choose one of: {', '.join(MODES)}.")
        for name, tag in (("open", self.open_tag), ("close", self.close_tag)):
            if not tag or len(tag) > _MAX_TAG or tag != tag.strip() or "`" in tag:
                raise UsageError(
                    f"The reasoning {name} tag {tag!r} is not usable.",
                    f"A tag is 1-{_MAX_TAG} characters without surrounding spaces or backticks, "
                    "e.g. --think-tags '<think>' '</think>'.",
                )
        if self.open_tag == self.close_tag:
            raise UsageError(f"The reasoning open and close tags are both {self.open_tag!r}.")

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def pinned(self) -> dict[str, Any]:
        """What goes into a suite's pinned settings: nothing for `none` (old hashes stay valid)."""
        if not self.enabled:
            return {}
        record: dict[str, Any] = {"mode": self.mode, "parser": PARSER_VERSION}
        if self.mode != "field":
            record.update(open_tag=self.open_tag, close_tag=self.close_tag)
        return {"reasoning": record}

    def describe(self) -> str:
        if self.mode in ("none", "field"):
            return self.mode
        return f"{self.mode} {self.open_tag}...{self.close_tag}"

    @classmethod
    def from_pinned(cls, settings: Mapping[str, Any], where: str = "the run manifest") -> ReasoningSpec:
        """The spec a run was made under, from its manifest's suite settings."""
        record = settings.get("reasoning")
        if record is None:
            return cls()
        if not isinstance(record, Mapping) or record.get("parser") != PARSER_VERSION:
            raise DataError(
                f"{where} records a reasoning parser this harness does not have: {record!r}.",
                f"This harness parses reasoning with parser version {PARSER_VERSION}; re-run the "
                "evaluation (a new run folder) or use the harness version that made it.",
            )
        try:
            return cls(
                mode=record["mode"],
                open_tag=record.get("open_tag", "<think>"),
                close_tag=record.get("close_tag", "</think>"),
            )
        except (KeyError, UsageError) as error:
            raise DataError(f"{where} has an unreadable reasoning setting {record!r} ({error}).") from None


NO_REASONING = ReasoningSpec()


@dataclass(frozen=True)
class ReasonedText:
    """One response, split. `answer is None`: the thinking never closed, so there is no answer."""

    reasoning: str
    answer: str | None
    source: Literal["none", "tags", "field"]

    @property
    def ended_inside_reasoning(self) -> bool:
        return self.answer is None

    def to_record(self) -> dict[str, Any]:
        return {"reasoning": self.reasoning, "answer": self.answer, "source": self.source}

    @classmethod
    def from_record(cls, record: Any) -> ReasonedText:
        if not isinstance(record, dict):
            raise ValueError("each 'reasoning' entry must be an object")
        reasoning, answer, source = record.get("reasoning"), record.get("answer"), record.get("source")
        if not isinstance(reasoning, str) or not (answer is None or isinstance(answer, str)):
            raise ValueError("'reasoning' must be a string and 'answer' a string or null")
        if source not in ("none", "tags", "field"):
            raise ValueError(f"unknown reasoning source {source!r}")
        return cls(reasoning, answer, source)


class _Code:
    """Where a text holds code, indexed once: a response is hostile input, and re-scanning it from the start
    for every candidate tag would be quadratic (a megabyte of tags inside a fence)."""

    def __init__(self, text: str) -> None:
        self.text = text

    @functools.cached_property
    def fences(self) -> list[int]:
        return [m.start() for m in _FENCE.finditer(self.text)]

    @functools.cached_property
    def ticks(self) -> list[int]:
        return [m.start() for m in re.finditer("`", self.text)]

    @functools.cached_property
    def newlines(self) -> list[int]:
        return [m.start() for m in re.finditer("\n", self.text)]

    def in_fence(self, at: int) -> bool:
        """Inside a fenced block: an odd number of fence lines start before `at`."""
        return bisect.bisect_left(self.fences, at) % 2 == 1

    def in_inline(self, at: int, tag: str) -> bool:
        """Between backticks on the tag's own line (`<think>`)."""
        line = bisect.bisect_left(self.newlines, at)
        line_start = self.newlines[line - 1] + 1 if line else 0
        line_end = self.newlines[line] if line < len(self.newlines) else len(self.text)
        before = bisect.bisect_left(self.ticks, at) - bisect.bisect_left(self.ticks, line_start)
        after = bisect.bisect_left(self.ticks, line_end) - bisect.bisect_left(self.ticks, at + len(tag))
        return before % 2 == 1 and after > 0

    def find_open(self, tag: str, start: int) -> int:
        """The next open tag at or after `start` that is not code in the answer; -1 when none."""
        at = self.text.find(tag, start)
        while at != -1 and (self.in_fence(at) or self.in_inline(at, tag)):
            at = self.text.find(tag, at + len(tag))
        return at


def split_tags(text: str, open_tag: str, close_tag: str, opened_in_prompt: bool = False) -> ReasonedText:
    """Thinking blocks out, answer left (see the module docstring for the rules)."""
    code = _Code(text)
    first_close, first_open = text.find(close_tag), code.find_open(open_tag, 0)
    inside = opened_in_prompt or (
        first_close != -1
        and (first_open == -1 or first_close < first_open)
        and not code.in_fence(first_close)
        and not code.in_inline(first_close, close_tag)
    )
    thinking: list[str] = []
    answer: list[str] = []
    found = inside
    at = 0
    while at <= len(text):
        if inside:
            end = text.find(close_tag, at)
            if end == -1:
                thinking.append(text[at:])
                return ReasonedText(_joined(thinking), None, "tags")
            thinking.append(text[at:end])
            at, inside = end + len(close_tag), False
        else:
            start = code.find_open(open_tag, at)
            if start == -1:
                answer.append(text[at:])
                break
            answer.append(text[at:start])
            at, inside, found = start + len(open_tag), True, True
    if not found:
        return ReasonedText("", text.strip(), "none")
    # The answer keeps the text around the blocks as it was (IFEval counts paragraphs and spaces).
    return ReasonedText(_joined(thinking), "".join(answer).strip(), "tags")


def _joined(blocks: Sequence[str]) -> str:
    """Thinking blocks, each stripped, a blank line between."""
    return "\n\n".join(b.strip() for b in blocks if b.strip())


def split_field(content: str, reasoning: str | None) -> ReasonedText:
    """The server's split: content is the answer; thinking with no content means it never closed."""
    if reasoning is None:
        return ReasonedText("", content.strip(), "none")
    answered = bool(content.strip()) or not reasoning.strip()
    return ReasonedText(reasoning.strip(), content.strip() if answered else None, "field")


def split_response(spec: ReasoningSpec, completion: Completion, index: int) -> ReasonedText:
    text = completion.texts[index]
    field = completion.reasonings[index] if index < len(completion.reasonings) else None
    if spec.mode == "none":
        return ReasonedText("", text, "none")
    if spec.mode == "field" or (spec.mode == "auto" and field is not None):
        return split_field(text, field)
    parsed = split_tags(text, spec.open_tag, spec.close_tag, completion.opened_in_prompt)
    if field and field.strip():  # think-tags with a server that also split: its part is thinking too
        joined = "\n\n".join(p for p in (field.strip(), parsed.reasoning) if p)
        answer = parsed.answer or None  # thinking and no content: it never closed, as in split_field
        return ReasonedText(joined, answer, "field" if parsed.source == "none" else "tags")
    return parsed


def split_completion(spec: ReasoningSpec, completion: Completion) -> tuple[ReasonedText, ...]:
    return tuple(split_response(spec, completion, i) for i in range(len(completion.texts)))


def answer_view(spec: ReasoningSpec, completion: Completion) -> Completion:
    """What a suite scores: each text replaced by its answer ("" and `unanswered` when there is none).
    Token log-probabilities are dropped: their offsets point into the raw text, not the answer."""
    if not spec.enabled:
        return completion
    parts = split_completion(spec, completion)
    return replace(
        completion,
        texts=tuple(p.answer or "" for p in parts),
        unanswered=tuple(p.answer is None for p in parts),
        reasonings=(),
        logprobs=(),
    )


def answer_text(spec: ReasoningSpec, text: str, opened_in_prompt: bool = False) -> str | None:
    """The answer of one raw text with no server-side field (RL rewards, bridges): None when the thinking
    never closed. `field` mode has no field here, so the text is taken as the server's content."""
    if spec.mode in ("none", "field"):
        return text
    return split_tags(text, spec.open_tag, spec.close_tag, opened_in_prompt).answer


def token_split(completion: Completion, parts: Sequence[ReasonedText]) -> tuple[float, float, str]:
    """(reasoning tokens, answer tokens, how the split was made). The backend's count when it reports one;
    else the completion's tokens shared out by characters, which is an estimate and says so."""
    total = completion.completion_tokens
    if completion.reasoning_tokens is not None:
        reasoning = min(total, completion.reasoning_tokens) if total else completion.reasoning_tokens
        return float(reasoning), float(max(0, total - reasoning)), "reported"
    thinking = sum(len(p.reasoning) for p in parts)
    answered = sum(len(p.answer or "") for p in parts)
    if thinking + answered == 0:
        return 0.0, float(total), "characters"
    reasoning_share = total * thinking / (thinking + answered)
    return round(reasoning_share, 1), round(total - reasoning_share, 1), "characters"


__all__ = [
    "MODES",
    "NO_REASONING",
    "PARSER_VERSION",
    "ReasonedText",
    "ReasoningSpec",
    "answer_text",
    "answer_view",
    "split_completion",
    "split_field",
    "split_tags",
    "token_split",
]
