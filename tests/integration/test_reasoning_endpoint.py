"""Reasoning over an OpenAI-compatible endpoint: a real HTTP server on loopback (tests/support/stub_openai.py,
a STUB, not a model) answers GSM8K with the thinking in `reasoning_content` / `reasoning` beside `content`, as
vLLM with --reasoning-parser, llama.cpp's server with --reasoning-format deepseek and NIM do.

llama-cpp-python's server (0.3.x, the one `harness serve` starts) has no reasoning-format option: its
settings know `chat_template_kwargs` only at model load time and its chat request model drops unknown
fields, so a real reasoning split cannot be had from it here; the stub stands in for such a server.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness import evaluate
from harness.api.evaluate import Generation
from harness.reasoning import ReasoningSpec
from harness.suite import SuiteOptions
from tests.conftest import read_samples
from tests.support.stub_openai import StubOpenAIServer


def first_problems(data_dir: Path, count: int) -> list[tuple[str, str]]:
    """(question, final answer) of the first `count` GSM8K test problems."""
    lines = (data_dir / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines()[:count]
    rows = [json.loads(line) for line in lines]
    return [(row["question"], row["answer"].rsplit("####", 1)[1].strip().replace(",", "")) for row in rows]


def reply(message: dict[str, Any], finish: str = "stop", reasoning_tokens: int | None = None) -> bytes:
    usage: dict[str, Any] = {"prompt_tokens": 50, "completion_tokens": 40, "total_tokens": 90}
    if reasoning_tokens is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    choice = {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
    body = {"id": "stub", "object": "chat.completion", "model": "stub", "choices": [choice], "usage": usage}
    return json.dumps(body).encode()


class ReasoningReplies:
    """Per problem: (0) the right answer in `content`, a wrong number last in `reasoning_content`; (1) the
    right answer in `content`, a wrong one in `reasoning` (the newer field name); (2) the right answer only
    inside `reasoning_content`, no content, cut at the token limit: it never closed."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems

    def __call__(self, index: int, body: dict[str, Any]) -> bytes:
        last = body["messages"][-1]["content"]
        which = next(i for i, (question, _) in enumerate(self.problems) if question in last)
        answer = self.problems[which][1]
        wrong = str(int(answer) + 1000)
        if which == 0:
            return reply(
                {"content": f"The answer is {answer}.", "reasoning_content": f"Maybe {wrong}."}, "stop", 30
            )
        if which == 1:
            return reply({"content": f"So {answer}.", "reasoning": f"First guess: {wrong}"})
        return reply({"content": None, "reasoning_content": f"It is {answer}, let me re-check"}, "length")


def run_dir_of(results: Any) -> Path:
    return Path(results["gsm8k"].run_dir)


def test_field_reasoning_is_stored_apart_and_only_the_answer_is_scored(
    data_dir: Path, tmp_path: Path
) -> None:
    problems = first_problems(data_dir, 3)
    with StubOpenAIServer(reply_plan=ReasoningReplies(problems)) as server:
        results = evaluate(
            f"{server.base_url}#stub", "gsm8k", limit=3, runs=tmp_path / "runs", data_dir=data_dir,
            scoring=SuiteOptions(reasoning=ReasoningSpec("field")), progress=False,
        )  # fmt: skip
    run_dir = run_dir_of(results)
    records = {str(r["id"]): r for r in read_samples(run_dir)}
    assert len(records) == 3
    by_question = {problems[i][0]: i for i in range(3)}
    ordered = sorted(
        records.values(), key=lambda r: next(i for q, i in by_question.items() if q in str(r["prompt"]))
    )
    first, second, cut = ordered
    answers = [a for _, a in problems]

    # The stored completion keeps both parts as the server sent them; the split is stored beside it.
    assert first["completions"][0]["texts"] == [f"The answer is {answers[0]}."]
    assert first["completions"][0]["reasonings"] == [f"Maybe {int(answers[0]) + 1000}."]
    assert first["completions"][0]["reasoning_tokens"] == 30
    assert first["reasoning"] == [
        {
            "reasoning": f"Maybe {int(answers[0]) + 1000}.",
            "answer": f"The answer is {answers[0]}.",
            "source": "field",
        }
    ]
    assert second["completions"][0]["reasonings"] == [f"First guess: {int(answers[1]) + 1000}"]
    assert "reasoning_tokens" not in second["completions"][0]
    assert cut["completions"][0]["texts"] == [""]
    assert cut["completions"][0]["finish_reasons"] == ["length"]
    assert cut["reasoning"][0]["answer"] is None

    # Scores come from the content: right for the first two (their thinking ends on a wrong number), 0 for
    # the one that never closed although its thinking holds the right answer.
    assert [r["scores"]["exact_match_flex"] for r in (first, second, cut)] == [1.0, 1.0, 0.0]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["reasoning"]["unterminated"] == [cut["id"]]
    assert metrics["reasoning"]["mode"] == "field"


def test_thinking_budget_zero_asks_the_server_to_turn_thinking_off(data_dir: Path, tmp_path: Path) -> None:
    with StubOpenAIServer() as server:
        evaluate(
            f"{server.base_url}#stub", "gsm8k", limit=2, runs=tmp_path / "runs", data_dir=data_dir,
            scoring=SuiteOptions(reasoning=ReasoningSpec("field")), generation=Generation(thinking_budget=0),
            progress=False,
        )  # fmt: skip
        assert len(server.requests) == 2
        assert all(body["chat_template_kwargs"] == {"enable_thinking": False} for body in server.requests)


def test_a_run_without_reasoning_sends_and_stores_what_it_did_before(data_dir: Path, tmp_path: Path) -> None:
    with StubOpenAIServer() as server:
        results = evaluate(
            f"{server.base_url}#stub",
            "gsm8k",
            limit=2,
            runs=tmp_path / "runs",
            data_dir=data_dir,
            progress=False,
        )
        assert len(server.requests) == 2
        assert all("chat_template_kwargs" not in body for body in server.requests)
        assert all(set(body) <= {"model", "max_tokens", "temperature", "top_p", "seed", "messages"}
                   for body in server.requests)  # fmt: skip
    for record in read_samples(run_dir_of(results)):
        assert "reasoning" not in record
        completion = record["completions"][0]  # type: ignore[index]
        assert set(completion) == {"texts", "finish_reasons", "prompt_tokens", "completion_tokens", "latency_s",
                                   "cost_usd"}  # fmt: skip
        assert re.fullmatch(r"The answer is \d+\.", completion["texts"][0])
    assert "reasoning" not in json.loads((run_dir_of(results) / "metrics.json").read_text())


@pytest.mark.parametrize("bad", [{"reasoning_content": ["a", "list"]}, {"reasoning": {"text": "x"}}])
def test_a_reasoning_field_that_is_not_text_is_never_stored(
    data_dir: Path, tmp_path: Path, bad: dict[str, Any]
) -> None:
    from adapters import AdapterOptions
    from harness.errors import EndpointError

    with StubOpenAIServer(reply_plan=lambda i, body: reply({"content": "The answer is 1.", **bad})) as server:
        with pytest.raises(EndpointError, match="not a string"):
            evaluate(
                f"{server.base_url}#stub", "gsm8k", limit=1, runs=tmp_path / "runs", data_dir=data_dir,
                scoring=SuiteOptions(reasoning=ReasoningSpec("field")), backend=AdapterOptions(max_attempts=2),
                progress=False,
            )  # fmt: skip
