"""What thinking cost a reasoning run: the share of responses that ended inside their thinking (so had no
answer), and thinking vs answer tokens (mean, p50, p95). Written to metrics.json beside the metrics under
"reasoning"; `harness eval`, `harness show`, `harness report` and the leaderboard print it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.reasoning import ReasonedText, ReasoningSpec, split_completion, token_split
from harness.stats import percentile, summarize
from harness.types import Completion, Metric

if TYPE_CHECKING:
    from harness.runs.store import SampleRecord

ENDED_INSIDE = "ended_inside_reasoning"
_MAX_LISTED = 1000  # sample ids listed as unterminated; the rate counts them all


@dataclass(frozen=True)
class TokenStats:
    mean: float | None
    p50: float | None
    p95: float | None

    def to_record(self) -> dict[str, float | None]:
        return {"mean": self.mean, "p50": self.p50, "p95": self.p95}

    @classmethod
    def of(cls, values: Sequence[float]) -> TokenStats:
        if not values:
            return cls(None, None, None)
        ordered = sorted(values)
        mean = round(sum(ordered) / len(ordered), 1)
        return cls(mean, _percentile(ordered, 0.5), _percentile(ordered, 0.95))

    @classmethod
    def from_record(cls, record: Any) -> TokenStats:
        record = record if isinstance(record, Mapping) else {}
        return cls(*(_number(record.get(k)) for k in ("mean", "p50", "p95")))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _percentile(ordered: Sequence[float], q: float) -> float:
    """harness.stats.percentile to 0.1 (values here are token and character counts)."""
    return round(percentile(ordered, q) or 0.0, 1)


@dataclass(frozen=True)
class ReasoningSummary:
    mode: str  # ReasoningSpec.describe()
    ended_inside: Metric  # share of responses whose thinking never closed (no answer, scored 0)
    reasoning_tokens: TokenStats  # per sample
    answer_tokens: TokenStats
    reasoning_chars: TokenStats  # per sample, exact (a backend may report no tokens: a replay file)
    answer_chars: TokenStats
    token_count: str  # "reported" by the backend, "characters" (an estimate), or "mixed"
    unterminated: tuple[str, ...]  # sample ids with a response that ended inside its thinking

    def to_record(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            ENDED_INSIDE: self.ended_inside.to_record(),
            "reasoning_tokens": self.reasoning_tokens.to_record(),
            "answer_tokens": self.answer_tokens.to_record(),
            "reasoning_chars": self.reasoning_chars.to_record(),
            "answer_chars": self.answer_chars.to_record(),
            "token_count": self.token_count,
            "unterminated": list(self.unterminated[:_MAX_LISTED]),
        }

    @classmethod
    def from_record(cls, record: Any) -> ReasoningSummary | None:
        """Read back from metrics.json; None when the run has no reasoning block (or a damaged one)."""
        if not isinstance(record, Mapping) or not isinstance(record.get(ENDED_INSIDE), Mapping):
            return None
        ids = record.get("unterminated")
        return cls(
            mode=str(record.get("mode", "")),
            ended_inside=Metric.from_record(ENDED_INSIDE, record[ENDED_INSIDE]),
            reasoning_tokens=TokenStats.from_record(record.get("reasoning_tokens")),
            answer_tokens=TokenStats.from_record(record.get("answer_tokens")),
            reasoning_chars=TokenStats.from_record(record.get("reasoning_chars")),
            answer_chars=TokenStats.from_record(record.get("answer_chars")),
            token_count=str(record.get("token_count", "")),
            unterminated=tuple(str(i) for i in ids) if isinstance(ids, list) else (),
        )

    def describe(self) -> str:
        """One line for terminals: 'ended inside reasoning 12.0% (6 of 50); thinking tokens ...'."""
        rate = self.ended_inside
        share = "-" if rate.value is None else f"{100 * rate.value:.1f}%"
        ended = round((rate.value or 0) * rate.n)

        def spread(stats: TokenStats) -> str:
            if stats.mean is None:
                return "-"
            return f"mean {stats.mean:g} / p50 {stats.p50:g} / p95 {stats.p95:g}"

        counted = self.reasoning_tokens.mean or self.answer_tokens.mean
        if counted:
            unit, thinking, answer = "tokens", self.reasoning_tokens, self.answer_tokens
        else:  # the backend counted no tokens (a replay file): lengths in characters
            unit, thinking, answer = "characters", self.reasoning_chars, self.answer_chars
        estimate = " (split by characters: an estimate)" if counted and self.token_count != "reported" else ""
        return (
            f"reasoning {self.mode}: ended inside reasoning {share} ({ended} of {rate.n}); "
            f"thinking {unit} {spread(thinking)}; answer {unit} {spread(answer)}{estimate}"
        )


def record_parts(spec: ReasoningSpec, completions: Sequence[Completion]) -> tuple[ReasonedText, ...]:
    """Every response of a sample split, as stored in its record (nothing when reasoning is off)."""
    if not spec.enabled:
        return ()
    return tuple(part for c in completions for part in split_completion(spec, c))


def summarize_reasoning(spec: ReasoningSpec, records: Sequence[SampleRecord]) -> ReasoningSummary | None:
    if not spec.enabled:
        return None
    ended: list[float] = []
    thinking: list[float] = []
    answering: list[float] = []
    thinking_chars: list[float] = []
    answer_chars: list[float] = []
    methods: set[str] = set()
    unterminated: list[str] = []
    for record in records:
        sample_thinking = sample_answer = 0.0
        sample_thinking_chars = sample_answer_chars = 0
        sample_ended = False
        for completion in record.completions:
            parts = split_completion(spec, completion)
            reasoning, answer, method = token_split(completion, parts)
            sample_thinking, sample_answer = sample_thinking + reasoning, sample_answer + answer
            methods.add(method)
            for part in parts:
                ended.append(float(part.ended_inside_reasoning))
                sample_thinking_chars += len(part.reasoning)
                sample_answer_chars += len(part.answer or "")
                sample_ended = sample_ended or part.ended_inside_reasoning
        thinking.append(sample_thinking)
        answering.append(sample_answer)
        thinking_chars.append(sample_thinking_chars)
        answer_chars.append(sample_answer_chars)
        if sample_ended:
            unterminated.append(record.id)
    return ReasoningSummary(
        mode=spec.describe(),
        ended_inside=summarize(ENDED_INSIDE, ended),
        reasoning_tokens=TokenStats.of(thinking),
        answer_tokens=TokenStats.of(answering),
        reasoning_chars=TokenStats.of(thinking_chars),
        answer_chars=TokenStats.of(answer_chars),
        token_count=methods.pop() if len(methods) == 1 else ("mixed" if methods else "characters"),
        unterminated=tuple(unterminated),
    )
