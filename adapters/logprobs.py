"""Token log-probabilities from backends, checked against the text they belong to (calibration).

Every backend ends here: `from_token_strings` when it returns each token's text (OpenAI-compatible
servers, llama-cpp-python), `from_token_ids` when the harness decodes the token ids itself (hf, vLLM,
Tinker). One rule for all: the tokens must spell the returned text, either exactly or with a tail past it
(a stop string the backend cut off: tokens starting at or after the cut are dropped). Anything else (the
tokens spell reasoning plus answer, a byte-level token that is not text on its own, a server's garbled
block) gives None for that text, never guessed numbers: offsets are then right by construction.

Replies are hostile input: `chat_block` and `legacy_block` validate types and lengths, refuse blocks with
more tokens than `token_cap` allows, and answer None (logged at debug) instead of raising.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

from harness.types import TokenLogprobs

log = logging.getLogger("harness.logprobs")
# A backend may count a token or two more than max_tokens (a stop token, an EOS it reports); more than
# this many past max_tokens is not a block for this text.
TOKEN_SLACK = 16
# Servers round: a log-probability a hair above 0 is 0; anything larger is not a log-probability.
ROUNDING_SLACK = 1e-4


def token_cap(max_tokens: int) -> int:
    return max_tokens + TOKEN_SLACK


def _logprob(value: object) -> float | None:
    """A finite number <= 0 (rounding slack clipped), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy's float32 in-process
        return None
    number = float(value)
    if not math.isfinite(number) or number > ROUNDING_SLACK:
        return None
    return min(number, 0.0)


def _clean(logprobs: Sequence[object]) -> list[float] | None:
    cleaned = [_logprob(v) for v in logprobs]
    return None if any(v is None for v in cleaned) else [v for v in cleaned if v is not None]


def _fitted(offsets: list[int], spelled: str, logprobs: list[float], text: str) -> TokenLogprobs | None:
    """Tokens starting at `offsets` spell `spelled`: keep those inside `text` when `spelled` starts with it."""
    if spelled != text:
        if not spelled.startswith(text):
            return None
        kept = sum(1 for at in offsets if at < len(text)) if text else 0
        offsets, logprobs = offsets[:kept], logprobs[:kept]
    try:
        return TokenLogprobs(tuple(logprobs), tuple(offsets))
    except ValueError:
        return None


def from_token_strings(
    tokens: Sequence[object], logprobs: Sequence[object], text: str, cap: int
) -> TokenLogprobs | None:
    """Each token's text and log-probability, as a server returns them."""
    if len(tokens) != len(logprobs) or len(tokens) > cap:
        return None
    if not all(isinstance(t, str) for t in tokens):
        return None
    values = _clean(logprobs)
    if values is None:
        return None
    offsets, at = [], 0
    for token in tokens:
        offsets.append(at)
        at += len(str(token))
    return _fitted(offsets, "".join(str(t) for t in tokens), values, text)


def decoded_offsets(decode: Callable[[list[int]], str], token_ids: Sequence[int]) -> tuple[list[int], str]:
    """(where each token starts, the text they decode to), decoding incrementally: each new token is
    decoded with the few before it (a byte-level piece of a character, a SentencePiece leading space need
    them), so the cost stays linear. A token that only completes a character later starts where that
    character does. The caller checks the spelled text against the returned one."""
    offsets: list[int] = []
    text = ""
    prefix = read = 0  # decode(ids[prefix:read]) is the context already emitted as text
    for i in range(len(token_ids)):
        offsets.append(len(text))
        context = decode(list(token_ids[prefix:read]))
        extended = decode(list(token_ids[prefix : i + 1]))
        if len(extended) > len(context) and not extended.endswith("\ufffd") and extended.startswith(context):
            text += extended[len(context) :]
            prefix, read = read, i + 1
    if read < len(token_ids):  # an unfinished character at the end
        context = decode(list(token_ids[prefix:read]))
        extended = decode(list(token_ids[prefix:]))
        text += extended[len(context) :] if extended.startswith(context) else extended
    return offsets, text


def from_token_ids(
    decode: Callable[[list[int]], str],
    token_ids: Sequence[int],
    logprobs: Sequence[object] | None,
    text: str,
    cap: int,
) -> TokenLogprobs | None:
    """Token ids the harness decodes itself, with the backend's log-probability for each."""
    if logprobs is None or len(token_ids) != len(logprobs) or len(token_ids) > cap:
        return None
    values = _clean(logprobs)
    if values is None:
        return None
    offsets, spelled = decoded_offsets(decode, token_ids)
    if spelled != decode(list(token_ids)):  # the incremental decode went astray: not to be trusted
        return None
    return _fitted(offsets, spelled, values, text)


def _entry_pair(entry: object) -> tuple[object, object] | None:
    if not isinstance(entry, dict):
        return None
    return entry.get("token"), entry.get("logprob")


def chat_block(block: object, text: str, cap: int) -> TokenLogprobs | None:
    """A chat choice's `logprobs` ({"content": [{"token", "logprob", ...}, ...]}) for its `content`."""
    if block is None:
        return None
    content = block.get("content") if isinstance(block, dict) else None
    if not isinstance(content, list) or len(content) > cap:
        log.debug("chat logprobs block of type %s dropped", type(content).__name__)
        return None
    pairs = [_entry_pair(entry) for entry in content]
    if any(p is None for p in pairs):
        log.debug("chat logprobs block with an entry that is not an object dropped")
        return None
    tokens = [p[0] for p in pairs if p is not None]
    values = [p[1] for p in pairs if p is not None]
    fitted = from_token_strings(tokens, values, text, cap)
    if fitted is None:
        log.debug("chat logprobs block (%d tokens) does not fit its text; dropped", len(tokens))
    return fitted


def legacy_block(block: object, text: str, cap: int) -> TokenLogprobs | None:
    """A text completion's `logprobs` ({"tokens", "token_logprobs", "text_offset", ...}). The offsets come
    from the token strings: `text_offset` counts from the prompt's start on OpenAI and llama.cpp and from
    the completion's on others, and the token strings already place each token exactly. A null
    log-probability (the first token of an echo) leaves the text without a block."""
    if block is None:
        return None
    if not isinstance(block, dict):
        log.debug("text logprobs block of type %s dropped", type(block).__name__)
        return None
    tokens, values = block.get("tokens"), block.get("token_logprobs")
    if not isinstance(tokens, list) or not isinstance(values, list):
        log.debug("text logprobs block without token and token_logprobs lists dropped")
        return None
    fitted = from_token_strings(tokens, values, text, cap)
    if fitted is None:
        log.debug("text logprobs block (%d tokens) does not fit its text; dropped", len(tokens))
    return fitted


def choice_block(choice: dict[str, Any], api: str, text: str, cap: int) -> TokenLogprobs | None:
    """The block of one OpenAI-style choice (chat or text), or None."""
    block = choice.get("logprobs")
    return chat_block(block, text, cap) if api == "chat" else legacy_block(block, text, cap)


def vllm_sampled_logprobs(
    choice: Any, cap: int, decode: Callable[[list[int]], str] | None = None
) -> TokenLogprobs | None:
    """One vLLM CompletionOutput's token log-probabilities (`logprobs`: per token id a {token_id:
    Logprob(logprob, rank, decoded_token)}, in a list or vLLM's FlatLogprobs), placed in its text by
    decoding its token ids with `decode` (the tokenizer), else from each Logprob's `decoded_token`."""
    positions, token_ids = getattr(choice, "logprobs", None), list(getattr(choice, "token_ids", None) or ())
    if positions is None or len(positions) != len(token_ids) or len(token_ids) > cap:
        return None
    entries = [
        pos.get(tid) if hasattr(pos, "get") else None for pos, tid in zip(positions, token_ids, strict=True)
    ]
    if any(entry is None for entry in entries):
        return None
    values = [getattr(entry, "logprob", None) for entry in entries]
    if decode is not None:
        return from_token_ids(decode, token_ids, values, str(choice.text), cap)
    return from_token_strings(
        [getattr(e, "decoded_token", None) for e in entries], values, str(choice.text), cap
    )
