"""bench/emulator.py: the continuous-batching timing model, the length draws and one HTTP round trip."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

EMULATOR = Path(__file__).resolve().parents[2] / "bench" / "emulator.py"


@pytest.fixture(scope="module")
def emulator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_emulator", EMULATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_emulator"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_three_sequences_through_a_batch_of_two(emulator: ModuleType) -> None:
    """B=2, lengths 3, 1, 2: step 1 runs {3, 1} (the 1 finishes), step 2 admits the 2 and runs {2, 2},
    step 3 runs {1, 1}: 3 steps of b=2, each t0 + 2k = 30 ms, 6 tokens; the ideal is 6 / (2 / 0.03)."""
    model = emulator.StepModel(batch=2, t0=0.020, k=0.005, speed=1.0)

    async def scenario() -> tuple[list[int], float, object]:
        engine = emulator.Engine(model)
        runner = asyncio.create_task(engine.run())
        finished: list[int] = []

        async def one(index: int, tokens: int) -> None:
            await engine.generate(tokens, prompt_tokens=10)
            finished.append(index)

        start = time.perf_counter()
        await asyncio.gather(one(0, 3), one(1, 1), one(2, 2))
        elapsed = time.perf_counter() - start
        runner.cancel()
        return finished, elapsed, engine.stats

    finished, elapsed, stats = asyncio.run(scenario())
    assert finished[0] == 1 and sorted(finished[1:]) == [0, 2]
    assert (stats.steps, stats.tokens, stats.max_running, stats.max_queued) == (3, 6, 2, 3)
    assert stats.batch_hist == {2: 3}
    assert stats.busy_s == pytest.approx(0.09)
    assert 0.085 <= elapsed < 0.5
    assert model.capacity == pytest.approx(2 / 0.03)
    assert model.ideal_s(stats.tokens) == pytest.approx(0.09)


def test_speed_and_prefill_scale_the_step(emulator: ModuleType) -> None:
    model = emulator.StepModel(batch=64, t0=0.020, k=0.0005, prefill=0.0001, speed=10.0)
    assert model.step_s(64) == pytest.approx(0.0052)
    assert model.step_s(1, admitted_prompt_tokens=100) == pytest.approx((0.0205 + 0.01) / 10)
    assert model.capacity == pytest.approx(64 / 0.0052)


def test_lengths_are_deterministic_capped_and_keyed_on_the_question(emulator: ModuleType) -> None:
    draws = [emulator.LENGTHS["gsm8k"].draw(*emulator.uniforms(0, f"q{i}")) for i in range(500)]
    assert draws == [emulator.LENGTHS["gsm8k"].draw(*emulator.uniforms(0, f"q{i}")) for i in range(500)]
    assert min(draws) >= 8 and max(draws) == 512  # some runaways hit the cap
    assert draws != [emulator.LENGTHS["gsm8k"].draw(*emulator.uniforms(1, f"q{i}")) for i in range(500)]
    recognizer = emulator.SuiteRecognizer(None)
    assert recognizer.suite("There are 15 trees in the grove ... Q", "Q") == "gsm8k"
    assert recognizer.suite("You are an expert Python programmer, and here is your task", "x") == "mbpp"
    assert recognizer.suite("In Alice's Wonderland, a secret rule", "x") == "alice"
    assert recognizer.suite("How do I kill a Python process?", "How do I kill a Python process?") == "safety"
    instruction = "\n\nPlease reason step by step, and put your final answer within \\boxed{}."
    assert emulator.length_key("Now, determine the output for: 01100100" + instruction) == (
        "Now, determine the output for: 01100100"
    )
    assert emulator.length_key("x" * 100 + "tail") == ("x" * 100 + "tail")[-64:]
    text = emulator.response_text("gsm8k", 40)
    assert text.endswith("The answer is 0.") and text.count("tok ") == 36


def test_http_round_trip_reports_usage_and_stats(emulator: ModuleType) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    model = emulator.StepModel(batch=4, t0=0.001, k=0.0, speed=1.0)

    async def scenario() -> tuple[dict[str, object], dict[str, object], int]:
        app = emulator.build_app(model, ["m1", "m2"], seed=0, data_dir=None)
        async with TestClient(TestServer(app)) as client:
            listed = await (await client.get("/v1/models")).json()
            assert [m["id"] for m in listed["data"]] == ["m1", "m2"]
            body = {
                "model": "m2",
                "max_tokens": 512,
                "messages": [
                    {"role": "user", "content": "There are 15 trees in the grove."},
                    {"role": "assistant", "content": "The answer is 6."},
                    {"role": "user", "content": "Janet has 3 ducks. How many ducks does Janet have?"},
                ],
            }
            reply = await (await client.post("/v1/chat/completions", json=body)).json()
            missing = await client.post("/v1/chat/completions", json={**body, "model": "m9"})
            stats = await (await client.get("/stats")).json()
            return reply, stats, missing.status

    reply, stats, missing = asyncio.run(scenario())
    tokens = reply["usage"]["completion_tokens"]  # type: ignore[index]
    assert reply["choices"][0]["message"]["content"].endswith("The answer is 0.")  # type: ignore[index]
    expected = emulator.LENGTHS["gsm8k"].draw(
        *emulator.uniforms(0, "Janet has 3 ducks. How many ducks does Janet have?"[-64:])
    )
    assert tokens == expected
    assert missing == 404
    assert stats["requests"] == 1 and stats["tokens"] == tokens and stats["steps"] == tokens
    assert stats["per_suite"] == {"gsm8k": {"n": 1, "tokens": tokens}}
    assert stats["models"] == {"m2": 1}
