"""Token log-probabilities from the real llama.cpp paths (issue 21, calibration): the embedded model
in-process (read from the logits llama.cpp sampled from) and the same GGUF behind `harness serve`
(llama-cpp-python's own `logprobs`, computed from its logits_all array), on GSM8K through the Python API.
Greedy decoding: both paths pick the same tokens, so they must give those tokens the same log-probabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import evaluate
from harness.api.evaluate import Generation
from tests.conftest import Server, read_samples

LIMIT, MAX_TOKENS = 2, 32


def gsm8k(checkpoint: str, data_dir: Path, runs: Path, logprobs: bool) -> tuple[dict[str, Any], float]:
    """(samples.jsonl rows by id, mean generation seconds per sample: the recorded latency, no model load)."""
    results = evaluate(
        checkpoint, "gsm8k", limit=LIMIT, runs=runs, data_dir=data_dir, cache=False, progress=False,
        generation=Generation(max_tokens=MAX_TOKENS, logprobs=logprobs),
    )  # fmt: skip
    records = {str(r["id"]): r for r in read_samples(Path(results["gsm8k"].run_dir))}
    return records, sum(r["completions"][0]["latency_s"] for r in records.values()) / len(records)


def check_block(record: dict[str, Any]) -> tuple[list[float], list[int]]:
    completion = record["completions"][0]
    text = completion["texts"][0]
    (block,) = completion["logprobs"]
    lp, at = block["lp"], block["at"]
    assert len(lp) == len(at) > 0
    assert all(x <= 0 for x in lp) and all(0 <= a < len(text) for a in at) and at == sorted(at)
    # llama.cpp counts the tokens of a cut stop string; the text (and its block) ends before them
    assert completion["completion_tokens"] - 4 <= len(lp) <= completion["completion_tokens"]
    return lp, at


@pytest.fixture(scope="module")
def in_process(
    data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], float, float]:
    runs = tmp_path_factory.mktemp("embedded-logprobs")
    gsm8k("embedded", data_dir, runs / "warm", logprobs=False)  # loads the model and fills the OS cache
    plain, plain_s = gsm8k("embedded", data_dir, runs / "plain", logprobs=False)
    asked, asked_s = gsm8k("embedded", data_dir, runs / "asked", logprobs=True)
    assert {i: r["completions"][0]["texts"] for i, r in plain.items()} == {
        i: r["completions"][0]["texts"] for i, r in asked.items()
    }  # asking for log-probabilities changes nothing that is generated
    assert all("logprobs" not in r["completions"][0] for r in plain.values())
    return asked, plain_s, asked_s


def test_in_process_records_carry_logprobs(
    in_process: tuple[dict[str, Any], float, float],
) -> None:
    asked, plain_s, asked_s = in_process
    assert len(asked) == LIMIT
    for record in asked.values():
        check_block(record)
    print(f"embedded in-process, GSM8K limit {LIMIT}: {plain_s:.2f} s/sample without, {asked_s:.2f} with")


def test_server_and_in_process_give_the_same_tokens_the_same_logprobs(
    llama_server: Server, data_dir: Path, tmp_path: Path, in_process: tuple[dict[str, Any], float, float]
) -> None:
    asked, _, _ = in_process
    served, served_s = gsm8k(llama_server.checkpoint(), data_dir, tmp_path / "asked", logprobs=True)
    print(f"llama.cpp server, GSM8K limit {LIMIT}: {served_s:.2f} s/sample with log-probabilities")
    assert set(served) == set(asked)
    for sample_id, record in served.items():
        local = asked[sample_id]["completions"][0]
        assert record["completions"][0]["texts"] == local["texts"]
        lp, at = check_block(record)
        local_lp, local_at = local["logprobs"][0]["lp"], local["logprobs"][0]["at"]
        assert at == local_at
        worst = max(abs(a - b) for a, b in zip(lp, local_lp, strict=True))
        print(f"{sample_id}: {len(lp)} tokens, largest server/in-process difference {worst:.5f}")
        assert worst < 1e-2
