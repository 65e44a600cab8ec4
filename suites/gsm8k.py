"""GSM8K: grade-school math word problems (Cobbe et al., 2021).

Pinned settings: test split (1,319 problems); 8-shot chain of thought with the 8 exemplars of Wei et al.
(2022, table 20) given as a multi-turn chat (user: problem, assistant: worked answer ending "The answer
is N."); greedy; at most 512 new tokens; no stop sequences in chat form (the chat template ends the
turn). For text-completion endpoints the same exemplars become "Q: ...\\nA: ..." blocks, stopping at "Q:".

Metrics (per-sample 0/1, mean with stderr and Wilson 95% CI):
- exact_match_flex (primary): the last number in the response.
- exact_match_strict: the last "The answer is N" / "#### N" in the response; none found scores 0.
Numbers are compared after removing ",", "$", a trailing "." and trailing zeros of a decimal part
("18.00" == "18"). The target is the number after "#### " in the reference solution.

Regimes: harness (default: the settings above) and tulu (`--regime tulu`: OLMES's `gsm8k::tulu`, the
setting of the Tülu 3 / OLMo 2 instruct rows). OLMES's own source could not be read here; the tulu regime
follows third-party reimplementations that claim parity with it (an open-instruct-style `gsm8k_eval.py
--style tulu` citing allenai/olmes `oe_eval/configs/tasks.py` and `oe_eval/tasks/oe_eval_tasks/gsm8k.py`,
and an eSurge GSM8K script quoting `oe_eval/tasks/fewshot_sources.py` FEWSHOT_SOURCES["STD:GSM8k"]
"verbatim"). It differs from the harness regime in four places:
1. every user turn (exemplars and the question) is "Question: {q}\nAnswer:", not the bare question;
2. the assistant turn starts with "Answer:": a chat request cannot prefill the model's turn (the adapters
   send messages, not a rendered prompt), so each exemplar's assistant turn is "Answer: {worked answer}",
   and the model, continuing that pattern, opens its own turn the same way (OLMES's chat contexts carry an
   `assistant_prefix`; its gsm8k::tulu value could not be checked);
3. the exemplar answers (the same 8 of Wei et al.; STD:GSM8k) end "So the answer is N." (not "The answer
   is N.");
4. generation stops at "Question:", "</s>" and "<|im_end|>" (chat and text alike).
Text-completion endpoints get "Question: {q}\nAnswer: {a}" blocks separated by a blank line, ending with
"Question: {q}\nAnswer:". Unchanged: test split, 8 shots as a multi-turn chat, greedy, 512 new tokens.
Scoring is unchanged too: OLMES's gsm8k exact_match takes the last number of the response (commas, "$" and
a trailing "." removed), which is what exact_match_flex does (the primary metric under both regimes);
exact_match_strict still needs "the answer is N" / "#### N", which "So the answer is N." satisfies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from harness.data import DataSource, HubDataset, jsonl_or_hub, rows_hash
from harness.errors import DataError
from harness.suite import DEFAULT_REGIME, LoadedData, SuiteDefaults, mean_metrics, regime_pinned
from harness.types import (
    ApiKind,
    Completion,
    GenerationSettings,
    Message,
    Metric,
    Request,
    Sample,
    Score,
)

HUB = HubDataset("openai/gsm8k", "main", "test", "cc7b047b6e5bb11b4f1af84efc572db110a51b3c")
FLEX, STRICT = "exact_match_flex", "exact_match_strict"

# Wei et al. (2022), "Chain-of-Thought Prompting Elicits Reasoning in Large Language Models", table 20.
EXEMPLARS: tuple[tuple[str, str], ...] = (
    (
        "There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are "
        "done, there will be 21 trees. How many trees did the grove workers plant today?",
        "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must "
        "have been 21 - 15 = 6. The answer is 6.",
    ),
    (
        "If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
        "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.",
    ),
    (
        "Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in "
        "total?",
        "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After "
        "eating 35, they had 74 - 35 = 39. The answer is 39.",
    ),
    (
        "Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops "
        "did Jason give to Denny?",
        "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 "
        "= 8. The answer is 8.",
    ),
    (
        "Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he "
        "have now?",
        "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. "
        "5 + 4 = 9. The answer is 9.",
    ),
    (
        "There were nine computers in the server room. Five more computers were installed each day, from "
        "monday to thursday. How many computers are now in the server room?",
        "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 "
        "computers were added. 9 + 20 is 29. The answer is 29.",
    ),
    (
        "Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many "
        "golf balls did he have at the end of wednesday?",
        "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 "
        "more, he had 35 - 2 = 33 golf balls. The answer is 33.",
    ),
    (
        "Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
        "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 "
        "dollars left. 23 - 15 is 8. The answer is 8.",
    ),
)

TULU = "tulu"
# OLMES gsm8k::tulu: its stop sequences, and its exemplars (STD:GSM8k): Wei et al.'s with "So the answer is N."
TULU_STOP: tuple[str, ...] = ("Question:", "</s>", "<|im_end|>")
TULU_EXEMPLARS: tuple[tuple[str, str], ...] = tuple(
    (q, re.sub(r"The answer is (\S+)\.$", r"So the answer is \1.", a)) for q, a in EXEMPLARS
)


def tulu_query(question: str) -> str:
    """A user turn (or text block) under the tulu regime."""
    return f"Question: {question}\nAnswer:"


_NUMBER = r"-?\$?\d(?:[\d,]*\d)?(?:\.\d+)?"
_ANY_NUMBER = re.compile(_NUMBER)
_STRICT = re.compile(r"(?:the\s+(?:final\s+)?answer\s+is|####)\s*:?\s*\**\s*(" + _NUMBER + ")", re.IGNORECASE)


def normalize_number(text: str) -> str:
    """'$1,234.50' -> '1234.5'; '18.00' -> '18'; '-3.' -> '-3'."""
    cleaned = re.sub(r"[,$\s]", "", text).rstrip(".")
    if re.fullmatch(r"-?\d+\.\d+", cleaned):
        cleaned = cleaned.rstrip("0").rstrip(".")
    return "0" if cleaned == "-0" else cleaned


def extract_flex(response: str) -> str | None:
    matches = _ANY_NUMBER.findall(response)
    return normalize_number(matches[-1]) if matches else None


def extract_strict(response: str) -> str | None:
    matches = _STRICT.findall(response)
    return normalize_number(matches[-1]) if matches else None


def target_of(solution: str) -> str:
    if "####" not in solution:
        raise DataError("A GSM8K answer has no '#### N' line.", "Restore the upstream gsm8k/test.jsonl.")
    return normalize_number(solution.split("####")[-1].strip())


class GSM8K(SuiteDefaults):
    name = "gsm8k"
    version = "1.0"
    primary_metric = FLEX
    thinking_budget = 2048  # tokens of thinking when reasoning is on: grade-school arithmetic: a few hundred tokens of thought is typical
    headline_metrics: tuple[str, ...] = (FLEX, STRICT)
    description = __doc__ or ""
    regimes: tuple[str, ...] = (DEFAULT_REGIME, TULU)

    def default_settings(self) -> GenerationSettings:
        stop = TULU_STOP if self.regime == TULU else ()
        return GenerationSettings(max_tokens=512, temperature=0.0, stop=stop)

    def pinned_settings(self) -> Mapping[str, Any]:
        return {
            "split": "test",
            "num_fewshot": len(EXEMPLARS),
            "fewshot": "olmes-std-gsm8k" if self.regime == TULU else "wei2022-cot",
            "format": "multiturn",
            **self.reasoning.pinned(),
            **regime_pinned(self.regime),
        }

    def load(self, source: DataSource, limit: int | None) -> LoadedData:
        rows, origin = jsonl_or_hub(source, "gsm8k/test.jsonl", "GSM8K test", HUB)
        samples = []
        for index, row in enumerate(rows):
            if not isinstance(row.get("question"), str) or not isinstance(row.get("answer"), str):
                raise DataError(f"GSM8K row {index + 1} of {origin} lacks 'question'/'answer' strings.")
            samples.append(
                Sample(
                    id=f"gsm8k-test-{index:04d}",
                    messages=(Message("user", row["question"]),),
                    target=target_of(row["answer"]),
                    metadata={"solution": row["answer"]},
                )
            )
        chosen = samples if limit is None else samples[:limit]
        return LoadedData(tuple(chosen), len(samples), origin, rows_hash(rows, ("question", "answer")))

    def requests(self, sample: Sample, settings: GenerationSettings, api: ApiKind) -> list[Request]:
        if self.regime == TULU:
            return [self._tulu_request(sample, settings, api)]
        question = sample.prompt_text
        if api == "chat":
            turns: list[Message] = []
            for q, a in EXEMPLARS:
                turns += [Message("user", q), Message("assistant", a)]
            return [Request(sample.id, settings, messages=(*turns, Message("user", question)))]
        shots = "".join(f"Q: {q}\nA: {a}\n\n" for q, a in EXEMPLARS)
        text_settings = settings if settings.stop else replace(settings, stop=("Q:",))
        return [Request(sample.id, text_settings, prompt=f"{shots}Q: {question}\nA:")]

    def _tulu_request(self, sample: Sample, settings: GenerationSettings, api: ApiKind) -> Request:
        query = tulu_query(sample.prompt_text)
        if api == "chat":
            turns: list[Message] = []
            for q, a in TULU_EXEMPLARS:
                turns += [Message("user", tulu_query(q)), Message("assistant", f"Answer: {a}")]
            return Request(sample.id, settings, messages=(*turns, Message("user", query)))
        shots = "".join(f"{tulu_query(q)} {a}\n\n" for q, a in TULU_EXEMPLARS)
        return Request(sample.id, settings, prompt=f"{shots}{query}")

    def score(self, sample: Sample, completions: Sequence[Completion]) -> Score:
        response = completions[0].text
        flex, strict = extract_flex(response), extract_strict(response)
        return Score(
            values={FLEX: float(flex == sample.target), STRICT: float(strict == sample.target)},
            extracted={"flex": flex, "strict": strict},
        )

    def metrics(self, scores: Sequence[Score]) -> dict[str, Metric]:
        return mean_metrics(scores, (FLEX, STRICT))

    def reward(self, sample: Sample, text: str) -> float:
        return float(extract_flex(text) == sample.target)

    def gold_response(self, sample: Sample) -> str | None:
        return str(sample.metadata["solution"])
