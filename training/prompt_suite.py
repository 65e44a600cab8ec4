"""A `Suite` over RL prompts, so the normal runner samples them: resumable, cached, concurrent.

`harness curate` samples k completions of every prompt through it, and validation runs sample the same
prompts greedily: any n, any temperature. Each prompt (`training.prompts.RlPrompt`) is sent with its exact
messages, and every completion text is scored by the reward of the suite the prompt belongs to (the logic
that scores that suite; MBPP runs all n programs of a sample in one sandbox batch through `execute()`).

Per sample: `pass_rate` = the mean reward of its n completions (the fraction that passed, for the 0/1
rewards of every current suite) and `pass@k` for k in 1, 2, 5, 10, 20, 50, 100 up to n, by the unbiased
estimator of Chen et al. (2021) over the completions whose reward is 1 (pass@1 equals pass_rate for 0/1
rewards). Metrics: the mean of each over the prompts, with stderr and a 95% interval. Primary: pass_rate.

Text-completion endpoints (`api=text`) get the owning suite's own text prompt, when the prompt's messages
are exactly what that suite sends in chat form (prompts built by `suite_prompts`); prompts with messages of
their own (open-instruct rows) have no text form and are refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from math import comb
from typing import Any

from harness.data import DataSource
from harness.errors import DataError, UsageError
from harness.suite import LoadedData, Suite, SuiteDefaults, answer_rewards, mean_metrics
from harness.types import ApiKind, Completion, GenerationSettings, Metric, Request, Sample, Score
from training.prompts import RlPrompt

PASS_RATE = "pass_rate"
KS = (1, 2, 5, 10, 20, 50, 100)


def prompts_sha256(prompts: Sequence[RlPrompt]) -> str:
    """One digest over the serialized prompts, in order (what a run of them is keyed on)."""
    digest = hashlib.sha256()
    for prompt in prompts:
        digest.update(json.dumps(prompt.to_record(), sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k) (as in suites.mbpp)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (got n={n}, c={c}, k={k})")
    return 1.0 if n - c < k else 1.0 - comb(n - c, k) / comb(n, k)


def completion_rewards(suite: Suite, sample: Sample, texts: Sequence[str]) -> list[float]:
    """The suite's reward of every text (answers only when the suite parses reasoning); a suite with a
    batch `execute()` (MBPP) runs them together."""
    return answer_rewards(suite, sample, texts)


class PromptSuite(SuiteDefaults):
    """`PromptSuite(name, prompts, source, sha256)`: the prompts' samples, scored by their suites' rewards.

    `suites` maps a prompt's suite name to the suite object that scores it (default: the registry's);
    `version` goes into the run folder name, so change it when the scoring changes.
    """

    version = "1"
    primary_metric = PASS_RATE
    headline_metrics: tuple[str, ...] = (PASS_RATE,)

    def __init__(
        self,
        name: str,
        prompts: Sequence[RlPrompt],
        source: str,
        sha256: str,
        suites: Mapping[str, Suite] | None = None,
    ) -> None:
        if not prompts:
            raise DataError(f"The prompt set {source} holds no prompts.")
        self.name = name
        self.description = __doc__ or ""
        self.source = source
        self.sha256 = sha256
        self.prompts = tuple(prompts)
        self._by_id: dict[str, RlPrompt] = {}
        for prompt in self.prompts:
            if prompt.sample.id in self._by_id:
                raise DataError(
                    f"The prompt set {source} holds sample id '{prompt.sample.id}' twice.",
                    "Give every prompt its own id (a run is resumed by sample id).",
                )
            self._by_id[prompt.sample.id] = prompt
        known = dict(suites or {})
        if missing := sorted({p.suite for p in self.prompts} - set(known)):
            from suites import get_suite

            known.update({name: get_suite(name) for name in missing})
        self.suites: dict[str, Suite] = known

    # -- what the runner and the manifest see -------------------------------------------------

    def default_settings(self) -> GenerationSettings:
        """Greedy, one sample, the longest pinned max_tokens of the suites involved (stop sequences only
        when they all agree: a chat request ends with the turn)."""
        pinned = [self.suites[name].default_settings() for name in sorted({p.suite for p in self.prompts})]
        stops = {s.stop for s in pinned}
        return GenerationSettings(
            max_tokens=max(s.max_tokens for s in pinned), temperature=0.0,
            stop=stops.pop() if len(stops) == 1 else (),
        )  # fmt: skip

    def pinned_settings(self) -> Mapping[str, Any]:
        return {
            "source": self.source,
            "prompts_sha256": self.sha256,
            "n_prompts": len(self.prompts),
            "suites": {name: suite.version for name, suite in sorted(self.suites.items())},
            "scoring": "reward() of the prompt's suite per completion; pass_rate = mean; pass@k unbiased",
        }

    def load(self, source: DataSource, limit: int | None) -> LoadedData:
        """The prompts given at construction (the data source was used to build them)."""
        samples = tuple(p.sample for p in self.prompts)
        chosen = samples if limit is None else samples[:limit]
        return LoadedData(chosen, len(samples), self.source, self.sha256)

    def prompt(self, sample_id: str) -> RlPrompt:
        try:
            return self._by_id[sample_id]
        except KeyError:
            raise DataError(f"Sample '{sample_id}' is not one of the prompts of {self.source}.") from None

    def requests(self, sample: Sample, settings: GenerationSettings, api: ApiKind) -> list[Request]:
        prompt = self.prompt(sample.id)
        if api == "chat":
            return [Request(sample.id, settings, messages=prompt.messages)]
        suite = self.suites[prompt.suite]
        chat = suite.requests(prompt.sample, settings, "chat")
        if len(chat) != 1 or chat[0].messages != prompt.messages:
            raise UsageError(
                f"Prompt {sample.id} brings chat messages of its own ({self.source}), so it has no "
                "text-completion form for this text-only endpoint.",
                "Use a chat endpoint (drop '&api=text' from the reference), or prompts built from a suite "
                "(--prompts gsm8k:train, mbpp:train, alice:train, alice-synth:SEED).",
            )
        return suite.requests(prompt.sample, settings, "text")

    def score(self, sample: Sample, completions: Sequence[Completion]) -> Score:
        prompt = self.prompt(sample.id)
        texts = [t for c in completions for t in c.texts]
        if not texts:
            raise ValueError(f"no responses to score for {sample.id}")
        rewards = completion_rewards(self.suites[prompt.suite], prompt.sample, texts)
        n, passed = len(rewards), sum(r >= 1.0 for r in rewards)
        values = {PASS_RATE: sum(rewards) / n}
        values.update({f"pass@{k}": pass_at_k(n, passed, k) if k > 1 else passed / n for k in KS if k <= n})
        return Score(
            values=values,
            extracted={
                "passed": f"{passed}/{n}",
                "rewards": ",".join(f"{r:g}" for r in rewards),
                "suite": prompt.suite,
            },
        )

    def metrics(self, scores: Sequence[Score]) -> dict[str, Metric]:
        if not scores:
            return {}
        common = set.intersection(*(set(s.values) for s in scores))
        names = [PASS_RATE, *(f"pass@{k}" for k in KS if f"pass@{k}" in common)]
        result, computed = {}, {}  # pass@1 equals pass_rate for 0/1 rewards: bootstrap it once
        for name in names:
            values = tuple(s.values[name] for s in scores)
            if values not in computed:
                computed[values] = mean_metrics(scores, [name])[name]
            result[name] = replace(computed[values], name=name)
        return result

    def reward(self, sample: Sample, text: str) -> float:
        prompt = self.prompt(sample.id)
        return answer_rewards(self.suites[prompt.suite], prompt.sample, [text])[0]

    def gold_response(self, sample: Sample) -> str | None:
        prompt = self.prompt(sample.id)
        try:
            return self.suites[prompt.suite].gold_response(prompt.sample)
        except KeyError:  # rows from a file carry a target but not the suite's reference solution
            return None
