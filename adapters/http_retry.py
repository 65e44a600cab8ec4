"""HTTP pieces of the OpenAI-compatible adapter: the retry policy and its backoff, `Retry-After`, the cap
on bytes read from one reply, and reading a body without ever holding more than the cap."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

import aiohttp

from harness.types import GenerationSettings

# Reply cap: a token is a few bytes of text, up to ~6x more once JSON-escaped (\uXXXX); 64 per token
# leaves room for that and for reasoning text that some servers return beside the answer.
BYTES_PER_TOKEN = 64
# With log-probabilities each token also comes back as an object ({"token", "logprob", "bytes",
# "top_logprobs"}), 100-200 bytes escaped.
LOGPROB_BYTES_PER_TOKEN = 320
REPLY_OVERHEAD_BYTES = 64 * 1024
MIN_REPLY_BYTES = 1 << 20


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random, so retries spread out."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0**attempt)
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def reply_byte_cap(settings: GenerationSettings, override: int | None = None) -> int:
    """The most bytes read from one reply: `override` when given, else a budget per requested token."""
    if override is not None:
        return override
    per_token = LOGPROB_BYTES_PER_TOKEN if settings.logprobs else BYTES_PER_TOKEN
    return max(MIN_REPLY_BYTES, per_token * settings.max_tokens * settings.n + REPLY_OVERHEAD_BYTES)


class RetryableReply(Exception):
    """A reply worth another try (at another replica when `drains`)."""

    def __init__(
        self, reason: str, wait_s: float | None = None, detail: str | None = None, drains: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason  # a short kind, the key of retry_counts
        self.wait_s = wait_s
        self.detail = detail or reason  # what the final error says
        self.drains = drains  # the server failed (dropped, timed out, 5xx): drain that replica


async def read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes | None:
    """The body, or None as soon as it is over `cap` bytes (decompressed; nothing more is read)."""
    if response.content_length is not None and response.content_length > cap:
        response.close()
        return None
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > cap:
            response.close()  # drop the connection rather than drain the rest
            return None
    return bytes(body)
