"""Verbalized confidence (`--ask-confidence`): the stated number read back, the line cut off before scoring
(GSM8K's last number is the answer, not the confidence), the instruction in the prompt and the settings hash,
and the suites and prompt forms that are refused."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import harness
from harness.confidence import CONFIDENCE_INSTRUCTION, parse_verbalized, strip_verbalized
from harness.data import DataSource
from harness.errors import UsageError
from harness.runs.store import SAMPLES, SamplesFile
from harness.suite import SuiteOptions, score_sample
from harness.types import Completion, GenerationSettings
from suites import get_suite
from tests.conftest import DATA_DIR

ASK = SuiteOptions(confidence="verbalized")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 18.\nConfidence: 90%", 0.9),
        ("The answer is 18.\nconfidence: 85 %", 0.85),
        ("The answer is 18.\n**Confidence:** **70%**", 0.7),
        ("The answer is 18.\nConfidence: 0.35", 0.35),
        ("The answer is 18.\nConfidence: 1", 0.01),  # a bare whole number is a percentage
        ("The answer is 18.\nConfidence: 100%", 1.0),
        ("Confidence: 20%\nThe answer is 18.\nConfidence: 60%", 0.6),  # the last line counts
        ("The answer is 18.\nConfidence: 250%", None),  # impossible
        ("The answer is 18. I am confident.", None),
        ("My confidence: high", None),
    ],
)
def test_parse_verbalized(text: str, expected: float | None) -> None:
    assert parse_verbalized(text) == expected


def test_strip_cuts_the_line_and_what_follows() -> None:
    assert strip_verbalized("The answer is 18.\n\nConfidence: 90%\n") == "The answer is 18."
    assert strip_verbalized("No line here: 42") == "No line here: 42"
    long = "x" * 50_000 + "\nThe answer is 7.\nConfidence: 40%"
    assert strip_verbalized(long).endswith("The answer is 7.")


def test_gsm8k_scores_the_answer_not_the_stated_confidence() -> None:
    suite = get_suite("gsm8k", ASK)
    sample = suite.load(DataSource(DATA_DIR), 1).samples[0]  # Janet's ducks: 18
    response = Completion(("She makes 9 * 2 = $18 a day.\nThe answer is 18.\nConfidence: 90%",), ("stop",))
    asked = asyncio.run(score_sample(suite, sample, [response]))
    plain = asyncio.run(score_sample(get_suite("gsm8k"), sample, [response]))
    assert asked.values["exact_match_flex"] == 1.0
    assert plain.values["exact_match_flex"] == 0.0  # without the cut, flex takes the last number: 90
    assert suite.rewards(sample, [response.text]) == [1.0]


def test_the_instruction_is_in_the_prompt_and_the_pinned_settings() -> None:
    suite, plain = get_suite("gsm8k", ASK), get_suite("gsm8k")
    sample = suite.load(DataSource(DATA_DIR), 1).samples[0]
    settings = GenerationSettings(max_tokens=64)
    (asked,) = suite.requests(sample, settings, "chat")
    (unasked,) = plain.requests(sample, settings, "chat")
    assert asked.messages is not None and unasked.messages is not None
    assert asked.messages[-1].content == f"{unasked.messages[-1].content}\n\n{CONFIDENCE_INSTRUCTION}"
    assert asked.messages[:-1] == unasked.messages[:-1]  # the few-shot turns are untouched
    assert suite.pinned_settings()["confidence"] == "verbalized"
    assert "confidence" not in plain.pinned_settings()
    assert SuiteOptions.of_run(suite.pinned_settings()).confidence == "verbalized"
    assert SuiteOptions.of_run(plain.pinned_settings()).confidence is None


def test_refused_where_it_has_no_meaning() -> None:
    with pytest.raises(UsageError, match="ifeval suite does not ask"):
        get_suite("ifeval", ASK)
    with pytest.raises(UsageError, match="Unknown confidence elicitation 'numeric'"):
        get_suite("gsm8k", SuiteOptions(confidence="numeric"))
    suite = get_suite("gsm8k", ASK)
    sample = suite.load(DataSource(DATA_DIR), 1).samples[0]
    with pytest.raises(UsageError, match="needs a chat model"):
        suite.requests(sample, GenerationSettings(max_tokens=8), "text")


def test_a_run_asking_for_confidence_is_its_own_run(tmp_path: Path) -> None:
    replay = tmp_path / "replay.jsonl"
    rows = [
        ("gsm8k-test-0000", "9 * 2 = 18.\nThe answer is 18.\nConfidence: 80%"),
        ("gsm8k-test-0001", "The answer is 3.\nConfidence: 95%"),
        ("gsm8k-test-0002", "The answer is 5.\nConfidence: 30%"),  # wrong (70000)
    ]
    replay.write_text("".join(json.dumps({"sample_id": i, "text": t}) + "\n" for i, t in rows))
    kwargs = {"limit": 3, "runs": tmp_path / "runs", "data_dir": DATA_DIR, "progress": False}
    asked = harness.evaluate(f"replay:{replay}", ["gsm8k"], scoring=ASK, **kwargs)["gsm8k"]  # type: ignore[arg-type]
    plain = harness.evaluate(f"replay:{replay}", ["gsm8k"], **kwargs)["gsm8k"]  # type: ignore[arg-type]
    assert asked.run_dir != plain.run_dir
    assert asked.metrics["exact_match_flex"].value == pytest.approx(2 / 3)
    assert plain.metrics["exact_match_flex"].value == 0.0  # every last number is a confidence
    manifest = json.loads((asked.run_dir / "manifest.json").read_text())
    assert manifest["suite_settings"]["confidence"] == "verbalized"
    stored = [r.completions[0].text for r in SamplesFile(asked.run_dir / SAMPLES).load().records]
    assert stored == [t for _, t in rows]  # the raw response is kept, with its confidence line
