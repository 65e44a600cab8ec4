"""Training configs, data loaders, RL prompts with suite rewards, and the GRPO/DAPO loop's bookkeeping."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import yaml

from harness.data import DataSource
from harness.errors import DataError, UsageError
from harness.types import GenerationSettings, Message
from training.backend import StepLog, learning_rate_at, steps_for
from training.config import RlConfig, StageConfig, parse_stage_config
from training.data import chat_examples, load_rows, preference_pairs
from training.prompts import RlPrompt, file_prompts, suite_prompts, write_pool
from training.rl import (
    RolloutDatum,
    SampledCompletion,
    clipped_token_objective,
    group_advantages,
    informative,
    run_grpo,
)
from training.schema import example_yaml

# ------------------------------------------------------------------------------------------ configs


def test_example_config_parses_back_to_the_defaults() -> None:
    assert parse_stage_config(yaml.safe_load(example_yaml(StageConfig)), "example") == StageConfig()


@pytest.mark.parametrize(
    ("mapping", "needle"),
    [
        ({"optim": {"lr": 1e-4}}, "unknown key 'optim.lr'. Known keys under optim: learning_rate"),
        ({"optim": {"batch_size": "8"}}, "'optim.batch_size' must be a whole number"),
        ({"rl": {"group_size": 1}}, "rl.group_size must be at least 2"),
        ({"rl": {"loss_aggregation": "mean"}}, "must be one of 'token' | 'sequence'"),
        ({"data": {"path": "a.jsonl", "hub": "x/y"}}, "give one of path, hub or prompts"),
        ({"eval": {"suites": "gsm8k"}}, "'eval.suites' must be a list"),
        ({"bogus": 1}, "unknown key 'bogus'"),
    ],
)
def test_bad_configs_name_the_key(mapping: dict[str, object], needle: str) -> None:
    with pytest.raises(UsageError) as error:
        parse_stage_config(mapping, "stage.yaml")
    assert needle in error.value.message and "stage.yaml" in error.value.message


def test_schedule_and_step_counts() -> None:
    assert steps_for(100, 8, 1, None) == 13 and steps_for(100, 8, 2, 5) == 5 and steps_for(3, 8, 1, None) == 1
    assert [learning_rate_at(s, 4, 1.0, "linear", 0) for s in range(4)] == [1.0, 0.75, 0.5, 0.25]
    assert [learning_rate_at(s, 4, 1.0, "constant", 2) for s in range(4)] == [0.5, 1.0, 1.0, 1.0]


# --------------------------------------------------------------------------------------------- data


def test_olmo_sft_and_preference_samples_load(data_dir: Path) -> None:
    from training.config import DataConfig

    sft = load_rows(DataConfig(path=str(data_dir / "olmo_samples" / "open-instruct_sft_sample.jsonl")))
    examples = chat_examples(sft)
    assert len(examples) == 100 and examples[0].id == "oasst1_5921"
    assert all(any(m.role == "assistant" for m in e.messages) for e in examples)
    prefs = load_rows(
        DataConfig(path=str(data_dir / "olmo_samples" / "open-instruct_preference_sample.jsonl"), limit=10)
    )
    pairs = preference_pairs(prefs)
    assert len(pairs) == 10 and all(p.chosen != p.rejected and p.prompt[-1].role == "user" for p in pairs)
    assert len(prefs.sha256()) == 64 and prefs.sha256() != sft.sha256()


def test_malformed_training_rows_name_file_and_line(tmp_path: Path) -> None:
    from training.config import DataConfig

    path = tmp_path / "sft.jsonl"
    path.write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n{oops\n'
    )
    with pytest.raises(DataError, match=r"sft\.jsonl line 2 is not valid JSON"):
        load_rows(DataConfig(path=str(path)))
    path.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(DataError, match="no assistant turn"):
        chat_examples(load_rows(DataConfig(path=str(path))))
    path.write_text(json.dumps({"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
                                "rejected": [{"role": "user", "content": "OTHER"}, {"role": "assistant", "content": "c"}]}) + "\n")  # fmt: skip
    with pytest.raises(DataError, match="must share every turn before the last"):
        preference_pairs(load_rows(DataConfig(path=str(path))))


# ---------------------------------------------------------------------------------------- RL prompts


def test_gsm8k_train_prompts_use_the_suite_prompt_and_reward(data_dir: Path) -> None:
    from suites import get_suite

    prompts = suite_prompts("gsm8k:train", DataSource(data_dir), 5)
    suite = get_suite("gsm8k")
    assert [p.sample.id for p in prompts] == [f"gsm8k-train-{i:04d}" for i in range(5)]
    # the same 8-shot chat the suite sends at evaluation, ending with the training question
    assert len(prompts[0].messages) == 17 and prompts[0].messages[-1] == prompts[0].sample.messages[0]
    gold = [suite.reward(p.sample, str(p.sample.metadata["solution"])) for p in prompts]
    assert gold == [1.0] * 5
    assert suite.reward(prompts[0].sample, "The answer is 123456789.") == 0.0


def test_alice_sources(data_dir: Path) -> None:
    from suites import get_suite

    with pytest.raises(UsageError, match="seed of the alice-synth evaluation set"):
        suite_prompts("alice-synth:20260402", DataSource(data_dir), 3)
    synth = suite_prompts("alice-synth:7", DataSource(data_dir), 12)
    eval_prompts = {s.prompt_text for s in get_suite("alice-synth").load(DataSource(data_dir), None).samples}
    assert len(synth) == 12 and not {p.sample.prompt_text for p in synth} & eval_prompts
    train = suite_prompts("alice:train", DataSource(data_dir), None)
    held_out = {s.id for s in get_suite("alice").load(DataSource(data_dir), None).samples}
    assert len(train) == 9500 - 1200 and not {p.sample.id for p in train} & held_out
    alice = get_suite("alice")
    assert alice.reward(train[0].sample, alice.gold_response(train[0].sample) or "") == 1.0
    with pytest.raises(UsageError, match="Known sources: gsm8k:train"):
        suite_prompts("gsm8k:test", DataSource(data_dir), 1)


def test_open_instruct_rlvr_rows_and_pool_round_trip(data_dir: Path, tmp_path: Path) -> None:
    path = data_dir / "olmo_samples" / "open-instruct_rlvr_sample.jsonl"
    with pytest.raises(DataError, match="no suite verifies the ground truth of some rows \\(MATH: 52\\)"):
        file_prompts(path)
    prompts = file_prompts(path, ["gsm8k"])
    assert len(prompts) == 48 and {p.suite for p in prompts} == {"gsm8k"}
    from suites import get_suite

    first = prompts[0]
    assert get_suite("gsm8k").reward(first.sample, f"so the answer is {first.sample.target}.") == 1.0
    pool = tmp_path / "pool.jsonl"
    assert write_pool(pool, [(p, {"pass_rate": 0.5}) for p in prompts[:3]]) == 3
    again = file_prompts(pool)
    assert again == prompts[:3]


# ------------------------------------------------------------------------------------------ GRPO core


def test_group_advantages_and_clipping() -> None:
    adv = group_advantages([1.0, 0.0, 0.0, 1.0], normalize=True)
    assert [round(a, 4) for a in adv] == [1.0, -1.0, -1.0, 1.0]
    assert group_advantages([1.0, 0.0, 0.0, 0.0], normalize=False) == [0.75, -0.25, -0.25, -0.25]
    assert not informative([1.0, 1.0, 1.0]) and not informative([0.0, 0.0]) and informative([0.0, 1.0])
    # clip-higher: a positive advantage may grow the ratio to 1.28, a negative one shrink it to 0.8
    assert clipped_token_objective(1.5, 1.0, 0.2, 0.28) == pytest.approx(1.28)
    assert clipped_token_objective(0.5, -1.0, 0.2, 0.28) == pytest.approx(-0.8)
    assert clipped_token_objective(0.5, 1.0, 0.2, 0.28) == pytest.approx(
        0.5
    )  # min() keeps the pessimistic side


class ScriptedPolicy:
    """A test double for the loop (not a model): answers each prompt from a script, records updates."""

    def __init__(self, answers: Mapping[str, Sequence[str]]) -> None:
        self.answers = answers
        self.by_tokens: dict[tuple[int, ...], str] = {}
        self.updates: list[list[RolloutDatum]] = []

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        tokens = [len(self.by_tokens), 7]
        self.by_tokens[tuple(tokens)] = messages[-1].content
        return tokens

    async def sample(
        self, prompts: Sequence[Sequence[int]], settings: GenerationSettings
    ) -> list[list[SampledCompletion]]:
        out = []
        for prompt in prompts:
            texts = self.answers[self.by_tokens[tuple(prompt)]]
            assert len(texts) == settings.n
            out.append([SampledCompletion((1, 2), (-0.5, -0.5), t, "stop") for t in texts])
        return out

    async def update(
        self, batch: Sequence[RolloutDatum], config: RlConfig, learning_rate: float
    ) -> Mapping[str, float]:
        self.updates.append(list(batch))
        return {"loss": 0.0}


def test_grpo_rewards_come_from_the_suite_and_dynamic_sampling_drops_flat_groups(
    data_dir: Path, tmp_path: Path
) -> None:
    prompts = suite_prompts("gsm8k:train", DataSource(data_dir), 4)
    gold = {p.sample.prompt_text: p.sample.target for p in prompts}
    # prompt 0: mixed (2 right of 4); 1: all right; 2: all wrong; 3: mixed (1 of 4)
    plan = [(2, 4), (4, 4), (0, 4), (1, 4)]
    answers = {
        text: [f"The answer is {gold[text] if i < right else '999999'}." for i in range(n)]
        for (text, (right, n)) in zip(gold, plan, strict=True)
    }
    policy = ScriptedPolicy(answers)
    config = parse_stage_config(
        {"seed": 0, "rl": {"steps": 1, "groups_per_step": 4, "group_size": 4, "max_sampling_rounds": 1}}, "t"
    )
    log = StepLog(tmp_path / "log.jsonl", quiet=True)
    summary = asyncio.run(run_grpo(policy, prompts, config, log))
    (record,) = log.records
    assert record["groups_kept"] == 2 and record["groups_dropped"] == 2
    assert record["reward_mean"] == pytest.approx((2 + 4 + 0 + 1) / 16)
    (batch,) = policy.updates
    assert len(batch) == 8  # two informative groups of four completions
    positives = sorted(round(d.advantage, 3) for d in batch if d.advantage > 0)
    assert positives == [1.0, 1.0, round(3 / math.sqrt(3), 3)]  # (1 - 1/4) / std of [1, 0, 0, 0]
    assert summary.steps == 1 and summary.completions == 16

    # without dynamic sampling every group goes into the batch (flat groups with zero advantage)
    policy = ScriptedPolicy(answers)
    config = parse_stage_config(
        {"rl": {"steps": 1, "groups_per_step": 4, "group_size": 4, "dynamic_sampling": False}}, "t"
    )
    asyncio.run(run_grpo(policy, prompts, config, StepLog(tmp_path / "log2.jsonl", quiet=True)))
    assert len(policy.updates[0]) == 16 and sum(d.advantage == 0 for d in policy.updates[0]) == 8


def test_grpo_skips_a_step_without_signal(data_dir: Path, tmp_path: Path) -> None:
    prompts = suite_prompts("gsm8k:train", DataSource(data_dir), 2)
    answers = {p.sample.prompt_text: ["no idea"] * 2 for p in prompts}
    policy = ScriptedPolicy(answers)
    config = parse_stage_config(
        {"rl": {"steps": 2, "groups_per_step": 2, "group_size": 2, "max_sampling_rounds": 2}}, "t"
    )
    log = StepLog(tmp_path / "log.jsonl", quiet=True)
    summary = asyncio.run(run_grpo(policy, prompts, config, log))
    assert summary.steps == 0 and not policy.updates
    assert [r["skipped"] for r in log.records] == ["no informative group"] * 2
    assert [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()] == [1, 2]


def test_rl_prompt_records_are_json(data_dir: Path) -> None:
    (prompt,) = suite_prompts("alice-synth:3", DataSource(data_dir), 1)
    record = json.loads(json.dumps(prompt.to_record(pass_rate=0.25)))
    assert RlPrompt.from_record(record) == prompt and record["pass_rate"] == 0.25
