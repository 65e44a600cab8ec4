"""Verbalized confidence: a run evaluated with `--ask-confidence` asks the model to end its response with a
line "Confidence: N%". The line is cut off before the suite scores the answer (so GSM8K's last number is the
answer, not the confidence) and read back by the report's calibration section.

The instruction is part of the prompt, so it is recorded in the suite's pinned settings
(`suite_settings.confidence = "verbalized"`) and a run with it never shares a folder with one without.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from harness.errors import UsageError
from harness.suite import Suite
from harness.types import ApiKind, Completion, GenerationSettings, Request, Sample, Score

CONFIDENCE_INSTRUCTION = (
    'After your answer, write one last line of the form "Confidence: N%", where N (0 to 100) is how '
    "likely you think your answer is correct."
)
CONFIDENCE_PINNED = {"confidence": "verbalized"}

# The last such line of a response; a model may write "confidence: 85 %", "Confidence: **85%**" or "0.85".
_LINE = re.compile(
    r"^[ \t>*_#-]*confidence[ \t*_]*[:=][ \t*_]*(?P<value>\d{1,3}(?:\.\d+)?)[ \t]*(?P<percent>%?)[ \t*_.]*$",
    re.IGNORECASE | re.MULTILINE,
)


def _last_line(text: str) -> re.Match[str] | None:
    matches = list(_LINE.finditer(text[-10_000:]))  # the line ends the response: no need to scan a megabyte
    return matches[-1] if matches else None


def parse_verbalized(text: str) -> float | None:
    """The stated confidence as a probability in [0, 1]; None when the response states none or an
    impossible one (above 100%). "85%" and "85" are 0.85; "0.85" without a percent sign is 0.85."""
    match = _last_line(text)
    if match is None:
        return None
    value = float(match["value"])
    if not match["percent"] and value <= 1.0 and "." in match["value"]:
        return value
    return value / 100.0 if value <= 100.0 else None


def strip_verbalized(text: str) -> str:
    """The response without its confidence line (and anything after it), which is what a suite scores."""
    match = _last_line(text)
    if match is None:
        return text
    start = len(text) - len(text[-10_000:]) + match.start()
    return text[:start].rstrip()


# Suites whose responses have a right answer to be confident about. IFEval's instructions govern the whole
# response (an extra line can break "end with this phrase"); a safety response has no right answer.
ASKS_CONFIDENCE = ("gsm8k", "alice", "alice-synth", "mbpp", "mbpp-sanitized")


def asking_confidence(suite: Suite) -> Suite:
    """The suite with the confidence instruction appended to each chat prompt, recorded in its pinned
    settings, and the confidence line cut off every response before it is scored or rewarded."""
    if suite.name not in ASKS_CONFIDENCE:
        raise UsageError(
            f"The {suite.name} suite does not ask for verbalized confidence (--ask-confidence).",
            f"Suites that do: {', '.join(ASKS_CONFIDENCE)}; pass them with --suite.",
        )
    return _AskingConfidence(suite)


def _without_confidence(completion: Completion) -> Completion:
    # Offsets of stored logprobs stay valid: the line is cut from the end only.
    return replace(completion, texts=tuple(strip_verbalized(t) for t in completion.texts))


class _AskingConfidence:
    """Delegates to the wrapped suite; only prompts, pinned settings and what is scored change."""

    def __init__(self, inner: Suite) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:  # every other declaration and method is the suite's own
        return getattr(self.inner, name)

    def pinned_settings(self) -> Mapping[str, Any]:
        return {**self.inner.pinned_settings(), **CONFIDENCE_PINNED}

    def requests(self, sample: Sample, settings: GenerationSettings, api: ApiKind) -> list[Request]:
        if api != "chat":
            raise UsageError(
                "--ask-confidence needs a chat model: a completion prompt (few-shot text) has no place "
                "for the instruction that the model would follow.",
                "Evaluate a chat checkpoint, or drop --ask-confidence.",
            )
        asked = []
        for request in self.inner.requests(sample, settings, api):
            messages = request.messages or ()
            last = messages[-1]
            content = f"{last.content}\n\n{CONFIDENCE_INSTRUCTION}"
            asked.append(replace(request, messages=(*messages[:-1], replace(last, content=content))))
        return asked

    def score(self, sample: Sample, completions: Sequence[Completion]) -> Score:
        return self.inner.score(sample, [_without_confidence(c) for c in completions])

    async def ascore(self, sample: Sample, completions: Sequence[Completion]) -> Score:
        return await self.inner.ascore(sample, [_without_confidence(c) for c in completions])

    def reward(self, sample: Sample, text: str) -> float:
        return self.inner.reward(sample, strip_verbalized(text))

    def rewards(self, sample: Sample, texts: Sequence[str]) -> list[float]:
        return self.inner.rewards(sample, [strip_verbalized(t) for t in texts])

    def gold_response(self, sample: Sample) -> str | None:
        return self.inner.gold_response(sample)
