"""The Suite protocol: load -> requests -> score -> metrics, plus reward() for RL."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from harness.data import DataSource
from harness.reasoning import NO_REASONING, ReasoningSpec, answer_text, answer_view
from harness.stats import summarize
from harness.types import ApiKind, Completion, GenerationSettings, Metric, Request, Sample, Score

DEFAULT_REGIME = "harness"


def regime_pinned(regime: str) -> dict[str, Any]:
    """What a regime adds to pinned settings: nothing for the default (old hashes stay valid)."""
    return {} if regime == DEFAULT_REGIME else {"regime": regime}


@dataclass(frozen=True)
class SuiteOptions:
    """Choices a user may make per run that change how a suite scores (recorded via pinned_settings).
    A model judge is built once from these by `suites.build_suites` and handed to every suite that takes
    one, at construction."""

    judge: str = "refusal-heuristic"  # safety suites: which judge decides refusal
    judge_checkpoint: str | None = None  # the judge model (wildguard), as any checkpoint reference
    judge_timeout_s: float = 600.0  # per request to the judge model
    reasoning: ReasoningSpec = NO_REASONING  # how responses split into thinking and answer
    # The evaluation regime: "harness" (the pinned settings) or another the suite declares in `regimes`
    # ("tulu": OLMES's Tülu 3 prompts and limits, so a number stands next to the OLMo 2 rows).
    regime: str = DEFAULT_REGIME
    # "verbalized": prompts ask the model to end with "Confidence: N%" (harness.confidence); None: not asked.
    confidence: str | None = None

    @classmethod
    def of_run(
        cls,
        suite_settings: Mapping[str, Any],
        judge_checkpoint: str | None = None,
        where: str = "the run manifest",
    ) -> SuiteOptions:
        """The options a run was scored under, from its manifest's suite settings (judge, reasoning,
        regime and verbalized confidence)."""
        return cls(
            judge=str(suite_settings.get("judge", cls.judge)),
            judge_checkpoint=judge_checkpoint,
            reasoning=ReasoningSpec.from_pinned(suite_settings, where),
            regime=str(suite_settings.get("regime", DEFAULT_REGIME)),
            confidence=None
            if suite_settings.get("confidence") is None
            else str(suite_settings["confidence"]),
        )


@dataclass(frozen=True)
class LoadedData:
    samples: tuple[Sample, ...]  # after --limit
    total: int  # rows in the split before --limit
    source: str  # "dir:/path/file" or "hub:repo@revision"
    sha256: str  # over the parsed rows of the whole split


class Suite(Protocol):
    name: str
    version: str
    primary_metric: str
    # What `harness eval` prints by default (the primary first); per-category breakdowns stay in the
    # run's metrics.json, `harness show` and `eval --all-metrics`.
    headline_metrics: tuple[str, ...]
    description: str  # the pinned settings, in words; shown by `harness suites show`

    def default_settings(self) -> GenerationSettings: ...

    def pinned_settings(self) -> Mapping[str, Any]:
        """Suite-specific settings (shots, prompt format, split) recorded in the manifest and hashed."""
        ...

    def load(self, source: DataSource, limit: int | None) -> LoadedData: ...

    def requests(self, sample: Sample, settings: GenerationSettings, api: ApiKind) -> list[Request]: ...

    def score(self, sample: Sample, completions: Sequence[Completion]) -> Score: ...

    def metrics(self, scores: Sequence[Score]) -> dict[str, Metric]: ...

    def reward(self, sample: Sample, text: str) -> float: ...

    def gold_response(self, sample: Sample) -> str | None:
        """A response the reference says is right (for scorer checks); None when the suite has none."""
        ...

    # What a suite declares about its scoring (SuiteDefaults has the usual answers).
    judge: str | None  # the judge it scores with (safety suites), None when it has none
    # Reasoning models: the parser this suite's responses go through before score() (set from
    # SuiteOptions.reasoning; its pinned() belongs in pinned_settings()), and the default thinking budget
    # in tokens, added to max_tokens when reasoning is on (`harness suites show` prints it).
    reasoning: ReasoningSpec
    thinking_budget: int
    # Evaluation regimes it can run under (DEFAULT_REGIME first) and the one it runs under (set from
    # SuiteOptions.regime); a regime other than the default belongs in pinned_settings() as "regime".
    regimes: tuple[str, ...]
    regime: str

    async def ascore(self, sample: Sample, completions: Sequence[Completion]) -> Score:
        """score() without blocking the event loop (a model judge awaits; others run in a thread)."""
        ...

    def scoring_slots(self) -> int:
        """How many samples are scored at once."""
        ...

    def category_counts(self, source: DataSource) -> Mapping[str, int] | None:
        """Samples per category of the whole split, for `harness suites show`; None when not categorised."""
        ...

    def rewards(self, sample: Sample, texts: Sequence[str]) -> list[float]:
        """reward() of several responses to one sample (MBPP runs them as one sandbox batch)."""
        ...

    def measurement_mark(self) -> int:
        """A mark taken before scoring; `measurement_since(mark)` then gives what scoring measured."""
        ...

    def measurement_since(self, mark: int) -> dict[str, Any] | None:
        """The machine measurement that scaled scoring limits since `mark` (the code sandbox's timing),
        recorded in the run's manifest; None when scoring measured nothing."""
        ...


class SuiteDefaults:
    """The usual declarations, for suites to inherit: no judge; score() is pure Python under the GIL (and
    not every library it calls is thread-safe), so one sample at a time, in a worker thread so requests
    in flight are not stalled; no categories; nothing measured."""

    judge: str | None = None
    reasoning: ReasoningSpec = NO_REASONING
    thinking_budget: int = 2048
    regimes: tuple[str, ...] = (DEFAULT_REGIME,)
    regime: str = DEFAULT_REGIME

    def score(self, sample: Sample, completions: Sequence[Completion]) -> Score:
        raise NotImplementedError

    async def ascore(self, sample: Sample, completions: Sequence[Completion]) -> Score:
        return await asyncio.to_thread(self.score, sample, completions)

    def scoring_slots(self) -> int:
        return 1

    def category_counts(self, source: DataSource) -> Mapping[str, int] | None:
        return None

    def reward(self, sample: Sample, text: str) -> float:
        raise NotImplementedError

    def rewards(self, sample: Sample, texts: Sequence[str]) -> list[float]:
        return [float(self.reward(sample, text)) for text in texts]

    def measurement_mark(self) -> int:
        return 0

    def measurement_since(self, mark: int) -> dict[str, Any] | None:
        return None


async def score_sample(suite: Suite, sample: Sample, completions: Sequence[Completion]) -> Score:
    """The suite's verdict on the answers only: thinking is split off first (harness.reasoning), and a
    response that ended inside its thinking reaches the suite as "" marked `unanswered`."""
    return await suite.ascore(sample, [answer_view(suite.reasoning, c) for c in completions])


def answer_rewards(suite: Suite, sample: Sample, texts: Sequence[str]) -> list[float]:
    """reward() of raw sampled texts, on their answers only (suite.reasoning): a text whose thinking never
    closed earns 0 and is never scored from the thinking, so an RL policy gains nothing by putting the
    answer there or by running out of tokens mid-thought. Without reasoning, exactly suite.rewards()."""
    if not suite.reasoning.enabled:
        return (
            suite.rewards(sample, list(texts)) if len(texts) > 1 else [float(suite.reward(sample, texts[0]))]
        )
    answers = [answer_text(suite.reasoning, text) for text in texts]
    answered = [a for a in answers if a is not None]
    scored = iter(suite.rewards(sample, answered) if answered else [])
    return [0.0 if a is None else float(next(scored)) for a in answers]


def scoring_slots(suite: Suite) -> int:
    return max(1, suite.scoring_slots())


async def score_many(suite: Suite, pairs: Sequence[tuple[Sample, Sequence[Completion]]]) -> list[Score]:
    """Scores in the order given, `scoring_slots(suite)` samples at a time (rescore, submission checks)."""
    gate = asyncio.Semaphore(scoring_slots(suite))

    async def one(sample: Sample, completions: Sequence[Completion]) -> Score:
        async with gate:
            return await score_sample(suite, sample, completions)

    return list(await asyncio.gather(*(one(s, c) for s, c in pairs)))


def mean_metrics(scores: Sequence[Score], names: Sequence[str], seed: int = 0) -> dict[str, Metric]:
    """The usual case: each metric is the mean of a per-sample value."""
    return {name: summarize(name, [s.values[name] for s in scores], seed=seed) for name in names}
