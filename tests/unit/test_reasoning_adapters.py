"""What each backend adapter hands the reasoning parser (harness.reasoning): the server's separate thinking
and its token count (OpenAI-compatible replies, replay files, Tinker's renderer), whether the rendered
prompt ended inside an open think tag (local chat templates), and thinking turned off for a budget of 0."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from adapters.openai_compat import OpenAICompatAdapter
from adapters.openai_replies import MalformedReply, parse_completion
from adapters.options import opens_thinking
from adapters.replay import ReplayAdapter, parse_replay_row
from harness.checkpoints import EndpointRef, parse_checkpoint
from harness.errors import DataError
from harness.types import Completion, GenerationSettings, Message, Request

# A Qwen3/R1-distill style template: the generation prompt opens the think block unless thinking is off,
# in which case it writes an empty one (what Qwen3's template does for enable_thinking=False).
THINK_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% else %}<think>\n{% endif %}{% endif %}"
)
MESSAGES = (Message("user", "What is 2+2?"),)


def chat_request(thinking_budget: int | None = None, n: int = 1) -> Request:
    settings = GenerationSettings(max_tokens=64, n=n, thinking_budget=thinking_budget)
    return Request("s1", settings, messages=MESSAGES)


def body(message: dict[str, Any] | None = None, usage: dict[str, Any] | None = None, **choice: Any) -> bytes:
    first = {"index": 0, "message": {"role": "assistant", "content": "It is 4.", **(message or {})}, **choice}
    return json.dumps(
        {"choices": [first], "usage": usage or {"prompt_tokens": 3, "completion_tokens": 5}}
    ).encode()


# -- OpenAI-compatible replies -------------------------------------------------------------------


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])
def test_either_reasoning_field_becomes_the_completions_reasoning(key: str) -> None:
    completion = parse_completion(body({key: "2 and 2 make 4"}), "chat", 1, 0.0)
    assert completion.texts == ("It is 4.",)
    assert completion.reasonings == ("2 and 2 make 4",)
    assert completion.to_record()["reasonings"] == ["2 and 2 make 4"]


def test_reasoning_content_wins_over_reasoning_and_null_falls_through() -> None:
    both = parse_completion(body({"reasoning_content": "old name", "reasoning": "new name"}), "chat", 1, 0.0)
    assert both.reasonings == ("old name",)
    null_first = parse_completion(body({"reasoning_content": None, "reasoning": "new name"}), "chat", 1, 0.0)
    assert null_first.reasonings == ("new name",)


def test_a_server_without_reasoning_fields_gives_the_same_record_as_before() -> None:
    completion = parse_completion(body(usage={"prompt_tokens": 3, "completion_tokens": 5}), "chat", 1, 0.25)
    assert completion.reasonings == () and completion.reasoning_tokens is None
    assert completion.to_record() == {
        "texts": ["It is 4."], "finish_reasons": ["unknown"], "prompt_tokens": 3, "completion_tokens": 5,
        "latency_s": 0.25, "cost_usd": 0.0,
    }  # fmt: skip


def test_only_thinking_with_null_content_is_an_empty_answer() -> None:
    raw = body({"content": None, "reasoning": "still thinking"}, finish_reason="length")
    completion = parse_completion(raw, "chat", 1, 0.0)
    assert completion.texts == ("",) and completion.reasonings == ("still thinking",)
    assert completion.finish_reasons == ("length",)
    with pytest.raises(MalformedReply, match="'content' of type null"):
        parse_completion(body({"content": None, "reasoning": None}), "chat", 1, 0.0)


def test_reasoning_tokens_are_read_from_the_usage_details() -> None:
    usage = {
        "prompt_tokens": 3,
        "completion_tokens": 50,
        "completion_tokens_details": {"reasoning_tokens": 42},
    }
    assert parse_completion(body(usage=usage), "chat", 1, 0.0).reasoning_tokens == 42
    openai_plain = {
        "completion_tokens": 5,
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }
    plain = parse_completion(body(usage=openai_plain), "chat", 1, 0.0)
    assert plain.reasoning_tokens is None and "reasoning_tokens" not in plain.to_record()


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (body({"reasoning_content": 7}), "'reasoning_content' of type int, not a string"),
        (body({"reasoning": {"text": "x"}}), "'reasoning' of type dict, not a string"),
        (body({"reasoning": ["x"]}), "'reasoning' of type list, not a string"),
        (b'{"choices": [{"message": {"content": "a", "reasoning": "\\ud800"}}]}', "lone UTF-16 surrogate"),
        (body(usage={"completion_tokens_details": {"reasoning_tokens": -1}}), "reasoning_tokens is -1"),
        (body(usage={"completion_tokens_details": {"reasoning_tokens": "9"}}), "reasoning_tokens is '9'"),
        (body(usage={"completion_tokens_details": {"reasoning_tokens": True}}), "reasoning_tokens is True"),
        (body(usage={"completion_tokens_details": [1]}), "completion_tokens_details is list, not an object"),
    ],
)
def test_hostile_reasoning_fields_are_malformed_replies(raw: bytes, needle: str) -> None:
    with pytest.raises(MalformedReply, match=needle.replace("(", r"\(")):
        parse_completion(raw, "chat", 1, 0.0)


def test_text_completions_have_no_reasoning_field() -> None:
    raw = json.dumps({"choices": [{"index": 0, "text": "4", "reasoning_content": "x"}]}).encode()
    assert parse_completion(raw, "text", 1, 0.0).reasonings == ()


def endpoint(api: str = "chat") -> OpenAICompatAdapter:
    ref = parse_checkpoint(f"http://127.0.0.1:9/v1#m{'?api=text' if api == 'text' else ''}")
    assert isinstance(ref, EndpointRef)
    return OpenAICompatAdapter(ref)


@pytest.mark.parametrize(("budget", "sent"), [(None, None), (0, {"enable_thinking": False}), (512, None)])
def test_only_a_zero_budget_adds_the_thinking_switch_to_chat_requests(budget: int | None, sent: Any) -> None:
    payload = endpoint()._payload(chat_request(budget))
    assert payload.get("chat_template_kwargs") == sent
    assert set(payload) - {"chat_template_kwargs"} == {
        "model",
        "max_tokens",
        "temperature",
        "top_p",
        "seed",
        "messages",
    }
    text = Request("s1", GenerationSettings(max_tokens=8, thinking_budget=0), prompt="2+2=")
    assert "chat_template_kwargs" not in endpoint("text")._payload(text)


def test_split_n_requests_merge_their_reasonings_and_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = endpoint()
    parts = iter([
        Completion(("a",), ("stop",), 1, 5, reasonings=("think a",), reasoning_tokens=3),
        Completion(("b",), ("stop",), 1, 6, reasonings=(), reasoning_tokens=4),
    ])  # fmt: skip

    async def once(request: Request) -> Completion:
        return next(parts)

    monkeypatch.setattr(adapter, "_send_once", once)
    merged = asyncio.run(adapter._send_split(chat_request(n=2)))
    assert merged.texts == ("a", "b") and merged.reasonings == ("think a", None)
    assert merged.reasoning_tokens == 7 and merged.completion_tokens == 11


# -- local chat templates ----------------------------------------------------------------------------


def test_opens_thinking_looks_at_the_end_of_the_prompt_only() -> None:
    assert opens_thinking("<|im_start|>assistant\n<think>\n", "<think>")
    assert not opens_thinking("<|im_start|>assistant\n<think>\n\n</think>\n\n", "<think>")
    assert not opens_thinking("say <think> then answer\n<|im_start|>assistant\n", "<think>")
    assert not opens_thinking("anything<think>", "")


def test_llama_cpp_renders_the_gguf_template_with_the_thinking_switch() -> None:
    pytest.importorskip("llama_cpp")
    from adapters.llama_cpp import render_chat_template

    opened = render_chat_template(THINK_TEMPLATE, MESSAGES)
    assert opened.endswith("<|im_start|>assistant\n<think>\n") and opens_thinking(opened, "<think>")
    off = render_chat_template(THINK_TEMPLATE, MESSAGES, thinking_off=True)
    assert off.endswith("<think>\n\n</think>\n\n") and not opens_thinking(off, "<think>")


def test_llama_cpp_adapter_flags_only_templates_that_open_thinking(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from adapters.llama_cpp import LlamaCppAdapter

    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 64)
    adapter = LlamaCppAdapter(model, "gguf:m.gguf", think_open_tag="<think>")
    adapter._template = (THINK_TEMPLATE, "", "<|im_end|>")  # what _load() reads from the GGUF's metadata
    assert adapter._thinking(chat_request()) == (True, False)
    assert adapter._thinking(chat_request(thinking_budget=0)) == (False, True)
    chatml = "{% for m in messages %}{{ m['content'] }}{% endfor %}<|im_start|>assistant\n"
    adapter._template = (chatml, "", "")  # SmolLM2-like: no think tag, no switch: the unchanged path
    assert adapter._thinking(chat_request(thinking_budget=0)) == (False, False)
    adapter._template = None  # a built-in chat format, not the GGUF's Jinja template
    assert adapter._thinking(chat_request()) == (False, False)


def test_llama_cpp_thinking_off_goes_through_the_same_chat_handler() -> None:
    """The embedded model (SmolLM2, ChatML: no think tag) with its template marked as reading the switch:
    the budget-0 path calls create_chat_completion's own handler, so greedy output is the same."""
    pytest.importorskip("llama_cpp")
    from adapters.llama_cpp import DEFAULT_N_CTX, LlamaCppAdapter, embedded_gguf_path

    adapter = LlamaCppAdapter(embedded_gguf_path(), "embedded", n_ctx=DEFAULT_N_CTX)

    async def go() -> tuple[Completion, Completion]:
        try:
            [plain] = await adapter.generate([chat_request()])
            assert adapter._template is None  # no think tag, no switch: the unchanged path
            assert plain.opened_in_prompt is False
            template = str(adapter._load().metadata["tokenizer.chat_template"])
            adapter._template = (template + "{# enable_thinking #}", "", "")
            assert adapter._thinking(chat_request(thinking_budget=0)) == (False, True)
            [off] = await adapter.generate([chat_request(thinking_budget=0)])
            return plain, off
        finally:
            await adapter.aclose()

    plain, off = asyncio.run(go())
    assert off.texts == plain.texts and off.completion_tokens == plain.completion_tokens
    assert off.prompt_tokens == plain.prompt_tokens


def tiny_tokenizer(template: str) -> Any:
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    )
    tokenizer.chat_template = template
    return tokenizer


def test_hf_and_vllm_pass_enable_thinking_false_through_transformers_templates() -> None:
    from adapters.hf import render_chat
    from adapters.vllm import chat_prompt_text

    tokenizer = tiny_tokenizer(THINK_TEMPLATE)
    assert render_chat(tokenizer, chat_request()).endswith("assistant\n<think>\n")
    assert render_chat(tokenizer, chat_request(thinking_budget=512)).endswith("assistant\n<think>\n")
    assert render_chat(tokenizer, chat_request(thinking_budget=0)).endswith("<think>\n\n</think>\n\n")
    assert chat_prompt_text(tokenizer, MESSAGES).endswith("assistant\n<think>\n")
    assert chat_prompt_text(tokenizer, MESSAGES, thinking_off=True).endswith("<think>\n\n</think>\n\n")


# -- replay files ----------------------------------------------------------------------------------


def test_replay_rows_carry_reasoning_and_token_counts() -> None:
    sample_id, response = parse_replay_row(
        {
            "sample_id": 7,
            "text": "It is 4.",
            "reasoning": "2+2",
            "completion_tokens": 9,
            "reasoning_tokens": 5,
        }
    )
    assert sample_id == "7"
    completion = response.completion(1)
    assert completion.texts == ("It is 4.",) and completion.reasonings == ("2+2",)
    assert completion.completion_tokens == 9 and completion.reasoning_tokens == 5
    _, several = parse_replay_row({"sample_id": "x", "texts": ["a", "b"], "reasonings": ["r", None]})
    assert several.completion(3).reasonings == ("r", None, "r")  # n > stored: repeated with their texts
    _, plain = parse_replay_row({"sample_id": "x", "text": "a"})
    assert plain.completion(2).to_record() == Completion(("a", "a"), ("stop", "stop")).to_record()


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        ({"text": "a", "reasoning": 3}, "'reasoning' must be a string"),
        ({"texts": ["a"], "reasonings": "r"}, "'reasonings' a list of strings or nulls"),
        ({"texts": ["a", "b"], "reasonings": ["r"]}, "'reasonings' has 1 entries for 2 texts"),
        ({"texts": ["a"], "reasoning": "r"}, "beside 'texts' give 'reasonings'"),
        ({"text": "a", "reasoning": "r", "reasonings": ["r"]}, "not both"),
        ({"text": "a", "completion_tokens": "9"}, "'completion_tokens' must be a whole number >= 0, not '9'"),
        ({"text": "a", "reasoning_tokens": -2}, "'reasoning_tokens' must be a whole number >= 0, not -2"),
        ({"text": "a", "reasoning_tokens": 1.5}, "'reasoning_tokens' must be a whole number"),
        ({"text": "a", "reasoning_tokens": False}, "'reasoning_tokens' must be a whole number"),
    ],
)
def test_replay_reasoning_fields_of_the_wrong_type_name_the_line(
    tmp_path: Path, row: dict[str, Any], needle: str
) -> None:
    path = tmp_path / "replay.jsonl"
    good = json.dumps({"sample_id": "ok", "text": "fine"})
    path.write_text(good + "\n" + json.dumps({"sample_id": "bad", **row}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"{path}:2 is not a replay record") as raised:
        ReplayAdapter(str(path))
    assert needle in str(raised.value)


def test_replay_adapter_answers_with_the_stored_reasoning(tmp_path: Path) -> None:
    path = tmp_path / "replay.jsonl"
    path.write_text(json.dumps({"sample_id": "s1", "text": "4", "reasoning": "2+2"}) + "\n", encoding="utf-8")
    [completion] = asyncio.run(ReplayAdapter(str(path)).generate([chat_request()]))
    assert (
        completion.texts == ("4",)
        and completion.reasonings == ("2+2",)
        and completion.reasoning_tokens is None
    )


# -- Tinker (the service is a stand-in: tests/support/tinker_standin.py) ------------------------------


@pytest.fixture(scope="module")
def chatml_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2's ChatML tokenizer (from the embedded GGUF), saved: the Qwen3 renderers fit any ChatML one."""
    pytest.importorskip("gguf")
    pytest.importorskip("tinker")
    from transformers import AutoTokenizer

    from adapters.llama_cpp import embedded_gguf_path

    gguf = embedded_gguf_path()
    folder = tmp_path_factory.mktemp("chatml-tokenizer")
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(folder)
    return folder


@pytest.fixture
def chatml_tokenizer(chatml_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from transformers import AutoTokenizer

    from adapters.tinker_renderers import RENDERER_ENV, TOKENIZER_ENV

    monkeypatch.setenv(TOKENIZER_ENV, str(chatml_dir))
    monkeypatch.setenv(RENDERER_ENV, "qwen3")
    return AutoTokenizer.from_pretrained(chatml_dir)


def tinker_generate(
    tokenizer: Any, request: Request, think_open_tag: str = "<think>"
) -> tuple[Completion, str]:
    """(the completion, the prompt text the stand-in service saw) for one request on the qwen3 renderer."""
    from adapters.tinker import TinkerAdapter
    from harness.checkpoints import TinkerBaseRef
    from harness.pricing import load_price_table
    from tests.support.tinker_standin import StandinSamplingClient, StandinServiceClient, standin_factory

    thought = "<think>\nMaybe 5? No: 2 and 2.\n</think>\n\nThe answer is 4."
    service = StandinServiceClient(StandinSamplingClient("Qwen/Qwen3-8B", tokenizer, lambda p, i: thought))
    ref = parse_checkpoint("tinker-base:Qwen/Qwen3-8B")
    assert isinstance(ref, TinkerBaseRef)
    adapter = TinkerAdapter(
        ref,
        prices=load_price_table(None),
        service_factory=standin_factory(service),
        think_open_tag=think_open_tag,
    )

    async def go() -> list[Completion]:
        try:
            return await adapter.generate([request])
        finally:
            await adapter.aclose()

    [completion] = asyncio.run(go())
    [call] = service.sampling_client.calls
    return completion, call.prompt_text


def test_tinker_keeps_the_thinking_the_renderer_leaves_out(chatml_tokenizer: Any) -> None:
    completion, prompt = tinker_generate(chatml_tokenizer, chat_request())
    assert prompt.endswith("<|im_start|>assistant\n")
    assert completion.texts == ("The answer is 4.",)  # as before: parse_response's text
    assert completion.reasonings == ("Maybe 5? No: 2 and 2.",)
    assert completion.opened_in_prompt is False


def test_tinker_thinking_budget_zero_renders_with_qwen3_disable_thinking(chatml_tokenizer: Any) -> None:
    _, prompt = tinker_generate(chatml_tokenizer, chat_request(thinking_budget=0))
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    _, with_budget = tinker_generate(chatml_tokenizer, chat_request(thinking_budget=256))
    assert with_budget.endswith("<|im_start|>assistant\n")


def test_tinker_flags_a_prompt_that_ends_with_the_open_tag(chatml_tokenizer: Any) -> None:
    # No Tinker renderer opens the block in the prompt; a tag that the qwen3 prompt does end with shows the
    # check reads the prompt's decoded end.
    completion, _ = tinker_generate(chatml_tokenizer, chat_request(), think_open_tag="assistant")
    assert completion.opened_in_prompt is True


def test_qwen3_parse_reasoned_splits_a_finished_turn_only(chatml_tokenizer: Any) -> None:
    pytest.importorskip("tinker")
    from adapters.tinker_renderers import Renderer

    im_end = chatml_tokenizer.convert_tokens_to_ids("<|im_end|>")
    tokens = chatml_tokenizer.encode("<think>\nadd\n</think>\n\nIt is 4.", add_special_tokens=False)
    renderer = Renderer("qwen3", chatml_tokenizer)
    assert renderer.parse_reasoned([*tokens, im_end]) == ("It is 4.", "add", True)
    assert renderer.parse_response([*tokens, im_end]) == ("It is 4.", True)
    truncated = renderer.parse_reasoned(tokens)
    assert truncated[1] is None and "<think>" in truncated[0] and truncated[2] is False  # kept whole
    empty = chatml_tokenizer.encode("<think>\n\n</think>\n\nIt is 4.", add_special_tokens=False)
    assert renderer.parse_reasoned([*empty, im_end]) == ("It is 4.", None, True)
