"""RL prompts with verifiable rewards: a suite's training data, scored by that suite's own `reward()`.

The same builder serves evaluation and RL: a prompt is the suite's `Sample` plus the exact messages the
suite's `requests()` would send, and the reward of a completion is `suite.reward(sample, text)`, the very
logic that scores the suite. Sources (config `data.prompts`, or `data.path`):

- `gsm8k:train` (7,473 problems; the suite's 8-shot chat prompt), `mbpp:train` (tasks 601-974, 3-shot),
  `alice:train` (Kaggle rows outside the suite's 1,200-row eval split), `alice-synth:SEED` (puzzles
  drawn fresh from the generators; the eval set's seed is refused);
- a JSONL file of open-instruct RLVR rows (`messages`, `ground_truth`, `dataset`; rows whose `dataset`
  is `gsm8k` are scored by the gsm8k suite, prompted exactly as given), or a pool written by
  `harness curate` (one serialized prompt per line).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data import DataSource, HubDataset, jsonl_or_hub
from harness.errors import DataError, UsageError
from harness.suite import Suite
from harness.types import GenerationSettings, Message, Sample
from training.data import read_rows

POOL_FORMAT = "harness-rl-prompts/1"
# open-instruct RLVR `dataset` values whose ground truth one of our suites verifies.
OPEN_INSTRUCT_VERIFIERS = {"gsm8k": "gsm8k"}
SOURCES = ("gsm8k:train", "mbpp:train", "alice:train", "alice-synth:SEED")


@dataclass(frozen=True)
class RlPrompt:
    suite: str  # whose reward() scores the completions
    sample: Sample  # what reward() compares against
    messages: tuple[Message, ...]  # what the policy is prompted with

    def to_record(self, **extra: Any) -> dict[str, Any]:
        return {
            "format": POOL_FORMAT,
            "suite": self.suite,
            "id": self.sample.id,
            "messages": [[m.role, m.content] for m in self.sample.messages],
            "target": self.sample.target,
            "metadata": dict(self.sample.metadata),
            "prompt": [[m.role, m.content] for m in self.messages],
            **extra,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RlPrompt:
        def turns(value: Any) -> tuple[Message, ...]:
            return tuple(Message(role, content) for role, content in value)

        sample = Sample(
            id=str(record["id"]),
            messages=turns(record["messages"]),
            target=str(record["target"]),
            metadata=dict(record.get("metadata") or {}),
        )
        return cls(str(record["suite"]), sample, turns(record["prompt"]))


def suite_prompt(suite: Suite, sample: Sample) -> RlPrompt:
    """The messages the suite itself sends for this sample (few-shot turns included)."""
    (request,) = suite.requests(sample, suite.default_settings(), "chat")[:1]
    assert request.messages is not None
    return RlPrompt(suite.name, sample, request.messages)


def _gsm8k_train(source: DataSource) -> list[Sample]:
    from suites.gsm8k import HUB, target_of

    hub = HubDataset(HUB.repo, HUB.config, "train", HUB.revision)
    rows, _ = jsonl_or_hub(source, "gsm8k/train.jsonl", "GSM8K train", hub)
    return [
        Sample(f"gsm8k-train-{i:04d}", (Message("user", r["question"]),), target_of(r["answer"]),
               {"solution": r["answer"], "split": "train"})
        for i, r in enumerate(rows)
    ]  # fmt: skip


def _mbpp_train(source: DataSource) -> tuple[Suite, list[Sample]]:
    from suites.mbpp import MBPP

    class MBPPTrain(MBPP):
        task_ids = range(601, 975)  # the MBPP paper's train split

    return MBPPTrain(), list(MBPPTrain().load(source, None).samples)


def _alice_train(source: DataSource) -> list[Sample]:
    from suites.alice import PER_CATEGORY, categorize, read_train_csv, train_csv_path, validation_rows

    path = train_csv_path(source)
    rows = read_train_csv(path)
    categories = categorize(rows, str(path))
    held_out = set(validation_rows(rows, categories, PER_CATEGORY))
    return [
        Sample(f"alice-{r['id']}", (Message("user", r["prompt"]),), r["answer"],
               {"category": categories[i], "kaggle_id": r["id"], "split": "train"})
        for i, r in enumerate(rows) if i not in held_out
    ]  # fmt: skip


def _alice_synth(seed_text: str, count: int) -> list[Sample]:
    from suites.alice_generators import generate_set
    from suites.alice_synth import SYNTH_DIFFICULTY, SYNTH_SEED, puzzle_sample

    try:
        seed = int(seed_text)
    except ValueError:
        raise UsageError(f"alice-synth:SEED needs a whole-number seed, not '{seed_text}'.") from None
    if seed == SYNTH_SEED:
        raise UsageError(
            f"alice-synth:{seed} is the seed of the alice-synth evaluation set; training on it is contamination.",
            "Pick any other seed.",
        )
    puzzles = generate_set(count, seed, SYNTH_DIFFICULTY)
    samples = [puzzle_sample(i, p) for i, p in enumerate(puzzles)]
    return [Sample(f"alice-synth-s{seed}-{i:05d}", s.messages, s.target, {**s.metadata, "split": f"seed-{seed}"})
            for i, s in enumerate(samples)]  # fmt: skip


def suite_prompts(spec: str, source: DataSource, limit: int | None) -> list[RlPrompt]:
    """`gsm8k:train`, `mbpp:train`, `alice:train`, `alice-synth:SEED`."""
    from suites import get_suite

    name, _, split = spec.partition(":")
    if name == "gsm8k" and split == "train":
        suite, samples = get_suite("gsm8k"), _gsm8k_train(source)
    elif name == "mbpp" and split == "train":
        suite, samples = _mbpp_train(source)
    elif name == "alice" and split == "train":
        suite, samples = get_suite("alice"), _alice_train(source)
    elif name == "alice-synth" and split:
        suite, samples = get_suite("alice-synth"), _alice_synth(split, limit or 1000)
    else:
        raise UsageError(f"Unknown RL prompt source '{spec}'.", f"Known sources: {', '.join(SOURCES)}.")
    if limit is not None:
        samples = samples[:limit]
    return [suite_prompt(suite, s) for s in samples]


def file_prompts(path: Path, datasets: Sequence[str] | None = None) -> list[RlPrompt]:
    """A `harness curate` pool, or open-instruct RLVR rows (`messages`, `ground_truth`, `dataset`)."""
    from suites.gsm8k import normalize_number

    prompts: list[RlPrompt] = []
    unverifiable: dict[str, int] = {}
    for number, row in enumerate(read_rows(path), start=1):
        if row.get("format") == POOL_FORMAT:
            try:
                prompts.append(RlPrompt.from_record(row))
            except (KeyError, TypeError, ValueError) as error:
                raise DataError(f"{path} line {number}: a malformed prompt record ({error}).") from None
            continue
        dataset = str(row.get("dataset", ""))
        if datasets is not None and dataset not in datasets:
            continue
        if "ground_truth" not in row or "messages" not in row:
            raise DataError(
                f"{path} line {number} is neither a `harness curate` record nor an RLVR row "
                "(`messages`, `ground_truth`, `dataset`)."
            )
        suite = OPEN_INSTRUCT_VERIFIERS.get(dataset)
        if suite is None:
            unverifiable[dataset] = unverifiable.get(dataset, 0) + 1
            continue
        messages = tuple(Message(m["role"], m["content"]) for m in row["messages"])
        truth = row["ground_truth"]
        target = normalize_number(str(truth[0] if isinstance(truth, list) else truth))
        sample = Sample(f"{dataset}-{number:06d}", messages, target, {"source": str(path), "line": number})
        prompts.append(RlPrompt(suite, sample, messages))
    if unverifiable:
        counts = ", ".join(f"{k or '(none)'}: {v}" for k, v in sorted(unverifiable.items()))
        raise DataError(
            f"{path}: no suite verifies the ground truth of some rows ({counts}).",
            f"Keep only verifiable rows with data.datasets: [{', '.join(OPEN_INSTRUCT_VERIFIERS)}].",
        )
    if not prompts:
        raise DataError(f"{path} holds no RL prompts.")
    return prompts


def write_pool(path: Path, prompts: Iterable[tuple[RlPrompt, Mapping[str, Any]]]) -> int:
    """One prompt record per line, with extra fields (pass rate, k) after it; returns the count."""
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for prompt, extra in prompts:
            handle.write(json.dumps(prompt.to_record(**extra), ensure_ascii=False, sort_keys=True) + "\n")
            count += 1
    return count


def rollout_settings(suite: Suite, max_new_tokens: int | None, temperature: float, top_p: float,
                     n: int, seed: int) -> GenerationSettings:  # fmt: skip
    pinned = suite.default_settings()
    return GenerationSettings(
        max_tokens=max_new_tokens or pinned.max_tokens, temperature=temperature, top_p=top_p,
        stop=pinned.stop, n=n, seed=seed,
    )  # fmt: skip
