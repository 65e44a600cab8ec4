"""Token log-probabilities from every backend (issue 21, calibration): OpenAI chat and legacy blocks
(hostile ones included), what is sent with and without `logprobs`, the incremental decoder that places
tokens in the text, hf against a teacher-forced forward pass, vLLM's Logprob types, Tinker's sampled
sequences, and the replay/record round trip."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from adapters.http_retry import reply_byte_cap
from adapters.logprobs import (
    decoded_offsets,
    from_token_ids,
    from_token_strings,
    token_cap,
    vllm_sampled_logprobs,
)
from adapters.openai_compat import OpenAICompatAdapter
from adapters.openai_replies import parse_completion
from adapters.replay import ReplayAdapter
from adapters.vllm import completion_from_outputs, sampling_plan
from harness.checkpoints import EndpointRef, parse_checkpoint
from harness.errors import DataError
from harness.types import Completion, GenerationSettings, Message, Request, TokenLogprobs
from tests.support.stub_openai import StubOpenAIServer
from tests.unit.test_vllm_adapter import model_dir, standin_path, standin_root, tokenizer_dir  # noqa: F401

CAP = token_cap(32)


def endpoint(base_url: str, query: str = "") -> EndpointRef:
    ref = parse_checkpoint(f"{base_url}#stub{query}")
    assert isinstance(ref, EndpointRef)
    return ref


def chat_reply(choices: list[dict[str, Any]]) -> bytes:
    return json.dumps({"choices": choices, "usage": {"prompt_tokens": 3, "completion_tokens": 4}}).encode()


def chat_choice(content: str, block: object, index: int = 0) -> dict[str, Any]:
    return {"index": index, "message": {"role": "assistant", "content": content}, "logprobs": block,
            "finish_reason": "stop"}  # fmt: skip


def entries(*pairs: tuple[object, object]) -> dict[str, Any]:
    return {"content": [{"token": t, "logprob": lp, "bytes": None, "top_logprobs": []} for t, lp in pairs]}


GOOD = entries(("The", -0.5), (" answer", -0.25), (" is", 0), (" 4", -1.5), (".", -0.01))


# --- OpenAI-compatible replies ----------------------------------------------------------------------


def test_chat_block_gives_values_and_offsets_of_each_token() -> None:
    completion = parse_completion(chat_reply([chat_choice("The answer is 4.", GOOD)]), "chat", 1, 0.1, CAP)
    assert completion.logprobs == (TokenLogprobs((-0.5, -0.25, 0.0, -1.5, -0.01), (0, 3, 10, 13, 15)),)


def test_legacy_block_counts_offsets_from_the_completion_not_the_prompt() -> None:
    """OpenAI and llama.cpp's text_offset counts from the prompt's start (24 here): the offsets are the
    token strings', from 0."""
    block = {"tokens": [" Paris", ".", "\n"], "token_logprobs": [-0.26, -0.38, -1.0],
             "text_offset": [24, 30, 31], "top_logprobs": None}  # fmt: skip
    raw = json.dumps({"choices": [{"index": 0, "text": " Paris.\n", "logprobs": block}]}).encode()
    completion = parse_completion(raw, "text", 1, 0.1, CAP)
    assert completion.logprobs == (TokenLogprobs((-0.26, -0.38, -1.0), (0, 6, 7)),)


def test_tokens_past_a_stop_string_are_dropped() -> None:
    """A server that cut the text at a stop string ("\\n\\n") may still list the stop string's tokens."""
    block = entries(("4", -0.1), (".", -0.2), ("\n", -0.3), ("\n", -0.4), ("Q", -2.0))
    completion = parse_completion(chat_reply([chat_choice("4.", block)]), "chat", 1, 0.1, CAP)
    assert completion.logprobs == (TokenLogprobs((-0.1, -0.2), (0, 1)),)


HOSTILE_BLOCKS: dict[str, object] = {
    "not an object": [1, 2],
    "content not a list": {"content": "The answer is 4."},
    "entry not an object": {"content": ["The answer is 4."]},
    "token not a string": {"content": [{"token": 7, "logprob": -0.1}]},
    "logprob a string": entries(("The answer is 4.", "-0.1")),
    "logprob a bool": entries(("The answer is 4.", False)),
    "logprob positive": entries(("The answer is 4.", 0.5)),
    "logprob NaN": entries(("The answer is 4.", math.nan)),
    "logprob infinite": entries(("The answer is 4.", -math.inf)),
    "logprob null": entries(("The answer is 4.", None)),
    "tokens spell another text": entries(("<think>hm</think>", -0.1), ("The answer is 4.", -0.1)),
    "tokens stop short of the text": entries(("The answer", -0.1)),
    "more tokens than max_tokens allows": entries(*[("", -0.1)] * (CAP + 1), ("The answer is 4.", -0.1)),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_BLOCKS))
def test_a_hostile_block_leaves_its_text_without_logprobs_and_the_reply_stands(name: str) -> None:
    raw = chat_reply([chat_choice("The answer is 4.", HOSTILE_BLOCKS[name])])
    completion = parse_completion(raw, "chat", 1, 0.1, CAP)
    assert completion.texts == ("The answer is 4.",)
    assert completion.logprobs == ()


def test_one_bad_block_among_n_choices_only_drops_its_own() -> None:
    good = {"index": 0, "text": "x", "logprobs": {"tokens": ["x"], "token_logprobs": [-0.5]}}
    echoed = {"tokens": ["x"], "token_logprobs": [None], "text_offset": [0]}  # echo's first token: null
    both = parse_completion(json.dumps({"choices": [good, {"index": 1, "text": "x", "logprobs": echoed}]}).encode(),
                            "text", 2, 0.0, CAP)  # fmt: skip
    assert both.texts == ("x", "x") and both.logprobs == (TokenLogprobs((-0.5,), (0,)), None)


def test_blocks_are_ignored_when_not_asked_for() -> None:
    completion = parse_completion(chat_reply([chat_choice("The answer is 4.", GOOD)]), "chat", 1, 0.1)
    assert completion.logprobs == () and "logprobs" not in completion.to_record()


def chat_request(logprobs: bool, n: int = 1) -> Request:
    settings = GenerationSettings(max_tokens=32, logprobs=logprobs, n=n)
    return Request("s1", settings, messages=(Message("user", "What is 2 + 2?"),))


def test_payload_asks_for_logprobs_only_when_the_settings_do() -> None:
    chat, text = (
        OpenAICompatAdapter(endpoint("http://x/v1")),
        OpenAICompatAdapter(endpoint("http://x/v1", "?api=text")),
    )
    plain = chat._payload(chat_request(False))
    assert not {"logprobs", "top_logprobs"} & set(plain)
    assert chat._payload(chat_request(True)) == {**plain, "logprobs": True, "top_logprobs": 0}
    prompt = Request("s1", GenerationSettings(max_tokens=32), prompt="2 + 2 =")
    assert "logprobs" not in text._payload(prompt)
    assert (
        text._payload(replace(prompt, settings=GenerationSettings(max_tokens=32, logprobs=True)))["logprobs"]
        == 0
    )
    big = GenerationSettings(max_tokens=40_000)
    assert reply_byte_cap(replace(big, logprobs=True)) > 4 * reply_byte_cap(big)  # room for the token objects


def test_endpoint_round_trip_and_split_n_keep_each_texts_logprobs() -> None:
    """Through HTTP: the block reaches Completion.logprobs; a server that ignores n (llama.cpp's) gets n
    single requests, merged with one block per text."""

    def plan(i: int, body: dict[str, Any]) -> bytes:
        assert body["logprobs"] is True and body["top_logprobs"] == 0
        text = "The answer is 4." if i % 2 == 0 else "4"
        block = GOOD if i % 2 == 0 else entries(("4", -0.75))
        return chat_reply([chat_choice(text, block)])

    async def go(adapter: OpenAICompatAdapter, request: Request) -> Completion:
        try:
            return (await adapter.generate([request]))[0]
        finally:
            await adapter.aclose()

    with StubOpenAIServer(reply_plan=plan) as server:
        single = asyncio.run(go(OpenAICompatAdapter(endpoint(server.base_url)), chat_request(True)))
        split = asyncio.run(go(OpenAICompatAdapter(endpoint(server.base_url)), chat_request(True, n=2)))
    assert single.logprobs[0] == TokenLogprobs((-0.5, -0.25, 0.0, -1.5, -0.01), (0, 3, 10, 13, 15))
    assert len(split.texts) == 2 and len(split.logprobs) == 2
    assert {lp.logprobs for lp in split.logprobs if lp is not None} == {
        (-0.5, -0.25, 0.0, -1.5, -0.01), (-0.75,)}  # fmt: skip


def test_nothing_about_a_run_without_logprobs_changes() -> None:
    with StubOpenAIServer() as server:
        adapter = OpenAICompatAdapter(endpoint(server.base_url))

        async def go() -> Completion:
            try:
                return (await adapter.generate([chat_request(False)]))[0]
            finally:
                await adapter.aclose()

        completion = asyncio.run(go())
    assert not {"logprobs", "top_logprobs"} & set(server.requests[0])
    assert completion.logprobs == () and "logprobs" not in completion.to_record()
    assert "logprobs" not in GenerationSettings(max_tokens=32).as_record()


# --- Placing token ids in the text ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(exported_hf_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(exported_hf_dir)


@pytest.mark.model
def test_incremental_decoding_places_multibyte_characters(tokenizer: Any) -> None:
    text = "Prix: 12 € — naïve x🦜y done"  # this tokenizer spells 🦜 in three byte-level tokens
    ids = tokenizer.encode(text, add_special_tokens=False)
    offsets, spelled = decoded_offsets(lambda t: tokenizer.decode(t), ids)
    assert spelled == text and len(offsets) == len(ids)
    emoji = text.index("🦜")
    assert [at for at in offsets if at == emoji] == [emoji] * 3  # every piece starts where the emoji does
    assert offsets == sorted(offsets) and offsets[offsets.index(emoji) + 3] == emoji + 1  # "y"
    fitted = from_token_ids(lambda t: tokenizer.decode(t), ids, [-0.1] * len(ids), text[: emoji + 1], 999)
    assert fitted is not None and fitted.offsets[-3:] == (emoji,) * 3  # cut after the emoji: its pieces stay


def test_from_token_strings_and_ids_refuse_mismatched_lengths() -> None:
    assert from_token_strings(["a", "b"], [-0.1], "ab", 10) is None
    assert from_token_ids(lambda t: "x" * len(t), [1, 2], [-0.1], "xx", 10) is None
    assert from_token_ids(lambda t: "x" * len(t), [1, 2], None, "xx", 10) is None
    assert from_token_ids(lambda t: "x" * len(t), [1, 2], [-0.1, -0.2], "xx", 1) is None  # over the cap


# --- hf ---------------------------------------------------------------------------------------------


@pytest.mark.model
def test_hf_logprobs_equal_a_teacher_forced_forward_pass(exported_hf_dir: Path) -> None:
    import torch

    from adapters import AdapterOptions
    from adapters.hf import create_hf_adapter, render_chat
    from harness.checkpoints import HfRef

    ref = parse_checkpoint(f"hf:{exported_hf_dir}")
    assert isinstance(ref, HfRef)
    adapter = create_hf_adapter(ref, AdapterOptions(device="cpu", batch_size=4))
    asked = [
        Request(
            "a",
            GenerationSettings(max_tokens=20, logprobs=True),
            messages=(Message("user", "Name a fruit."),),
        ),
        Request(
            "b", GenerationSettings(max_tokens=20, logprobs=True), messages=(Message("user", "Count to 30."),)
        ),
    ]
    plain = [replace(r, settings=replace(r.settings, logprobs=False)) for r in asked]
    stopped = [replace(r, settings=replace(r.settings, stop=(" ",))) for r in asked]
    with_lp = asyncio.run(adapter.generate(asked))
    without = asyncio.run(adapter.generate(plain))
    cut = asyncio.run(adapter.generate(stopped))
    assert [c.texts for c in with_lp] == [c.texts for c in without]  # generation is unchanged
    assert all(c.logprobs == () for c in without)
    model, tok = adapter._load()
    for request, completion in zip(asked, with_lp, strict=True):
        block = completion.logprobs[0]
        assert block is not None and len(block.logprobs) == completion.completion_tokens
        assert all(0 <= at <= len(completion.text) for at in block.offsets)
        prompt_ids = tok(render_chat(tok, request), add_special_tokens=False)["input_ids"]
        new_ids = tok(completion.text, add_special_tokens=False)["input_ids"][: len(block.logprobs)]
        with torch.inference_mode():
            logits = model(torch.tensor([prompt_ids + new_ids])).logits[0].float()
        expected = torch.log_softmax(logits[len(prompt_ids) - 1 : -1], dim=-1)
        forced = [float(expected[i, t]) for i, t in enumerate(new_ids)]
        assert max(abs(a - b) for a, b in zip(block.logprobs, forced, strict=False)) < 1e-3
    for full, short in zip(with_lp, cut, strict=True):
        kept = short.logprobs[0]
        assert kept is not None and short.text == full.text[: len(short.text)]
        assert all(at < len(short.text) for at in kept.offsets)
        assert kept.logprobs == full.logprobs[0].logprobs[: len(kept.logprobs)]  # type: ignore[union-attr]


# --- vLLM (its real types: vllm/logprobs.py Logprob; CompletionOutput.logprobs) ----------------------


@dataclass
class Logprob:  # vllm/logprobs.py: logprob, rank (>= 1), decoded_token
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:  # vllm/outputs.py, the fields the adapter reads
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = None
    logprobs: Any = None
    finish_reason: str | None = "stop"


@dataclass
class RequestOutput:
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)


def test_vllm_sampling_params_ask_for_the_sampled_token_only() -> None:
    from tests.unit.test_vllm_adapter import REAL_SAMPLING_PARAMS

    asked = sampling_plan(GenerationSettings(max_tokens=8, logprobs=True)).kwargs
    assert asked["logprobs"] == 0 and set(asked) <= REAL_SAMPLING_PARAMS
    assert "logprobs" not in sampling_plan(GenerationSettings(max_tokens=8)).kwargs


def test_vllm_outputs_give_logprobs_by_decoding_token_ids() -> None:
    pieces = {1: "The", 2: " answer", 3: " is", 4: " 4", 5: "\n\n", 6: "Q"}

    def decode(ids: list[int]) -> str:
        return "".join(pieces[i] for i in ids)

    ids = [1, 2, 3, 4, 5, 6]  # vLLM keeps the stop string's tokens; the text is cut before it
    positions = [{t: Logprob(-t / 10, rank=1, decoded_token=pieces[t]), 99: Logprob(-9.0)} for t in ids]
    choice = CompletionOutput(0, "The answer is 4", ids, logprobs=positions)
    completion = completion_from_outputs([RequestOutput([7, 8], [choice])], 0.5, CAP, decode)
    assert completion.logprobs == (TokenLogprobs((-0.1, -0.2, -0.3, -0.4), (0, 3, 10, 13)),)
    by_strings = vllm_sampled_logprobs(choice, CAP)  # no tokenizer: the decoded_token strings
    assert by_strings == completion.logprobs[0]
    assert completion_from_outputs([RequestOutput([7], [choice])], 0.5).logprobs == ()  # not asked
    missing = replace(choice, logprobs=[{99: Logprob(-1.0)}] * len(ids))  # the sampled token absent
    assert vllm_sampled_logprobs(missing, CAP, decode) is None
    assert vllm_sampled_logprobs(replace(choice, logprobs=None), CAP, decode) is None
    assert vllm_sampled_logprobs(replace(choice, logprobs=positions[:2]), CAP, decode) is None


def test_vllm_adapter_through_the_standin_sends_logprobs_0_and_places_them(
    standin_path: Path,  # noqa: F811 (the fixtures of tests/unit/test_vllm_adapter.py, imported above)
    model_dir: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stand-in (tests/unit/test_vllm_adapter.py) decodes nothing; its outputs get each sampled token's
    Logprob here, as real vLLM fills CompletionOutput.logprobs when SamplingParams(logprobs=0) asks."""
    import sys

    from adapters import AdapterOptions, create_adapter

    adapter = create_adapter(parse_checkpoint(f"vllm:{model_dir}"), AdapterOptions())
    chat = (Message("user", "What is 6 times 7?"),)
    requests = [Request("lp", GenerationSettings(max_tokens=64, logprobs=True), messages=chat),
                Request("plain", GenerationSettings(max_tokens=64), messages=chat)]  # fmt: skip
    import vllm  # the stand-in, on the path from standin_path

    original = vllm.LLM.generate

    def with_logprobs(self: Any, prompts: Any, params: Any = None, **kwargs: Any) -> Any:
        results = original(self, prompts, params, **kwargs)
        for result, sp in zip(results, params, strict=True):
            for choice in result.outputs:
                if sp.kwargs.get("logprobs") is not None:
                    choice.logprobs = [{t: Logprob(-0.25, rank=1)} for t in choice.token_ids]
        return results

    monkeypatch.setattr(vllm.LLM, "generate", with_logprobs)
    asked, plain = asyncio.run(adapter.generate(requests))
    sent = next(call["sampling"] for call in sys.modules["vllm"].CALLS if call["call"] == "generate")
    assert sent[0]["logprobs"] == 0 and "logprobs" not in sent[1]
    block = asked.logprobs[0]
    assert plain.logprobs == () and block is not None and len(block.logprobs) == asked.completion_tokens
    assert set(block.logprobs) == {-0.25} and block.offsets[0] == 0 and block.offsets[-1] < len(asked.text)


# --- Tinker (the installed SDK's SampledSequence, through the stand-in service) ---------------------


def test_tinker_sampled_logprobs_are_placed_in_the_text(
    monkeypatch: pytest.MonkeyPatch, exported_hf_dir: Path
) -> None:
    tinker = pytest.importorskip("tinker")
    import numpy as np

    from adapters.tinker import TinkerAdapter
    from adapters.tinker_renderers import RENDERER_ENV, TOKENIZER_ENV
    from harness.checkpoints import TinkerBaseRef
    from harness.pricing import load_price_table
    from tests.support.tinker_standin import StandinSamplingClient, StandinServiceClient, standin_factory

    class WithLogprobs(StandinSamplingClient):
        def _sequence(self, text: str, params: Any) -> Any:
            seq = super()._sequence(text, params)
            values = -np.linspace(0.1, 1.0, len(seq.tokens), dtype=np.float32)
            return tinker.SampledSequence(stop_reason=seq.stop_reason, sequence_id=seq.sequence_id,
                                          tokens_np=seq.tokens_np, logprobs_np=values)  # fmt: skip

    monkeypatch.setenv("TINKER_API_KEY", "tml-standin-not-a-real-key")
    monkeypatch.setenv(TOKENIZER_ENV, str(exported_hf_dir))
    monkeypatch.setenv(RENDERER_ENV, "qwen3_instruct")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(exported_hf_dir)
    service = StandinServiceClient(
        WithLogprobs("Qwen/Qwen3-8B", tok, responder=lambda prompt, i: "The answer is 4.")
    )
    ref = parse_checkpoint("tinker-base:Qwen/Qwen3-8B")
    assert isinstance(ref, TinkerBaseRef)

    async def go(request: Request) -> Completion:
        adapter = TinkerAdapter(ref, prices=load_price_table(None), service_factory=standin_factory(service))
        try:
            return (await adapter.generate([request]))[0]
        finally:
            await adapter.aclose()

    messages = (Message("user", "Say: the answer is 4"),)
    asked = asyncio.run(go(Request("t", GenerationSettings(max_tokens=64, logprobs=True), messages=messages)))
    plain = asyncio.run(go(Request("t", GenerationSettings(max_tokens=64), messages=messages)))
    block = asked.logprobs[0]
    assert plain.logprobs == () and asked.texts == plain.texts
    assert block is not None and len(block.logprobs) == asked.completion_tokens
    assert asked.text == "The answer is 4." and block.logprobs[0] == pytest.approx(-0.1)
    assert block.offsets[:3] == (0, 3, 10) and all(at <= len(asked.text) for at in block.offsets)


# --- Records and replay -------------------------------------------------------------------------------


def test_record_round_trip_and_replay_keep_the_logprobs(tmp_path: Path) -> None:
    block = TokenLogprobs((-0.123456, -2.0), (0, 3))
    completion = Completion(("abc d", "x"), ("stop", "stop"), logprobs=(block, None))
    back = Completion.from_record(json.loads(json.dumps(completion.to_record())))
    assert back.logprobs == (TokenLogprobs((-0.1235, -2.0), (0, 3)), None)
    path = tmp_path / "replay.jsonl"
    row = {"sample_id": "s1", "texts": ["abc d", "x"], "logprobs": completion.to_record()["logprobs"]}
    path.write_text(json.dumps(row) + "\n")
    replayed = asyncio.run(ReplayAdapter(str(path)).generate([chat_request(True, n=2)]))[0]
    assert replayed.logprobs == back.logprobs
    for bad in ([{"lp": [-0.1], "at": [9]}, None], [{"lp": [0.5], "at": [0]}, None], [None]):
        path.write_text(json.dumps({**row, "logprobs": bad}) + "\n")
        with pytest.raises(DataError, match="logprobs"):
            ReplayAdapter(str(path))


class _UnreadableContext:
    def get_logits_ith(self, row: int) -> Any:
        raise RuntimeError("a llama-cpp-python whose internals moved")


class _FakeLlama:
    """What SampledLogprobs touches on a Llama: its sample(), n_tokens, n_vocab() and _ctx."""

    n_tokens = 5
    _ctx = _UnreadableContext()

    def sample(self, idx: int | None = None) -> int:
        return 7

    def n_vocab(self) -> int:
        return 10

    def detokenize(self, ids: list[int]) -> bytes:
        return b"x" * len(ids)


def test_llama_cpp_recorder_that_cannot_read_logits_decodes_on_without_logprobs() -> None:
    from adapters.llama_cpp import SampledLogprobs

    llm = _FakeLlama()
    with SampledLogprobs(llm) as recorder:
        assert [llm.sample(idx=5), llm.sample(idx=6)] == [7, 7]  # decoding is unchanged
    assert "sample" not in vars(llm)  # the instance's own sample is restored
    assert recorder.fitted("xx", completion_tokens=2, max_tokens=8) is None
