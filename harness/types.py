"""Core types shared by suites, adapters and the runner. Small, typed and frozen."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant"]
ApiKind = Literal["chat", "text"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class Sample:
    """One dataset row, as a suite sees it."""

    id: str
    messages: tuple[Message, ...]  # the item itself (few-shot context is added by the suite's requests())
    target: str  # the reference answer, normalized for display
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def prompt_text(self) -> str:
        return self.messages[-1].content if self.messages else ""


@dataclass(frozen=True)
class GenerationSettings:
    max_tokens: int
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    n: int = 1
    seed: int | None = 0
    # Of max_tokens, the part reserved for thinking (reasoning runs only; None: no reasoning budget). Backends
    # with a native budget or an enable_thinking switch (0: thinking off) get it too.
    thinking_budget: int | None = None
    # Ask the backend for each generated token's log-probability (calibration). It does not change what is
    # generated, but a run with it is a different run (its records carry them), so it is hashed when on.
    logprobs: bool = False

    def as_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["stop"] = list(self.stop)
        # Absent when unset, so runs and cache keys from before budgets and logprobs keep their hashes.
        if self.thinking_budget is None:
            del record["thinking_budget"]
        if not self.logprobs:
            del record["logprobs"]
        return record


@dataclass(frozen=True)
class Request:
    """What an adapter receives: chat messages or a raw prompt, plus sampling settings.

    `key()` hashes exactly what is sent to the model (not the sample id), so two suites or two runs
    asking the same thing share one cache entry.
    """

    sample_id: str
    settings: GenerationSettings
    messages: tuple[Message, ...] | None = None
    prompt: str | None = None

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a Request carries either messages or a prompt, not both or neither")

    @property
    def api(self) -> ApiKind:
        return "chat" if self.messages is not None else "text"

    def key(self) -> str:
        payload = {
            "messages": [[m.role, m.content] for m in self.messages] if self.messages is not None else None,
            "prompt": self.prompt,
            "settings": self.settings.as_record(),
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


# Log-probabilities are stored rounded: 4 decimals is a probability error below 0.01% and keeps records short.
LOGPROB_DECIMALS = 4


@dataclass(frozen=True)
class TokenLogprobs:
    """One generated text's tokens as the backend scored them: token i starts at character offsets[i] of the
    text and has log-probability logprobs[i] (natural log, <= 0). Offsets never decrease; a token that
    is part of a multi-byte character may share its offset with the next one."""

    logprobs: tuple[float, ...]
    offsets: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.logprobs) != len(self.offsets):
            raise ValueError("token logprobs and offsets differ in length")
        if any(not math.isfinite(lp) or lp > 1e-6 for lp in self.logprobs):
            raise ValueError("a token log-probability must be a finite number <= 0")
        if any(b < a for a, b in zip(self.offsets, self.offsets[1:], strict=False)) or (
            self.offsets and self.offsets[0] < 0
        ):
            raise ValueError("token offsets must start at 0 or later and never decrease")

    def to_record(self) -> dict[str, Any]:
        return {"lp": [round(lp, LOGPROB_DECIMALS) for lp in self.logprobs], "at": list(self.offsets)}

    @classmethod
    def from_record(cls, record: Any, text_length: int) -> TokenLogprobs:
        if not isinstance(record, Mapping):
            raise ValueError("'logprobs' entries must be objects with 'lp' and 'at'")
        lp, at = record.get("lp"), record.get("at")
        if not isinstance(lp, list) or not isinstance(at, list):
            raise ValueError("'logprobs' entries need lists 'lp' and 'at'")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in lp):
            raise ValueError("'lp' must hold numbers")
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in at):
            raise ValueError("'at' must hold whole numbers")
        if at and at[-1] > text_length:
            raise ValueError("a token offset lies past the end of its text")
        return cls(tuple(float(x) for x in lp), tuple(at))

    @classmethod
    def from_tokens(cls, tokens: Sequence[str], logprobs: Sequence[float]) -> TokenLogprobs:
        """From the token strings a backend returns (they concatenate to the text), e.g. OpenAI's
        `logprobs.content[i].token`."""
        offsets, at = [], 0
        for token in tokens:
            offsets.append(at)
            at += len(token)
        return cls(tuple(float(x) for x in logprobs), tuple(offsets))


@dataclass(frozen=True)
class Completion:
    texts: tuple[str, ...]
    finish_reasons: tuple[str, ...]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    # Reasoning models (harness.reasoning): the server's separate thinking per text (`reasoning_content`),
    # the thinking tokens it reported, and whether the rendered prompt ended inside an open think tag.
    reasonings: tuple[str | None, ...] = ()
    reasoning_tokens: int | None = None
    opened_in_prompt: bool = False
    # Per text, the generated tokens' log-probabilities (only when GenerationSettings.logprobs asked and the
    # backend gives them; None for a text without). Empty: none were asked for or none were given.
    logprobs: tuple[TokenLogprobs | None, ...] = ()
    # Only on what a suite scores (harness.reasoning.answer_view): texts whose thinking never closed. Not stored.
    unanswered: tuple[bool, ...] = ()

    @property
    def text(self) -> str:
        return self.texts[0]

    @property
    def has_answer(self) -> bool:
        """False when the first text ended inside its thinking (it is then scored 0, whatever the suite)."""
        return not (self.unanswered and self.unanswered[0])

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "texts": list(self.texts),
            "finish_reasons": list(self.finish_reasons),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_s": round(self.latency_s, 4),
            "cost_usd": self.cost_usd,
        }
        if any(r is not None for r in self.reasonings):
            record["reasonings"] = list(self.reasonings)
        if self.reasoning_tokens is not None:
            record["reasoning_tokens"] = self.reasoning_tokens
        if self.opened_in_prompt:
            record["opened_in_prompt"] = True
        if any(lp is not None for lp in self.logprobs):
            record["logprobs"] = [None if lp is None else lp.to_record() for lp in self.logprobs]
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Completion:
        texts = record["texts"]
        reasons = record.get("finish_reasons", ["unknown"] * len(texts))
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ValueError("'texts' must be a list of strings")
        reasonings = record.get("reasonings", [])
        if not isinstance(reasonings, list) or not all(r is None or isinstance(r, str) for r in reasonings):
            raise ValueError("'reasonings' must be a list of strings or nulls")
        if len(reasonings) > len(texts):
            raise ValueError("'reasonings' has more entries than 'texts'")
        reasoning_tokens = record.get("reasoning_tokens")
        logprob_records = record.get("logprobs", [])
        if not isinstance(logprob_records, list) or len(logprob_records) > len(texts):
            raise ValueError("'logprobs' must be a list with at most one entry per text")
        logprobs = tuple(
            None if lp is None else TokenLogprobs.from_record(lp, len(text))
            for lp, text in zip(logprob_records, texts, strict=False)
        )
        return cls(
            texts=tuple(texts),
            finish_reasons=tuple(str(r) for r in reasons),
            prompt_tokens=int(record.get("prompt_tokens", 0)),
            completion_tokens=int(record.get("completion_tokens", 0)),
            latency_s=float(record.get("latency_s", 0.0)),
            cost_usd=float(record.get("cost_usd", 0.0)),
            reasonings=tuple(reasonings),
            reasoning_tokens=None if reasoning_tokens is None else int(reasoning_tokens),
            opened_in_prompt=record.get("opened_in_prompt") is True,
            logprobs=logprobs,
        )


@dataclass(frozen=True)
class Score:
    """Per-sample verdict: one value per metric (0/1 for exact match) and what was extracted."""

    values: Mapping[str, float]
    extracted: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Metric:
    """One metric of a run, as a suite computes it and as `metrics.json` holds it. A value that is not a
    number (no samples, one sample's stderr) is None: JSON has no NaN, and readers never see one."""

    name: str
    value: float | None
    stderr: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    # How ci_low/ci_high were made (harness.stats): "wilson", "wilson-bounded", "t", "bootstrap",
    # "stratified-wilson"; None when unrecorded.
    ci_method: str | None = None

    def __post_init__(self) -> None:
        for field_name in ("value", "stderr", "ci_low", "ci_high"):
            number = getattr(self, field_name)
            if number is not None and math.isnan(number):
                object.__setattr__(self, field_name, None)

    def to_record(self) -> dict[str, Any]:
        def clean(x: float | None) -> float | None:
            return None if x is None else round(x, 6)

        return {
            "value": clean(self.value),
            "stderr": clean(self.stderr),
            "ci95": [clean(self.ci_low), clean(self.ci_high)],
            "n": self.n,
            "ci_method": self.ci_method,
        }

    @classmethod
    def from_record(cls, name: str, record: Mapping[str, Any]) -> Metric:
        """A metric read back from a run's metrics.json (already validated by the reader)."""
        ci = record.get("ci95") or [None, None]
        method = record.get("ci_method")
        return cls(
            name, record.get("value"), record.get("stderr"), ci[0], ci[1], int(record.get("n", 0)),
            None if method is None else str(method),
        )  # fmt: skip


class Adapter(Protocol):
    """A model backend. Constructors are cheap; heavy libraries load on the first generate()."""

    api: ApiKind  # the request form this adapter sends
    concurrency: int  # how many generate() calls the runner keeps in flight
    batch_size: int  # how many requests one generate() call takes

    def identity(self) -> str:
        """Stable string naming the model and backend; keys the response cache and goes in manifests."""
        ...

    async def preflight(self) -> None:
        """Fail fast (EndpointError, UsageError) before any work when the model cannot be reached."""
        ...

    async def generate(self, requests: Sequence[Request]) -> list[Completion]: ...

    async def aclose(self) -> None: ...
