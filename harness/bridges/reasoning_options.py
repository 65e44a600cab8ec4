"""Reasoning models through the bridges: the `reasoning` option and what the peer gets back.

Both peers take the same three options beside the adapter's own (inspect's `-M key=value`, lm-eval's
`--model_args key=value,...`): `reasoning=none|think-tags|auto|field` and, for think-tags or auto,
`think_open=<think>` and `think_close=</think>`. Each response is split with harness.reasoning, so the
peer scores the answer only, exactly as `harness eval --reasoning` would.

Stop sequences: a task's stops (lm-eval's `until`, e.g. the few-shot "\\n\\n"; inspect's stop_seqs) are
not sent to the backend while thinking is split off, since they occur inside thinking and would end the
generation before any answer; they cut the answer after the thinking is removed. That is lm-eval's own
order (lm_eval.models.utils.postprocess_generated_text strips thinking, then applies `until`; its vLLM
model sends only EOS as a stop when `think_end_token` is set).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from harness.bridges import REASONING_OPTIONS, cut_at_stop
from harness.errors import UsageError
from harness.reasoning import MODES, ReasonedText, ReasoningSpec
from harness.types import GenerationSettings

MODE_OPTION, OPEN_OPTION, CLOSE_OPTION = REASONING_OPTIONS


def reasoning_from_options(raw: Mapping[str, Any], what: str) -> tuple[ReasoningSpec, dict[str, Any]]:
    """The reasoning spec the options ask for, and the remaining (adapter) options.

    lm-eval turns the value `none` into None, so a missing or None mode is `none`."""
    rest = {k: v for k, v in raw.items() if k not in REASONING_OPTIONS}
    mode = raw.get(MODE_OPTION)
    mode_text = "none" if mode is None else str(mode)
    tags = {k: str(raw[k]) for k in (OPEN_OPTION, CLOSE_OPTION) if raw.get(k) is not None}
    example = f"{what} {MODE_OPTION}=think-tags {what} {OPEN_OPTION}=<think> {what} {CLOSE_OPTION}=</think>"
    if mode_text not in MODES:
        raise UsageError(
            f"Unknown {what} option {MODE_OPTION}={mode_text!r}.", f"Choose one of: {', '.join(MODES)}."
        )
    if tags and mode_text not in ("think-tags", "auto"):
        raise UsageError(
            f"{what} {' and '.join(sorted(tags))} apply to {MODE_OPTION}=think-tags or auto, "
            f"not {MODE_OPTION}={mode_text}.",
            f"e.g. {example}",
        )
    defaults = ReasoningSpec()
    try:
        spec = ReasoningSpec(
            mode=mode_text,  # checked against MODES above
            open_tag=tags.get(OPEN_OPTION, defaults.open_tag),
            close_tag=tags.get(CLOSE_OPTION, defaults.close_tag),
        )
    except UsageError as error:  # its fix names the CLI's --think-tags; name the bridge's options instead
        raise UsageError(error.problem, f"e.g. {example}") from None
    return spec, rest


def backend_settings(spec: ReasoningSpec, settings: GenerationSettings) -> GenerationSettings:
    """What the backend is asked for: the task's stops are held back while thinking is split off."""
    return dataclasses.replace(settings, stop=()) if spec.enabled else settings


def answer_for_peer(part: ReasonedText, stops: tuple[str, ...]) -> str:
    """The text the peer scores: the answer cut at the task's stops; "" when the thinking never closed."""
    return "" if part.answer is None else cut_at_stop(part.answer, stops)
