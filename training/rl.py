"""GRPO with the DAPO options, shared by both backends; rewards are the suites' own `reward()`.

One step: take `groups_per_step` prompts, sample `group_size` completions of each, score every completion
with its suite's `reward(sample, text)` (the logic that scores the suite), and turn rewards into
group-relative advantages A_i = (r_i - mean(r)) / (std(r) + eps) (GRPO; without the std division when
`normalize_advantages` is off, as Dr. GRPO argues). Dynamic sampling (DAPO) drops groups whose rewards
are all equal -- all right or all wrong, they carry no gradient -- and draws more prompts, up to
`max_sampling_rounds` rounds, before the step goes ahead with what it has (a step with no informative
group is skipped, and logged as such). The backend then takes `updates_per_batch` gradient steps on the
clipped objective with clip-higher (ratio clipped to [1 - clip_low, 1 + clip_high]), aggregated over
tokens (DAPO) or per completion (GRPO), and no KL term unless `kl_coef > 0`.

The loop only talks to an `RlPolicy`; the local backend implements it with transformers + peft, the
Tinker backend with a SamplingClient and a TrainingClient.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from harness.reasoning import NO_REASONING, ReasoningSpec
from harness.suite import SuiteOptions, answer_rewards
from harness.types import GenerationSettings, Message
from training.backend import StepLog, learning_rate_at
from training.config import RlConfig, StageConfig
from training.prompts import RlPrompt, rollout_settings

ADVANTAGE_EPS = 1e-6


@dataclass(frozen=True)
class SampledCompletion:
    tokens: tuple[int, ...]  # sampled token ids (the stop token included when sampled)
    logprobs: tuple[float, ...]  # the sampler's log-probability of each sampled token
    text: str  # decoded, stop sequences removed
    finish_reason: str  # "stop" or "length"


@dataclass(frozen=True)
class RolloutDatum:
    """One completion ready for the policy-gradient update."""

    prompt_tokens: tuple[int, ...]
    completion_tokens: tuple[int, ...]
    sampler_logprobs: tuple[float, ...]
    advantage: float


@dataclass(frozen=True)
class Group:
    prompt: RlPrompt
    completions: tuple[SampledCompletion, ...]
    rewards: tuple[float, ...]


class RlPolicy(Protocol):
    """The three things GRPO needs from a backend."""

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]: ...

    async def sample(
        self, prompts: Sequence[Sequence[int]], settings: GenerationSettings
    ) -> list[list[SampledCompletion]]:
        """settings.n completions per prompt."""
        ...

    async def update(
        self, batch: Sequence[RolloutDatum], config: RlConfig, learning_rate: float
    ) -> Mapping[str, float]:
        """One optimizer step on the clipped DAPO/GRPO objective; returns at least `loss`."""
        ...


def group_advantages(rewards: Sequence[float], normalize: bool) -> list[float]:
    mean = sum(rewards) / len(rewards)
    centred = [r - mean for r in rewards]
    if not normalize:
        return centred
    std = math.sqrt(sum(c * c for c in centred) / len(centred))
    return [c / (std + ADVANTAGE_EPS) for c in centred]


def informative(rewards: Sequence[float]) -> bool:
    """A group teaches something only when its completions were not all scored alike."""
    return max(rewards) - min(rewards) > 1e-9


def rollout_data(
    groups: Sequence[Group], prompt_tokens: Mapping[str, Sequence[int]], normalize: bool
) -> list[RolloutDatum]:
    data = []
    for group in groups:
        tokens = tuple(prompt_tokens[group.prompt.sample.id])
        for completion, advantage in zip(
            group.completions, group_advantages(group.rewards, normalize), strict=True
        ):
            if completion.tokens:
                data.append(RolloutDatum(tokens, completion.tokens, completion.logprobs, advantage))
    return data


async def score_groups(
    prompts: Sequence[RlPrompt],
    samples: Sequence[Sequence[SampledCompletion]],
    reasoning: ReasoningSpec = NO_REASONING,
) -> list[Group]:
    """Each completion scored by its suite's reward() on its answer (harness.suite.answer_rewards), in
    worker threads (the code sandbox is slow)."""
    from suites import get_suite

    options = SuiteOptions(reasoning=reasoning)
    suites = {name: get_suite(name, options) for name in {p.suite for p in prompts}}

    async def score(prompt: RlPrompt, completions: Sequence[SampledCompletion]) -> Group:
        suite = suites[prompt.suite]
        rewarded = await asyncio.gather(
            *(asyncio.to_thread(answer_rewards, suite, prompt.sample, [c.text]) for c in completions)
        )
        return Group(prompt, tuple(completions), tuple(float(r[0]) for r in rewarded))

    return list(await asyncio.gather(*(score(p, s) for p, s in zip(prompts, samples, strict=True))))


@dataclass(frozen=True)
class RlSummary:
    steps: int  # optimizer steps taken (skipped steps excluded)
    completions: int  # completions sampled in all
    mean_reward_first: float | None
    mean_reward_last: float | None


async def run_grpo(
    policy: RlPolicy, prompts: Sequence[RlPrompt], config: StageConfig, log: StepLog
) -> RlSummary:
    rl = config.rl
    if not prompts:
        raise ValueError("RLVR needs at least one prompt")
    order = list(prompts)
    random.Random(config.seed).shuffle(order)
    cursor = 0
    tokens: dict[str, list[int]] = {}
    sampled = taken = 0
    rewards_by_step: list[float] = []

    def next_prompts(count: int) -> list[RlPrompt]:
        nonlocal cursor
        picked = [order[(cursor + i) % len(order)] for i in range(count)]
        cursor += count
        return picked

    from suites import get_suite

    for step in range(rl.steps):
        kept: list[Group] = []
        all_rewards: list[float] = []
        dropped = rounds = 0
        while len(kept) < rl.groups_per_step and rounds < rl.max_sampling_rounds:
            rounds += 1
            batch = next_prompts(rl.groups_per_step - len(kept))
            for prompt in batch:
                tokens.setdefault(prompt.sample.id, policy.prompt_tokens(prompt.messages))
            by_suite: dict[str, list[int]] = {}
            for index, prompt in enumerate(batch):
                by_suite.setdefault(prompt.suite, []).append(index)
            completions: list[list[SampledCompletion]] = [[] for _ in batch]
            for suite_name, indices in by_suite.items():
                settings = rollout_settings(
                    get_suite(suite_name), rl.max_new_tokens, rl.temperature, rl.top_p, rl.group_size,
                    config.seed + step * 1000 + rounds,
                )  # fmt: skip
                outputs = await policy.sample([tokens[batch[i].sample.id] for i in indices], settings)
                for i, output in zip(indices, outputs, strict=True):
                    completions[i] = output
            groups = await score_groups(batch, completions, ReasoningSpec(rl.reasoning))
            sampled += sum(len(g.completions) for g in groups)
            for group in groups:
                all_rewards.extend(group.rewards)
                keep = not rl.dynamic_sampling or informative(group.rewards)
                if keep:
                    kept.append(group)
                else:
                    dropped += 1
                for completion, reward in zip(group.completions, group.rewards, strict=True):
                    log.rollout(step + 1, prompt_id=group.prompt.sample.id, suite=group.prompt.suite, text=completion.text,
                                reward=reward, finish_reason=completion.finish_reason, kept=keep, round=rounds)  # fmt: skip
            if not rl.dynamic_sampling:
                break
        mean_reward = sum(all_rewards) / len(all_rewards)
        rewards_by_step.append(mean_reward)
        lr = learning_rate_at(step, rl.steps, config.optim.learning_rate, config.optim.lr_schedule,
                              config.optim.warmup_steps)  # fmt: skip
        data = rollout_data(kept, tokens, rl.normalize_advantages)
        if not data or all(d.advantage == 0 for d in data):
            log.step(
                step + 1,
                reward_mean=mean_reward,
                groups_kept=0,
                groups_dropped=dropped,
                skipped="no informative group",
            )
            continue
        stats: Mapping[str, float] = {}
        for _ in range(rl.updates_per_batch):
            stats = await policy.update(data, rl, lr)
        taken += 1
        log.step(
            step + 1, reward_mean=mean_reward, groups_kept=len(kept), groups_dropped=dropped,
            completions=len(data), learning_rate=lr, **dict(stats),
        )  # fmt: skip
    return RlSummary(
        steps=taken,
        completions=sampled,
        mean_reward_first=rewards_by_step[0] if rewards_by_step else None,
        mean_reward_last=rewards_by_step[-1] if rewards_by_step else None,
    )


def clipped_token_objective(ratio: float, advantage: float, clip_low: float, clip_high: float) -> float:
    """Per token: min(r A, clip(r, 1 - lo, 1 + hi) A), the quantity the update maximizes (reference
    implementation for tests and for backends that compute the loss themselves)."""
    clipped = min(max(ratio, 1.0 - clip_low), 1.0 + clip_high)
    return min(ratio * advantage, clipped * advantage)
