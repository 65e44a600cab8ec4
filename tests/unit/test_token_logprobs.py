"""Token log-probabilities in records: compact, rounded, read back exactly, hostile records refused, and
absent from everything (records, settings hash) when not asked for."""

from __future__ import annotations

from typing import Any

import pytest

from harness.api.evaluate import Generation
from harness.types import Completion, GenerationSettings, TokenLogprobs


def test_round_trip_is_compact_and_rounded() -> None:
    lp = TokenLogprobs.from_tokens(["The", " answer", " is", " 18"], [-0.123456, -1.0, -0.00001, -2.5])
    assert lp.offsets == (0, 3, 10, 13)
    completion = Completion(("The answer is 18",), ("stop",), logprobs=(lp,))
    record = completion.to_record()
    assert record["logprobs"] == [{"lp": [-0.1235, -1.0, -0.0, -2.5], "at": [0, 3, 10, 13]}]
    back = Completion.from_record(record)
    assert back.logprobs[0] is not None and back.logprobs[0].offsets == (0, 3, 10, 13)
    assert back.logprobs[0].logprobs == (-0.1235, -1.0, -0.0, -2.5)


def test_absent_when_not_asked() -> None:
    assert "logprobs" not in Completion(("x",), ("stop",)).to_record()
    assert "logprobs" not in Completion(("x",), ("stop",), logprobs=(None,)).to_record()
    assert "logprobs" not in GenerationSettings(max_tokens=8).as_record()
    assert GenerationSettings(max_tokens=8, logprobs=True).as_record()["logprobs"] is True
    assert Generation(logprobs=True).apply(GenerationSettings(max_tokens=8)).logprobs is True
    assert Generation.like(GenerationSettings(max_tokens=8, logprobs=True)).logprobs is True


@pytest.mark.parametrize(
    ("logprobs", "error"),
    [
        ({"lp": [-1.0], "at": [0, 1]}, "differ in length"),
        ({"lp": [0.5], "at": [0]}, "finite number <= 0"),
        ({"lp": [float("nan")], "at": [0]}, "finite number <= 0"),
        ({"lp": [-1.0, -1.0], "at": [2, 1]}, "never decrease"),
        ({"lp": [-1.0], "at": [-1]}, "never decrease"),
        ({"lp": [-1.0], "at": [99]}, "past the end"),
        ({"lp": ["x"], "at": [0]}, "'lp' must hold numbers"),
        ({"lp": [-1.0], "at": [0.5]}, "whole numbers"),
        ({"lp": [-1.0], "at": [True]}, "whole numbers"),
        ("nope", "objects with 'lp' and 'at'"),
        ({"lp": None, "at": []}, "need lists"),
    ],
)
def test_hostile_records_are_refused(logprobs: Any, error: str) -> None:
    record = {"texts": ["abc"], "finish_reasons": ["stop"], "logprobs": [logprobs]}
    with pytest.raises(ValueError, match=error):
        Completion.from_record(record)


def test_more_entries_than_texts_is_refused() -> None:
    record = {"texts": ["abc"], "logprobs": [None, None]}
    with pytest.raises(ValueError, match="at most one entry per text"):
        Completion.from_record(record)
