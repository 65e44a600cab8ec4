"""What a 200 reply of an OpenAI-compatible server must hold to count as a completion.

A reply is hostile input. One that is not a valid completion (not JSON, no or empty `choices`, a choice
without `message`/`text`, `content` null or not a string, duplicate or missing indices, wrong types) is a
MalformedReply, which the adapter retries like a 5xx and never returns as a sample (so it is never cached).
Exactly one choice for n > 1 is the documented llama.cpp case (its server ignores `n`): FewerChoices.

Reasoning servers (harness.reasoning, `--reasoning field|auto`) send the thinking beside the answer: a chat
choice's `message.reasoning_content` (vLLM before 0.10's rename, llama.cpp's server with
`--reasoning-format deepseek`, the DeepSeek API) or `message.reasoning` (newer vLLM, OpenRouter, NIM) becomes
`Completion.reasonings` (None for a choice without one; `()` when no choice had one, so the stored record of
a server that sends neither is unchanged), and `usage.completion_tokens_details.reasoning_tokens` becomes
`Completion.reasoning_tokens` (0, which OpenAI sends for models that do not reason, counts as absent).
They are held to the same rules as `content`: a value that is not a string (not a count) or holds a lone
surrogate is a MalformedReply; their size counts toward the same reply cap, because the cap is on the whole
body. Text completions (/v1/completions) have no such field.

Token log-probabilities (`GenerationSettings.logprobs`; parse_completion's `logprobs_cap` is then the most
tokens a block may hold): each choice's `logprobs` block becomes that text's `TokenLogprobs`, or None when
it is missing, malformed, too long or does not spell the text (adapters/logprobs.py): a bad block never
fails the reply, it only leaves that text without log-probabilities.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from adapters.logprobs import choice_block
from harness.types import ApiKind, Completion, TokenLogprobs


class FewerChoices(Exception):
    """The server ignored `n` (llama.cpp's server does): fall back to n separate requests."""


class MalformedReply(Exception):
    """A 200 reply that is not a valid completion; the message says what is wrong with it."""


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _choice_text(choice: Mapping[str, Any], api: ApiKind, where: str) -> str:
    text = _raw_choice_text(choice, api, where)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape (\ud800): valid JSON, but not text to store
        raise MalformedReply(f"{where} holds a lone UTF-16 surrogate escape, not text") from None
    return text


def _raw_choice_text(choice: Mapping[str, Any], api: ApiKind, where: str) -> str:
    if api == "text":
        text = choice.get("text")
        if not isinstance(text, str):
            raise MalformedReply(f"{where} has 'text' of type {_type_name(text)}, not a string")
        return text
    message = choice.get("message")
    if not isinstance(message, dict):
        raise MalformedReply(f"{where} has no 'message' object")
    content = message.get("content")
    if isinstance(content, str):
        return content  # "" is a completion: a model may end at once
    if content is None and _choice_reasoning(choice, api, where) is not None:
        return ""  # a reasoning server whose model spent every token thinking: the answer part is empty
    raise MalformedReply(f"{where} has 'content' of type {_type_name(content)}, not a string (no text)")


REASONING_KEYS = ("reasoning_content", "reasoning")  # the older name first: some servers send both


def _choice_reasoning(choice: Mapping[str, Any], api: ApiKind, where: str) -> str | None:
    """The server's separate thinking for one chat choice; None when it sent none."""
    message = choice.get("message")
    if api == "text" or not isinstance(message, dict):
        return None
    for key in REASONING_KEYS:
        value = message.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise MalformedReply(f"{where} has '{key}' of type {_type_name(value)}, not a string")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedReply(
                f"{where} has '{key}' with a lone UTF-16 surrogate escape, not text"
            ) from None
        return value
    return None


def _reasoning_tokens(usage: Mapping[str, Any]) -> int | None:
    details = usage.get("completion_tokens_details")
    if details is None:
        return None
    if not isinstance(details, dict):
        raise MalformedReply(f"usage.completion_tokens_details is {_type_name(details)}, not an object")
    # OpenAI reports 0 for every model that does not reason: that says nothing, and no record gains a key.
    return _count(details, "reasoning_tokens", "usage.completion_tokens_details.") or None


def _count(usage: Mapping[str, Any], key: str, prefix: str = "usage.") -> int:
    value = usage.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedReply(f"{prefix}{key} is {value!r:.60}, not a token count")
    return value


def parse_completion(
    raw: bytes, api: ApiKind, n: int, latency_s: float, logprobs_cap: int | None = None
) -> Completion:
    """Validate a 200 reply; raise MalformedReply (or FewerChoices: one choice for n > 1). With
    `logprobs_cap`, read each choice's token log-probabilities too (at most that many tokens each)."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise MalformedReply(f"the body is not JSON ({len(raw)} bytes; truncated?)") from None
    if not isinstance(body, dict):
        raise MalformedReply(f"the body is a JSON {_type_name(body)}, not an object")
    choices = body.get("choices")
    if "error" in body and choices is None:
        raise MalformedReply(f"the body is an error object, not a completion: {str(body['error'])[:200]}")
    if not isinstance(choices, list):
        raise MalformedReply(f"'choices' is {_type_name(choices)}, not a list")
    if not choices:
        raise MalformedReply("'choices' is empty")
    picked: dict[int, tuple[str, str, str | None]] = {}
    blocks: dict[int, TokenLogprobs | None] = {}
    for position, choice in enumerate(choices):
        where = f"choice {position}"
        if not isinstance(choice, dict):
            raise MalformedReply(f"{where} is a {_type_name(choice)}, not an object")
        index = choice.get("index", position)
        if isinstance(index, bool) or not isinstance(index, int) or index in picked:
            raise MalformedReply(f"{where} has index {index!r} (not a distinct whole number)")
        reason = choice.get("finish_reason")
        if reason is not None and not isinstance(reason, str):
            raise MalformedReply(f"{where} has finish_reason of type {_type_name(reason)}")
        picked[index] = (
            _choice_text(choice, api, where),
            reason or "unknown",
            _choice_reasoning(choice, api, where),
        )
        if logprobs_cap is not None:
            blocks[index] = choice_block(choice, api, picked[index][0], logprobs_cap)
    if len(picked) == 1 and n > 1:
        raise FewerChoices()
    if sorted(picked) != list(range(n)):
        raise MalformedReply(f"it has {len(picked)} choice(s) (indices {sorted(picked)[:8]}) for n={n}")
    usage = body.get("usage") or {}
    if not isinstance(usage, dict):
        raise MalformedReply(f"'usage' is {_type_name(usage)}, not an object")
    reasonings = tuple(picked[i][2] for i in range(n))
    logprobs = tuple(blocks.get(i) for i in range(n))
    return Completion(
        texts=tuple(picked[i][0] for i in range(n)),
        finish_reasons=tuple(picked[i][1] for i in range(n)),
        prompt_tokens=_count(usage, "prompt_tokens"),
        completion_tokens=_count(usage, "completion_tokens"),
        latency_s=latency_s,
        reasonings=reasonings if any(r is not None for r in reasonings) else (),
        reasoning_tokens=_reasoning_tokens(usage),
        logprobs=logprobs if any(lp is not None for lp in logprobs) else (),
    )
