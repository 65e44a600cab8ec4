"""The reasoning parser (harness.reasoning) on R1/Qwen3-style responses: what is thinking, what is the
answer, and when there is no answer; the spec's validation and its pinned record; token and length stats."""

from __future__ import annotations

import pytest

from harness.errors import DataError, UsageError
from harness.reasoning import (
    PARSER_VERSION,
    ReasonedText,
    ReasoningSpec,
    answer_text,
    answer_view,
    split_completion,
    split_field,
    split_tags,
    token_split,
)
from harness.reasoning_stats import TokenStats
from harness.suite import SuiteOptions
from harness.types import Completion

THINK, END = "<think>", "</think>"

# R1/Qwen3 style: a long deliberation with "Wait," and a self-correction, then a short answer.
DELIBERATION = (
    "Okay, let's see. Janet's ducks lay 16 eggs per day. She eats 3 for breakfast and uses 4 for muffins.\n"
    "So she has 16 - 3 = 13, and 13 - 4 = 9 eggs left. She sells each egg for $2, so 9 * 2 = 16.\n"
    "Wait, that's not right. 9 * 2 is 18, not 16. Let me double-check: 16 - 3 - 4 = 9, and 9 * 2 = 18.\n"
    "Yes, 18 dollars."
)
ANSWER = "Janet sells 16 - 3 - 4 = 9 eggs a day and makes 9 * 2 = $18.\n\nThe answer is 18."
CLOSED = f"{THINK}\n{DELIBERATION}\n{END}\n\n{ANSWER}"
# The generation hit max_tokens mid-thought: the last number (18) is right, but it is not an answer.
UNCLOSED = f"{THINK}\n{DELIBERATION}\nHmm, but wait, maybe the muffins use 4 eggs per batch and she bakes 18"
# The chat template ended with <think> (R1 distills, Qwen3 thinking mode): the text starts inside it.
PROMPT_OPENED = f"{DELIBERATION}\n{END}\n\n{ANSWER}"


def completion(*texts: str, **fields: object) -> Completion:
    return Completion(texts=texts, finish_reasons=("stop",) * len(texts), **fields)  # type: ignore[arg-type]


def test_closed_block_is_thinking_and_the_rest_is_the_answer() -> None:
    part = split_tags(CLOSED, THINK, END)
    assert part == ReasonedText(DELIBERATION, ANSWER, "tags")
    assert not part.ended_inside_reasoning
    assert part.to_record() == {"reasoning": DELIBERATION, "answer": ANSWER, "source": "tags"}
    assert ReasonedText.from_record(part.to_record()) == part


def test_unclosed_block_has_no_answer_even_with_the_right_number_inside() -> None:
    part = split_tags(UNCLOSED, THINK, END)
    assert part.answer is None and part.ended_inside_reasoning
    assert part.reasoning == UNCLOSED.removeprefix(THINK).strip()
    assert answer_text(ReasoningSpec("think-tags"), UNCLOSED) is None


def test_several_blocks_join_their_thinking_and_keep_the_answer_text_between() -> None:
    text = (
        f"{THINK}\nFirst, parse the question. 16 eggs, 3 eaten, 4 baked.\n{END}\n\n"
        "She has 9 eggs left to sell.\n\n"
        f"{THINK}\nWait, how much per egg? $2. So 9 * 2 = 18.\n{END}\n\n"
        "The answer is 18."
    )
    part = split_tags(text, THINK, END)
    assert part.reasoning == (
        "First, parse the question. 16 eggs, 3 eaten, 4 baked.\n\nWait, how much per egg? $2. So 9 * 2 = 18."
    )
    assert part.answer == "She has 9 eggs left to sell.\n\n\n\nThe answer is 18."


def test_a_later_block_that_never_closed_leaves_no_answer() -> None:
    # The answer text before it does not count: the response was cut while thinking again.
    text = f"{THINK}\nPlan it.\n{END}\nThe answer is 18.\n{THINK}\nWait, let me recheck 9 * 2"
    part = split_tags(text, THINK, END)
    assert part.answer is None


def test_a_later_unclosed_block_is_joined_like_closed_blocks() -> None:
    closed = f"{THINK}Plan it.{END} The answer is 18. {THINK}Wait, let me recheck 9 * 2.{END} Yes, 18."
    assert split_tags(closed, THINK, END).reasoning == "Plan it.\n\nWait, let me recheck 9 * 2."
    cut = f"{THINK}Plan it.{END} The answer is 18. {THINK}Wait, let me recheck 9 * 2"
    assert split_tags(cut, THINK, END).reasoning == "Plan it.\n\nWait, let me recheck 9 * 2"


def test_tags_inside_a_code_fence_of_the_answer_are_code() -> None:
    code = (
        "```python\n"
        "def strip_thinking(text: str) -> str:\n"
        '    start, end = text.find("<think>"), text.find("</think>")\n'
        '    return text[:start] + text[end + len("</think>"):]\n'
        "```"
    )
    text = (
        f"{THINK}\nThe user wants a function that removes the thinking block. Use str.find.\n{END}\n\n{code}"
    )
    part = split_tags(text, THINK, END)
    assert part.reasoning == "The user wants a function that removes the thinking block. Use str.find."
    assert part.answer == code
    # A response without thinking whose code mentions both tags: nothing is stripped.
    plain = f"Here it is:\n\n{code}\n\nIt returns the text without the block."
    assert split_tags(plain, THINK, END) == ReasonedText("", plain, "none")


def test_tags_inside_inline_code_of_the_answer_are_text() -> None:
    answer = "Qwen3 wraps its reasoning in `<think>` and ends it with `</think>`; strip both before scoring."
    part = split_tags(f"{THINK}\nThey ask about the tag names.\n{END}\n\n{answer}", THINK, END)
    assert part == ReasonedText("They ask about the tag names.", answer, "tags")


def test_a_close_tag_in_inline_code_of_an_answer_only_response_is_text() -> None:
    # No thinking at all: the backticked close tag is prose about the tag, not the end of a prompt-opened block.
    plain = "End the block with `</think>`, then write the answer."
    assert split_tags(plain, THINK, END) == ReasonedText("", plain, "none")


def test_first_close_tag_ends_thinking_even_inside_a_fence() -> None:
    # What vLLM's parsers do: inside thinking, the first close tag ends it, fenced or not.
    text = f'{THINK}\nDraft:\n```python\nEND = "{END}"\n```\nok{END}\nDone.'
    part = split_tags(text, THINK, END)
    assert part.reasoning == 'Draft:\n```python\nEND = "'
    assert part.answer == f'"\n```\nok{END}\nDone.'


def test_prompt_opened_block_by_a_close_tag_without_an_open_tag() -> None:
    assert split_tags(PROMPT_OPENED, THINK, END) == ReasonedText(DELIBERATION, ANSWER, "tags")
    # An empty thinking block the template wrote (Qwen3 with enable_thinking=False) leaves the answer.
    assert split_tags(f"{END}\n\n{ANSWER}", THINK, END) == ReasonedText("", ANSWER, "tags")


def test_prompt_opened_block_flagged_by_the_adapter() -> None:
    spec = ReasoningSpec("think-tags")
    closed = completion(PROMPT_OPENED, opened_in_prompt=True)
    assert split_completion(spec, closed) == (ReasonedText(DELIBERATION, ANSWER, "tags"),)
    # No close tag at all: the whole text is thinking that never ended; without the flag it is the answer.
    cut = DELIBERATION + "\nHmm, so the answer should be 18"
    (part,) = split_completion(spec, completion(cut, opened_in_prompt=True))
    assert part == ReasonedText(cut, None, "tags")
    assert split_completion(spec, completion(cut)) == (ReasonedText("", cut, "none"),)
    view = answer_view(spec, completion(cut, opened_in_prompt=True))
    assert view.texts == ("",) and view.unanswered == (True,) and not view.has_answer


def test_custom_tags() -> None:
    spec = ReasoningSpec("think-tags", "<|begin_of_thought|>", "<|end_of_thought|>")
    text = (
        "<|begin_of_thought|>\n\nThe rule maps 73 to LXXIII: Roman numerals. 43 = XL + III.\n\n"
        "<|end_of_thought|>\n\n<|begin_of_solution|>\\boxed{XLIII}<|end_of_solution|>"
    )
    (part,) = split_completion(spec, completion(text))
    assert part.reasoning == "The rule maps 73 to LXXIII: Roman numerals. 43 = XL + III."
    assert part.answer == "<|begin_of_solution|>\\boxed{XLIII}<|end_of_solution|>"
    # <think> is not this spec's tag: text.
    assert split_completion(spec, completion(CLOSED)) == (ReasonedText("", CLOSED, "none"),)


def test_field_mode_trusts_the_server_split() -> None:
    spec = ReasoningSpec("field")
    both = completion("The answer is 18.", reasonings=(DELIBERATION,))
    assert split_completion(spec, both) == (ReasonedText(DELIBERATION, "The answer is 18.", "field"),)
    # Thinking and empty content: it never closed (vLLM puts an unterminated block in reasoning_content).
    (cut,) = split_completion(spec, completion("", reasonings=(DELIBERATION,)))
    assert cut.answer is None and cut.reasoning == DELIBERATION
    # No field: the whole text is the answer, tags included (the server did not split them).
    assert split_completion(spec, completion(CLOSED)) == (ReasonedText("", CLOSED, "none"),)
    assert split_field("  ", "") == ReasonedText("", "", "field")  # nothing at all: an empty answer


def test_auto_mode_uses_the_field_when_sent_else_the_tags() -> None:
    spec = ReasoningSpec("auto")
    # Field sent: content is the answer even with tags in it.
    with_field = completion("Use `<think>`...", reasonings=("They ask about tags.",))
    assert split_completion(spec, with_field) == (
        ReasonedText("They ask about tags.", "Use `<think>`...", "field"),
    )
    assert split_completion(spec, completion(CLOSED)) == (ReasonedText(DELIBERATION, ANSWER, "tags"),)
    # Two texts (n = 2), the server split one of them only.
    mixed = completion("The answer is 18.", UNCLOSED, reasonings=(DELIBERATION, None))
    first, second = split_completion(spec, mixed)
    assert first.source == "field" and second.source == "tags" and second.answer is None


def test_none_mode_leaves_the_text_alone() -> None:
    spec = ReasoningSpec()
    for text in (CLOSED, UNCLOSED, PROMPT_OPENED):
        assert split_completion(spec, completion(text)) == (ReasonedText("", text, "none"),)
        assert answer_view(spec, completion(text)) == completion(text)
        assert answer_text(spec, text) == text


def test_answer_view_replaces_each_text_by_its_answer() -> None:
    view = answer_view(ReasoningSpec("think-tags"), completion(CLOSED, UNCLOSED))
    assert view.texts == (ANSWER, "")
    assert view.unanswered == (False, True)
    assert view.has_answer  # the first text answered
    assert view.reasonings == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "tags"}, "Unknown reasoning mode 'tags'"),
        ({"mode": "think-tags", "open_tag": ""}, "The reasoning open tag '' is not usable"),
        (
            {"mode": "think-tags", "close_tag": " </think>"},
            "The reasoning close tag ' </think>' is not usable",
        ),
        ({"mode": "think-tags", "open_tag": "`<t>`"}, "is not usable"),
        ({"mode": "think-tags", "open_tag": "x" * 65}, "is not usable"),
        ({"mode": "think-tags", "open_tag": "<t>", "close_tag": "<t>"}, "open and close tags are both '<t>'"),
    ],
)
def test_spec_validation(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("|", r"\|")):
        ReasoningSpec(**kwargs)  # type: ignore[arg-type]


def test_pinned_record_and_round_trip() -> None:
    assert ReasoningSpec().pinned() == {}  # none: old settings hashes stay valid
    tags = ReasoningSpec("think-tags", "<|begin_of_thought|>", "<|end_of_thought|>")
    assert tags.pinned() == {
        "reasoning": {
            "mode": "think-tags",
            "parser": PARSER_VERSION,
            "open_tag": "<|begin_of_thought|>",
            "close_tag": "<|end_of_thought|>",
        }
    }
    assert ReasoningSpec("field").pinned() == {"reasoning": {"mode": "field", "parser": PARSER_VERSION}}
    for spec in (ReasoningSpec(), tags, ReasoningSpec("field"), ReasoningSpec("auto")):
        settings = {"split": "test", **spec.pinned()}
        assert ReasoningSpec.from_pinned(settings) == spec
        assert SuiteOptions.of_run(settings).reasoning == spec
    assert tags.describe() == "think-tags <|begin_of_thought|>...<|end_of_thought|>"
    assert ReasoningSpec("field").describe() == "field"


@pytest.mark.parametrize(
    "record",
    [
        {"mode": "think-tags", "parser": "0", "open_tag": THINK, "close_tag": END},
        {"mode": "think-tags"},  # no parser version
        "think-tags",
    ],
)
def test_a_manifest_with_another_parser_version_is_refused(record: object) -> None:
    with pytest.raises(DataError, match="records a reasoning parser this harness does not have") as raised:
        SuiteOptions.of_run({"reasoning": record}, where="runs/x/manifest.json")
    assert "runs/x/manifest.json" in str(raised.value)


def test_a_manifest_with_an_unreadable_reasoning_record_is_refused() -> None:
    with pytest.raises(DataError, match="unreadable reasoning setting"):
        ReasoningSpec.from_pinned({"reasoning": {"mode": "sideways", "parser": PARSER_VERSION}})
    with pytest.raises(DataError, match="unreadable reasoning setting"):
        ReasoningSpec.from_pinned({"reasoning": {"parser": PARSER_VERSION}})


def test_token_split_reported_by_the_backend() -> None:
    parts = (ReasonedText("x" * 300, "y" * 100, "tags"),)
    reported = completion(CLOSED, completion_tokens=120, reasoning_tokens=90)
    assert token_split(reported, parts) == (90.0, 30.0, "reported")
    # A count above the total is capped at the total.
    assert token_split(completion(CLOSED, completion_tokens=50, reasoning_tokens=90), parts) == (
        50.0,
        0.0,
        "reported",
    )


def test_token_split_by_characters_is_an_estimate() -> None:
    # 300 thinking and 100 answer characters: 3/4 of 40 tokens are thinking.
    parts = (ReasonedText("x" * 300, "y" * 100, "tags"),)
    assert token_split(completion(CLOSED, completion_tokens=40), parts) == (30.0, 10.0, "characters")
    # 1 of 3 characters: 10 / 3 = 3.333.. rounded to one decimal.
    thirds = (ReasonedText("x", "yy", "tags"),)
    assert token_split(completion(CLOSED, completion_tokens=10), thirds) == (3.3, 6.7, "characters")
    assert token_split(completion("", completion_tokens=7), (ReasonedText("", "", "none"),)) == (
        0.0,
        7.0,
        "characters",
    )
    # An unterminated response: all its tokens are thinking.
    unclosed = (ReasonedText("x" * 50, None, "tags"),)
    assert token_split(completion(UNCLOSED, completion_tokens=64), unclosed) == (64.0, 0.0, "characters")


def test_token_stats_percentiles_by_hand() -> None:
    # Sorted: 10 20 30 40 100. Mean 200 / 5 = 40. p50: rank 2 -> 30. p95: rank 0.95 * 4 = 3.8 -> 40 + 0.8 * 60 = 88.
    stats = TokenStats.of([100, 20, 40, 10, 30])
    assert stats == TokenStats(40.0, 30.0, 88.0)
    # Even count: 1 2 3 5 -> mean 11 / 4 = 2.75 -> 2.8 (one decimal), p50 at rank 1.5 = 2.5,
    # p95 at rank 2.85 = 3 + 0.85 * 2 = 4.7.
    assert TokenStats.of([5, 1, 3, 2]) == TokenStats(2.8, 2.5, 4.7)
    assert TokenStats.of([7]) == TokenStats(7.0, 7.0, 7.0)
    assert TokenStats.of([]) == TokenStats(None, None, None)
    assert TokenStats.from_record(stats.to_record()) == stats
    assert TokenStats.from_record({"mean": True, "p50": "3", "p95": 2}) == TokenStats(None, None, 2.0)


def test_a_megabyte_of_tags_inside_code_is_split_in_linear_time() -> None:
    # Hostile output: 100,000 open tags inside a fence and on one backticked line. Re-scanning the text
    # from the start for each candidate tag (the first version) is quadratic: 22 s at 20,000 tags, some
    # 9 minutes at this size; indexed once, under a second. The 30 s bound only guards against that
    # regression, it is not a speed target.
    import time

    fenced = "```\n" + "<think>" * 100_000 + "\n```\nThe answer is 4."
    inline = "`<think>` " * 100_000 + "The answer is 4."
    started = time.perf_counter()
    assert split_tags(fenced, THINK, END) == ReasonedText("", fenced.strip(), "none")
    assert split_tags(inline, THINK, END) == ReasonedText("", inline.strip(), "none")
    assert time.perf_counter() - started < 30
