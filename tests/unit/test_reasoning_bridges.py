"""Reasoning models through the bridges: inspect gets ContentReasoning + the answer, lm-eval the answer only,
and what our split gives lm-eval compared with lm-eval's own `think_end_token` handling on the same texts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from lm_eval.models.utils import postprocess_generated_text

from harness.bridges import OpenedCheckpoint
from harness.bridges.lm_eval_model import answer_for_lm_eval
from harness.bridges.reasoning_options import reasoning_from_options
from harness.checkpoints import ReplayRef
from harness.errors import UsageError
from harness.reasoning import ReasoningSpec
from harness.types import Completion, Request

THINK = ReasoningSpec("think-tags")
CLOSE = "</think>"


# --- agreement with lm-eval's think_end_token --------------------------------------------------------

# (case, text, opened_in_prompt, until, ours, lm-eval's postprocess_generated_text(text, until, "</think>"))
AGREEMENT: list[tuple[str, str, bool, list[str], str, str]] = [
    (
        "agree: closed block",
        "<think>2 + 3 is 5.</think>\n\nThe answer is 5.",
        False, [], "The answer is 5.", "The answer is 5.",
    ),
    (
        # Both remove the thinking before cutting at `until`: the "\n\n" inside the thinking does not end
        # the answer. (Cutting first would leave "<think>Step 1." and no answer at all.)
        "agree: closed block, until inside the thinking",
        "<think>Step 1.\n\nStep 2.</think>\n\nThe answer is 5.\n\nQuestion: 1 + 1?",
        False, ["\n\n"], "The answer is 5.", "The answer is 5.",
    ),
    (
        # R1 distills and Qwen3: the chat template opened the block, the response has only the close tag.
        "agree: prompt-opened, closed",
        "2 + 3 is 5.</think>\n\nThe answer is 5.",
        False, [], "The answer is 5.", "The answer is 5.",
    ),
    ("agree: no tags", "The answer is 5.", False, [], "The answer is 5.", "The answer is 5."),
    (
        # DIFFERS: lm-eval has no close tag to split on, so the whole thinking text is scored as the answer
        # (a GSM8K last-number extraction would read the 5 out of the thinking). We give no answer.
        "differ: unclosed block",
        "<think>2 + 3 is 5, so the answer is 5",
        False, [], "", "<think>2 + 3 is 5, so the answer is 5",
    ),
    (
        # DIFFERS, the same way: the prompt opened the block and the response never closed it; only the
        # adapter's opened_in_prompt flag says this is thinking, and lm-eval has nothing like it.
        "differ: prompt-opened, never closed",
        "2 + 3 is 5, so the answer is 5",
        True, [], "", "2 + 3 is 5, so the answer is 5",
    ),
    (
        # DIFFERS: lm-eval keeps only what follows the last close tag and drops the answer text between the
        # blocks; we keep every part outside thinking.
        "differ: two blocks, answer text between them",
        "<think>first try</think>Partial: 2 + 3 = 5. <think>check it</think>Final: 5.",
        False, [], "Partial: 2 + 3 = 5. Final: 5.", "Final: 5.",
    ),
    (
        # DIFFERS: a close tag written as code in the answer. lm-eval splits on the last occurrence and cuts
        # the code apart; inside thinking the first close tag ends the block, so the answer stays whole.
        "differ: close tag inside a code fence in the answer",
        "<think>Print the tag.</think>\n```python\nprint('</think>')\n```",
        False, [], "```python\nprint('</think>')\n```", "')\n```",
    ),
    (
        # DIFFERS in whitespace only: we strip both ends of the answer, lm-eval only the left.
        "differ: trailing whitespace",
        "<think>x</think> 5 \n",
        False, [], "5", "5 \n",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "text", "opened", "until", "ours", "theirs"), AGREEMENT, ids=[case[0] for case in AGREEMENT]
)
def test_our_answers_against_lm_evals_think_end_token(
    case: str, text: str, opened: bool, until: list[str], ours: str, theirs: str
) -> None:
    completion = Completion(texts=(text,), finish_reasons=("stop",), opened_in_prompt=opened)
    assert answer_for_lm_eval(THINK, completion, tuple(until)) == ours
    assert postprocess_generated_text(text, until, CLOSE) == theirs
    assert (ours == theirs) == case.startswith("agree:")  # each "differ:" case is explained in the table


def test_without_reasoning_the_lm_eval_answer_is_the_raw_text_cut_at_until() -> None:
    completion = Completion(texts=("<think>a\n\nb</think>5\n\nQ",), finish_reasons=("stop",))
    assert answer_for_lm_eval(ReasoningSpec(), completion, ("\n\n",)) == "<think>a"
    assert postprocess_generated_text(completion.text, ["\n\n"], None) == "<think>a"


# --- the reasoning options ----------------------------------------------------------------------------


def test_reasoning_options_parse_and_leave_the_adapter_options() -> None:
    spec, rest = reasoning_from_options(
        {"reasoning": "think-tags", "think_open": "<reason>", "think_close": "</reason>", "n_ctx": 8}, "-M"
    )
    assert spec == ReasoningSpec("think-tags", "<reason>", "</reason>") and rest == {"n_ctx": 8}
    assert reasoning_from_options({"reasoning": None}, "--model_args") == (
        ReasoningSpec(),
        {},
    )  # lm-eval: none
    assert reasoning_from_options({}, "-M") == (ReasoningSpec(), {})
    assert reasoning_from_options({"reasoning": "field"}, "-M")[0] == ReasoningSpec("field")
    with pytest.raises(UsageError, match=r"Unknown -M option reasoning='tags'\. Choose one of: none, think"):
        reasoning_from_options({"reasoning": "tags"}, "-M")
    with pytest.raises(
        UsageError, match=r"--model_args think_open apply to reasoning=think-tags or auto, not reasoning=none"
    ):
        reasoning_from_options({"think_open": "<t>"}, "--model_args")
    with pytest.raises(
        UsageError, match=r"open and close tags are both '<t>'.*e\.g\. -M reasoning=think-tags"
    ):
        reasoning_from_options({"reasoning": "auto", "think_open": "<t>", "think_close": "<t>"}, "-M")


# --- both bridges driven through a stand-in adapter ----------------------------------------------------

CLOSED = "<think>Is it 7? No: 2 + 3 is 5.\n\nDone.</think>\n\nThe answer is 5.\n\nQuestion: next"
UNCLOSED = "<think>2 + 3 is 5, so the answer is 5"
RESPONSES = {
    "closed": Completion(texts=(CLOSED,), finish_reasons=("stop",), completion_tokens=30),
    "unclosed": Completion(texts=(UNCLOSED,), finish_reasons=("length",), completion_tokens=64),
    "field": Completion(
        texts=("The answer is 5.",),
        finish_reasons=("stop",),
        reasonings=("I add 2 and 3.",),
        reasoning_tokens=6,
    ),
    "field-unclosed": Completion(texts=("",), finish_reasons=("length",), reasonings=("Still adding 2 and",)),
    "plain": Completion(texts=("The answer is 5.\n\nQuestion: next",), finish_reasons=("stop",)),
}


class ThinkingStandIn:
    """Stand-in adapter: answers by the last message (or prompt) with a stored reasoning-model response
    and records what it was asked for."""

    api = "chat"
    concurrency = 1
    batch_size = 8

    def __init__(self) -> None:
        self.requests: list[Request] = []

    def identity(self) -> str:
        return "thinking-stand-in"

    async def preflight(self) -> None:
        return None

    async def generate(self, requests: Sequence[Request]) -> list[Completion]:
        self.requests.extend(requests)
        keys = [r.messages[-1].content if r.messages else str(r.prompt) for r in requests]
        return [RESPONSES[key] for key in keys]

    async def aclose(self) -> None:
        return None


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThinkingStandIn]:
    adapter = ThinkingStandIn()

    def opened(raw_ref: str, options: Any, what: str) -> OpenedCheckpoint:
        assert not set(options) & {"reasoning", "think_open", "think_close"}  # never reach the adapter
        return OpenedCheckpoint(ReplayRef(raw_ref), None, adapter)

    import harness.bridges.lm_eval_model as lm_eval_model

    monkeypatch.setattr(lm_eval_model, "open_checkpoint", opened)
    if _has_inspect():
        import harness.bridges.inspect_provider as inspect_provider

        monkeypatch.setattr(inspect_provider, "open_checkpoint", opened)
    yield adapter


def _has_inspect() -> bool:
    import importlib.util

    return importlib.util.find_spec("inspect_ai") is not None


def _inspect_generate(mode: str, key: str, stops: list[str]) -> Any:
    pytest.importorskip("inspect_ai")
    from inspect_ai.model import ChatMessageUser, GenerateConfig, get_model

    model = get_model("harness/stand-in", memoize=False, reasoning=mode)
    config = GenerateConfig(stop_seqs=stops)
    return asyncio.run(model.api.generate([ChatMessageUser(content=key)], [], "none", config))


@pytest.mark.parametrize("mode", ["think-tags", "auto"])
def test_inspect_gets_the_thinking_as_content_reasoning_and_scores_the_answer(
    stand_in: ThinkingStandIn, mode: str
) -> None:
    output = _inspect_generate(mode, "closed", ["\n\n"])
    from inspect_ai.model import ContentReasoning, ContentText

    content = output.message.content
    assert [type(part) for part in content] == [ContentReasoning, ContentText]
    assert content[0].reasoning == "Is it 7? No: 2 + 3 is 5.\n\nDone."
    assert content[1].text == "The answer is 5."  # thinking out first, then cut at the task's stop
    assert output.completion == "The answer is 5." and output.message.text == "The answer is 5."
    assert output.stop_reason == "stop" and output.choices[0].stop_details is None
    # The stop was held back from the backend: sent, it would have ended generation inside the thinking.
    assert [r.settings.stop for r in stand_in.requests] == [()]


def test_inspect_unclosed_thinking_has_no_answer_and_says_why(stand_in: ThinkingStandIn) -> None:
    output = _inspect_generate("think-tags", "unclosed", [])
    assert output.completion == ""
    assert output.message.content[0].reasoning == "2 + 3 is 5, so the answer is 5"
    assert output.stop_reason == "max_tokens"  # the backend's "length"; inspect has no closer literal
    details = output.choices[0].stop_details
    assert details is not None and details.type == "ended_inside_reasoning"
    assert "thinking never closed" in str(details.explanation)


def test_inspect_field_reasoning_from_the_server(stand_in: ThinkingStandIn) -> None:
    output = _inspect_generate("field", "field", [])
    assert output.message.content[0].reasoning == "I add 2 and 3."
    assert output.completion == "The answer is 5."
    assert output.usage.reasoning_tokens == 6
    unclosed = _inspect_generate("auto", "field-unclosed", [])
    assert unclosed.completion == "" and unclosed.stop_reason == "max_tokens"
    assert unclosed.message.content[0].reasoning == "Still adding 2 and"
    assert unclosed.choices[0].stop_details.type == "ended_inside_reasoning"


def test_inspect_without_reasoning_is_unchanged(stand_in: ThinkingStandIn) -> None:
    output = _inspect_generate("none", "closed", ["\n\n"])
    assert output.message.content == "<think>Is it 7? No: 2 + 3 is 5."  # raw text, cut at the stop
    assert [r.settings.stop for r in stand_in.requests] == [("\n\n",)]  # and the stop sent to the backend


def _lm_eval_generate(model_args: str, keys: list[str], until: list[str]) -> tuple[list[str], dict[str, Any]]:
    from lm_eval.api.instance import Instance
    from lm_eval.api.registry import get_model

    lm = get_model("harness").create_from_arg_string(model_args, {"batch_size": 1, "device": None})
    try:
        gen = {"until": until, "do_sample": False}
        chats = [lm.apply_chat_template([{"role": "user", "content": key}]) for key in keys]
        instances = [Instance("generate_until", {}, (c, gen), i, ("t", i, 1)) for i, c in enumerate(chats)]
        texts: list[str] = lm.generate_until(instances)
        return texts, lm.get_model_info()
    finally:
        lm.close()


def test_lm_eval_gets_the_answer_only(stand_in: ThinkingStandIn) -> None:
    keys = ["closed", "unclosed", "plain"]
    args = "checkpoint=stand-in,reasoning=think-tags,think_open=<think>,think_close=</think>"
    texts, info = _lm_eval_generate(args, keys, ["\n\n"])
    assert texts == ["The answer is 5.", "", "The answer is 5."]  # the unclosed one: "", not its thinking
    assert {r.settings.stop for r in stand_in.requests} == {()}  # `until` cuts the answer, not the thinking
    assert info["harness_reasoning"] == {
        "mode": "think-tags", "parser": "1", "open_tag": "<think>", "close_tag": "</think>"
    }  # fmt: skip
    texts, info = _lm_eval_generate("checkpoint=stand-in,reasoning=auto", ["field", "field-unclosed"], [])
    assert texts == ["The answer is 5.", ""] and info["harness_reasoning"]["mode"] == "auto"


def test_lm_eval_without_reasoning_is_unchanged(stand_in: ThinkingStandIn) -> None:
    texts, info = _lm_eval_generate("checkpoint=stand-in,reasoning=none", ["closed", "plain"], ["\n\n"])
    assert "harness_reasoning" not in info
    assert texts == ["<think>Is it 7? No: 2 + 3 is 5.", "The answer is 5."]
    assert {r.settings.stop for r in stand_in.requests} == {("\n\n",)}
