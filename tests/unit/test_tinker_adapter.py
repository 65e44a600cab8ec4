"""The Tinker adapter against an in-process STAND-IN for the service (tests/support/tinker_standin.py),
which builds its answers from the installed SDK's real types; plus the real SDK against an unreachable
loopback service, and the CLI: --max-cost refusal, missing key, a full GSM8K run with its cost.

The tokenizer is the embedded SmolLM2 model's (ChatML), converted from its GGUF by transformers, so the
Qwen3/ChatML renderers run on a real tokenizer; Llama-3 prompts use it with the Llama-3 chat tokens added.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

tinker = pytest.importorskip("tinker")

from adapters import AdapterOptions, tinker_service  # noqa: E402
from adapters.tinker import TinkerAdapter, create_tinker_adapter  # noqa: E402
from adapters.tinker_renderers import RENDERER_ENV, TOKENIZER_ENV, Renderer, renderer_name_for  # noqa: E402
from harness.checkpoints import TinkerBaseRef, TinkerRef, parse_checkpoint  # noqa: E402
from harness.cli import main  # noqa: E402
from harness.errors import EndpointError, UsageError  # noqa: E402
from harness.pricing import load_price_table  # noqa: E402
from harness.types import GenerationSettings, Message, Request  # noqa: E402
from tests.conftest import DATA_DIR, cli_env, harness  # noqa: E402
from tests.support.tinker_standin import (  # noqa: E402
    StandinSamplingClient,
    StandinServiceClient,
    standin_factory,
)

QWEN_PRICE = (0.195, 0.60)  # built-in Qwen/Qwen3-8B prices, USD per 1M prompt / sampled tokens


@pytest.fixture(scope="session")
def chatml_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("gguf")
    from transformers import AutoTokenizer

    from adapters.llama_cpp import embedded_gguf_path

    gguf = embedded_gguf_path()
    folder = tmp_path_factory.mktemp("smollm2-tokenizer")
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tokenizer(chatml_tokenizer_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(chatml_tokenizer_dir)


@pytest.fixture
def tinker_env(monkeypatch: pytest.MonkeyPatch, chatml_tokenizer_dir: Path) -> None:
    monkeypatch.setenv("TINKER_API_KEY", "tml-standin-not-a-real-key")
    monkeypatch.setenv(TOKENIZER_ENV, str(chatml_tokenizer_dir))
    monkeypatch.setenv(RENDERER_ENV, "qwen3_instruct")  # SmolLM2 speaks ChatML, like Qwen3


def standin(tokenizer: Any, base_model: str = "Qwen/Qwen3-8B", **kwargs: Any) -> StandinServiceClient:
    mode = kwargs.pop("mode", "ok")
    return StandinServiceClient(StandinSamplingClient(base_model, tokenizer, **kwargs), mode=mode)


def adapter_for(
    service: StandinServiceClient, ref: str = "tinker-base:Qwen/Qwen3-8B", **kwargs: Any
) -> TinkerAdapter:
    parsed = parse_checkpoint(ref)
    assert isinstance(parsed, TinkerRef | TinkerBaseRef)
    prices = kwargs.pop("prices", None) or load_price_table(None)
    return TinkerAdapter(parsed, prices=prices, service_factory=standin_factory(service), **kwargs)


def chat(text: str, **settings: Any) -> Request:
    settings.setdefault("max_tokens", 64)
    messages = (Message("system", "Be brief."), Message("user", text))
    return Request("s1", GenerationSettings(**settings), messages=messages)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def generate(adapter: TinkerAdapter, *requests: Request) -> list[Any]:
    async def go() -> list[Any]:
        try:
            return await adapter.generate(list(requests))
        finally:
            await adapter.aclose()

    return list(run(go()))


# -- the stand-in is held to the SDK ------------------------------------------------------------


@pytest.mark.parametrize(
    ("standin_method", "sdk_method"),
    [
        (StandinServiceClient.create_sampling_client, tinker.ServiceClient.create_sampling_client),
        (StandinServiceClient.close, tinker.ServiceClient.close),
        (StandinSamplingClient.sample, tinker.SamplingClient.sample),
        (StandinSamplingClient.get_base_model, tinker.SamplingClient.get_base_model),
    ],
)
def test_standin_signatures_match_the_installed_sdk(standin_method: Any, sdk_method: Any) -> None:
    def shape(fn: Any) -> list[tuple[str, Any, Any]]:
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]

    assert shape(standin_method) == shape(sdk_method)


def test_standin_answers_with_the_sdk_types(tinker_env: None, tokenizer: Any) -> None:
    service = standin(tokenizer)
    adapter = adapter_for(service)
    generate(adapter, chat("hi"))
    call = service.sampling_client.calls[0]
    assert type(call.prompt) is tinker.ModelInput and type(call.sampling_params) is tinker.SamplingParams
    response = run(service.sampling_client._run("x", 1, call.sampling_params))
    assert type(response) is tinker.SampleResponse and type(response.sequences[0]) is tinker.SampledSequence


# -- request mapping -----------------------------------------------------------------------------


def test_prompt_and_sampling_params_are_mapped_exactly(tinker_env: None, tokenizer: Any) -> None:
    service = standin(tokenizer, responder=lambda prompt, i: "The answer is 4.")
    adapter = adapter_for(service)
    [completion] = generate(adapter, chat("What is 2+2?", max_tokens=33, temperature=0.7, top_p=0.9, seed=7))
    assert service.created_with == [{"model_path": None, "base_model": "Qwen/Qwen3-8B"}]
    assert service.closed == ["success"]
    [call] = service.sampling_client.calls
    assert call.prompt_text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    )
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert call.num_samples == 1
    assert call.sampling_params.model_dump() == {
        "max_tokens": 33, "seed": 7, "stop": [im_end], "temperature": 0.7, "top_k": -1, "top_p": 0.9,
    }  # fmt: skip
    assert completion.texts == ("The answer is 4.",) and completion.finish_reasons == ("stop",)
    assert adapter.identity() == "tinker:tinker-base:Qwen/Qwen3-8B#renderer=qwen3_instruct"


def test_sampler_checkpoint_uses_model_path_and_its_base_model(
    tinker_env: None, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(RENDERER_ENV)
    service = standin(tokenizer, base_model="Qwen/Qwen3-4B-Instruct-2507")
    adapter = adapter_for(service, "tinker://run-42/sampler_weights/000080")
    assert adapter.identity() == "tinker:tinker://run-42/sampler_weights/000080#renderer=auto"
    generate(adapter, chat("hi"))
    assert service.created_with == [
        {"model_path": "tinker://run-42/sampler_weights/000080", "base_model": None}
    ]
    assert adapter.priced_model() == "Qwen/Qwen3-4B-Instruct-2507"
    assert adapter._ready_renderer().name == "qwen3_instruct"  # chosen from the base model the service named


def test_n_samples_are_one_request_with_num_samples(tinker_env: None, tokenizer: Any) -> None:
    service = standin(tokenizer, responder=lambda prompt, i: f"answer number {i}")
    [completion] = generate(adapter_for(service), chat("hi", n=3, temperature=0.8))
    [call] = service.sampling_client.calls
    assert call.num_samples == 3
    assert completion.texts == ("answer number 0", "answer number 1", "answer number 2")
    sampled = sum(
        len(tokenizer.encode(t, add_special_tokens=False)) + 1 for t in completion.texts
    )  # + <|im_end|>
    assert completion.completion_tokens == sampled


def test_concurrency_bound_is_honoured(tinker_env: None, tokenizer: Any) -> None:
    service = standin(tokenizer, delay_s=0.05)
    adapter = adapter_for(service, concurrency=3)
    completions = generate(adapter, *(chat(f"question {i}") for i in range(20)))
    assert len(completions) == 20 and len(service.sampling_client.calls) == 20
    assert service.sampling_client.max_in_flight == 3


# -- stop sequences ------------------------------------------------------------------------------


def test_stop_sequences(tinker_env: None, tokenizer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    service = standin(tokenizer, responder=lambda prompt, i: "A: 4\nQ: and 3+3?")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    # Renderer stop tokens go to the service; a request's stop strings are cut here (no mixed lists).
    [completion] = generate(adapter_for(service), chat("2+2?", stop=("Q:",)))
    assert service.sampling_client.calls[-1].sampling_params.stop == [im_end]
    assert completion.text == "A: 4\n"
    # A raw text prompt sends its stop strings; without any, the model's own EOS stops it.
    text = Request("s2", GenerationSettings(max_tokens=64, stop=("Q:",)), prompt="Q: 2+2?\nA:")
    [completion] = generate(adapter_for(service), text)
    assert service.sampling_client.calls[-1].sampling_params.stop == ["Q:"]
    assert completion.text == "A: 4\n"
    generate(adapter_for(service), Request("s3", GenerationSettings(max_tokens=64), prompt="Q: 2+2?\nA:"))
    assert service.sampling_client.calls[-1].sampling_params.stop is None
    # A renderer with string stops (role_colon) sends them together with the request's.
    monkeypatch.setenv(RENDERER_ENV, "role_colon")
    [completion] = generate(adapter_for(service), chat("2+2?", stop=("Q:",)))
    assert service.sampling_client.calls[-1].sampling_params.stop == ["\n\nUser:", "Q:"]
    assert completion.text == "A: 4\n"


def test_max_tokens_truncation_reports_length(tinker_env: None, tokenizer: Any) -> None:
    service = standin(tokenizer, responder=lambda prompt, i: "one two three four five six seven eight")
    [completion] = generate(adapter_for(service), chat("count", max_tokens=3))
    assert completion.finish_reasons == ("length",) and completion.completion_tokens == 3
    assert completion.text == tokenizer.decode(
        tokenizer.encode("one two three four", add_special_tokens=False)[:3]
    )


# -- renderers -----------------------------------------------------------------------------------


def test_renderer_choice_by_model_family(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RENDERER_ENV, raising=False)
    assert renderer_name_for("meta-llama/Llama-3.2-1B") == "llama3"
    assert renderer_name_for("meta-llama/Llama-3.1-8B-Instruct") == "llama3"
    assert renderer_name_for("Qwen/Qwen3-8B") == "qwen3"
    assert renderer_name_for("Qwen/Qwen3-30B-A3B-Instruct-2507") == "qwen3_instruct"
    assert renderer_name_for("Qwen/Qwen3-8B-Base") == "role_colon"
    with pytest.raises(
        UsageError, match=f"No renderer is known for the Tinker model 'acme/x'.*{RENDERER_ENV}"
    ):
        renderer_name_for("acme/x")
    monkeypatch.setenv(RENDERER_ENV, "role_colon")
    assert renderer_name_for("meta-llama/Llama-3.2-1B") == "role_colon"
    monkeypatch.setenv(RENDERER_ENV, "vicuna")
    with pytest.raises(UsageError, match=r"No renderer named 'vicuna'.*llama3, qwen3"):
        renderer_name_for("meta-llama/Llama-3.2-1B")


def test_llama3_and_role_colon_formats(tokenizer: Any) -> None:
    from transformers import AutoTokenizer

    llama = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    llama.add_special_tokens(
        {
            "additional_special_tokens": [
                "<|begin_of_text|>",
                "<|start_header_id|>",
                "<|end_header_id|>",
                "<|eot_id|>",
            ]
        }
    )
    messages = (Message("system", "Be brief."), Message("user", "Hi"))
    renderer = Renderer("llama3", llama)
    assert llama.decode(renderer.build_generation_prompt(messages).to_ints()) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    eot = llama.convert_tokens_to_ids("<|eot_id|>")
    assert renderer.get_stop_sequences() == [eot]
    assert renderer.parse_response([*llama.encode("Hello!", add_special_tokens=False), eot]) == (
        "Hello!",
        True,
    )
    assert renderer.parse_response(llama.encode("Hel", add_special_tokens=False)) == ("Hel", False)

    colon = Renderer("role_colon", tokenizer)
    prompt = tokenizer.decode(colon.build_generation_prompt(messages).to_ints())
    assert prompt == f"{tokenizer.bos_token}System: Be brief.\n\nUser: Hi\n\nAssistant:"
    answer = tokenizer.encode(" Hello!\n\nUser:", add_special_tokens=False)
    assert colon.parse_response(answer) == ("Hello!", True)
    with pytest.raises(UsageError, match="needs the special token <\\|eot_id\\|>"):
        Renderer("llama3", tokenizer)


def test_qwen3_thinking_is_left_out_of_the_text(tokenizer: Any) -> None:
    messages = (Message("user", "2+2?"),)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    answer = tokenizer.encode("<think>\nadd\n</think>\n\nIt is 4.", add_special_tokens=False)
    assert Renderer("qwen3", tokenizer).parse_response([*answer, im_end]) == ("It is 4.", True)
    assert Renderer("qwen3", tokenizer).parse_response(answer)[1] is False  # truncated: kept whole
    off = Renderer("qwen3_disable_thinking", tokenizer).build_generation_prompt(messages).to_ints()
    assert tokenizer.decode(off).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


# -- accounting ----------------------------------------------------------------------------------


def test_token_counts_and_cost(tinker_env: None, tokenizer: Any, tmp_path: Path) -> None:
    service = standin(tokenizer, responder=lambda prompt, i: "The answer is 4.")
    adapter = adapter_for(service)
    [completion] = generate(adapter, chat("What is 2+2?"))
    [call] = service.sampling_client.calls
    assert completion.prompt_tokens == call.prompt.length == len(call.prompt.to_ints()) > 10
    assert (
        completion.completion_tokens
        == len(tokenizer.encode("The answer is 4.", add_special_tokens=False)) + 1
    )
    expected = (completion.prompt_tokens * QWEN_PRICE[0] + completion.completion_tokens * QWEN_PRICE[1]) / 1e6
    assert completion.cost_usd == pytest.approx(expected) and completion.cost_usd > 0
    assert adapter.count_prompt_tokens(chat("What is 2+2?")) == completion.prompt_tokens

    table = tmp_path / "prices.json"
    table.write_text(json.dumps({"Qwen/Qwen3-8B": {"prompt": 100, "sample": 1000}}))
    ref = parse_checkpoint("tinker-base:Qwen/Qwen3-8B")
    assert isinstance(ref, TinkerBaseRef)
    custom = create_tinker_adapter(ref, AdapterOptions(price_table=str(table)))
    custom._service_factory = standin_factory(
        standin(tokenizer, responder=lambda prompt, i: "The answer is 4.")
    )
    [priced] = generate(custom, chat("What is 2+2?"))
    assert priced.cost_usd == pytest.approx(
        (priced.prompt_tokens * 100 + priced.completion_tokens * 1000) / 1e6
    )


def test_unpriced_model_costs_zero_with_a_warning(
    tinker_env: None, tokenizer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    service = standin(tokenizer, base_model="meta-llama/Llama-3.2-1B")
    with caplog.at_level(logging.WARNING, logger="harness.tinker"):
        [completion] = generate(adapter_for(service, "tinker://run-1/sampler_weights/final"), chat("hi"))
    assert completion.cost_usd == 0 and completion.prompt_tokens > 0
    assert "no price is known for meta-llama/Llama-3.2-1B" in caplog.text


# -- failures before and during work -------------------------------------------------------------


def test_missing_api_key_fails_before_any_work(tmp_path: Path) -> None:
    env = cli_env(HOME=str(tmp_path))  # no ~/.tinker/credentials.json there
    env.pop("TINKER_API_KEY", None)
    env.pop("TINKER_CREDENTIAL_CMD", None)
    out = tmp_path / "runs"
    proc = harness(
        "eval", "--checkpoint", "tinker-base:Qwen/Qwen3-8B", "--suite", "gsm8k", "--runs", str(out), env=env
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "harness: error: A Tinker checkpoint needs a Tinker API key, and TINKER_API_KEY is not set. "
        "export TINKER_API_KEY=tml-... (from the Tinker console), or run `tinker auth login`."
    ]
    assert not out.exists()
    env["TINKER_API_KEY"] = "sk-wrong-service"
    proc = harness("eval", "--checkpoint", "tinker-base:Qwen/Qwen3-8B", "--runs", str(out), env=env)
    assert proc.returncode == 2 and "does not look like a Tinker API key" in proc.stderr


def test_hanging_session_creation_times_out(tinker_env: None, tokenizer: Any) -> None:
    adapter = adapter_for(standin(tokenizer, mode="hang"), connect_timeout_s=0.3)
    start = time.monotonic()
    with pytest.raises(
        EndpointError, match=r"did not answer within 0\.3 s while creating the sampling session"
    ):
        generate(adapter, chat("hi"))
    assert time.monotonic() - start < 5


def test_sdk_errors_become_endpoint_errors(tinker_env: None, tokenizer: Any) -> None:
    adapter = adapter_for(standin(tokenizer, mode="not-found"), "tinker://run-1/sampler_weights/gone")
    with pytest.raises(EndpointError, match=r"failed while creating the sampling session .*not found"):
        generate(adapter, chat("hi"))


@pytest.fixture
def silent_service() -> Iterator[str]:
    """A loopback port that accepts connections and never answers: the service as seen offline."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_real_sdk_against_an_unreachable_service_times_out(
    silent_service: str, chatml_tokenizer_dir: Path, tmp_path: Path
) -> None:
    env = cli_env(
        TINKER_API_KEY="tml-not-a-real-key", TINKER_BASE_URL=silent_service,
        **{TOKENIZER_ENV: str(chatml_tokenizer_dir), RENDERER_ENV: "qwen3_instruct"},
    )  # fmt: skip
    start = time.monotonic()
    proc = harness("eval", "--checkpoint", "tinker-base:Qwen/Qwen3-8B", "--suite", "gsm8k", "--limit", "1",
                   "--timeout", "3", "--runs", str(tmp_path), env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "The Tinker service did not answer within 3 s while creating the sampling session" in proc.stderr
    assert time.monotonic() - start < 60  # the SDK alone retries for about six minutes


# -- the CLI, in process, with the stand-in injected ----------------------------------------------


@pytest.fixture
def injected(tinker_env: None, tokenizer: Any, monkeypatch: pytest.MonkeyPatch) -> StandinServiceClient:
    def gsm8k_model(prompt: str, index: int) -> str:
        question = prompt.rpartition("<|im_start|>user")[2]  # after the 8 worked examples
        return "Janet makes 18 dollars. The answer is 18." if "Janet" in question else "The answer is 7."

    service = standin(tokenizer, responder=gsm8k_model, delay_s=0.02)
    monkeypatch.setattr(tinker_service, "service_client_factory", standin_factory(service))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    return service


def eval_args(out: Path, *extra: str) -> list[str]:
    return [
        "eval",
        "--suite",
        "gsm8k",
        "--limit",
        "3",
        "--data-dir",
        str(DATA_DIR),
        "--runs",
        str(out),
        "--quiet",
        *extra,
    ]


def test_max_cost_refuses_to_start(injected: StandinServiceClient, tmp_path: Path, capsys: Any) -> None:
    code = main(
        eval_args(tmp_path, "--checkpoint", "tinker://run-1/sampler_weights/final", "--max-cost", "0.0001")
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("harness: error: Refusing to start: the estimated cost is at most $0.00")
    assert (
        "for 3 pending requests on Qwen/Qwen3-8B" in err
        and "upper bound" in err
        and "--max-cost is $0.0001" in err
    )
    assert injected.sampling_client.calls == []  # nothing was generated
    assert not list(tmp_path.rglob("samples.jsonl"))


def test_gsm8k_run_records_cost_and_estimate(
    injected: StandinServiceClient, tmp_path: Path, capsys: Any
) -> None:
    args = eval_args(
        tmp_path, "--checkpoint", "tinker://run-1/sampler_weights/final", "--max-cost", "1", "--json"
    )
    assert main(args) == 0, capsys.readouterr().err
    [result] = json.loads(capsys.readouterr().out)
    assert result["metrics"]["exact_match_flex"]["value"] == pytest.approx(1 / 3)  # Janet's ducks: 18
    manifest = json.loads((Path(result["run_dir"]) / "manifest.json").read_text())
    calls = injected.sampling_client.calls
    assert len(calls) == 3
    prompt_tokens = sum(c.prompt.length for c in calls)
    assert manifest["usage"]["prompt_tokens"] == prompt_tokens
    sampled = manifest["usage"]["completion_tokens"]
    assert manifest["usage"]["cost_usd"] == pytest.approx(
        (prompt_tokens * 0.195 + sampled * 0.60) / 1e6, abs=1e-6
    )
    estimate = manifest["invocations"][-1]["cost_estimate_usd"]
    assert estimate == pytest.approx((prompt_tokens * 0.195 + 3 * 512 * 0.60) / 1e6, abs=1e-6)
    assert estimate > manifest["usage"]["cost_usd"] > 0  # an upper bound
    assert manifest["adapter"] == "tinker:tinker://run-1/sampler_weights/final#renderer=qwen3_instruct"

    # Re-running finds everything done: nothing pending, so the service is not even contacted.
    assert main(args) == 0
    capsys.readouterr()
    assert len(injected.created_with) == 1 and len(injected.sampling_client.calls) == 3
    manifest = json.loads((Path(result["run_dir"]) / "manifest.json").read_text())
    assert manifest["invocations"][-1]["cost_estimate_usd"] == 0


def test_eval_keeps_concurrency_requests_in_flight(injected: StandinServiceClient, tmp_path: Path) -> None:
    args = eval_args(tmp_path, "--checkpoint", "tinker-base:Qwen/Qwen3-8B", "--concurrency", "4")
    args[args.index("--limit") + 1] = "12"
    assert main(args) == 0
    assert len(injected.sampling_client.calls) == 12 and injected.sampling_client.max_in_flight == 4


def test_unknown_price_needs_a_price_table(
    injected: StandinServiceClient, tmp_path: Path, capsys: Any
) -> None:
    injected.sampling_client.base_model = "meta-llama/Llama-3.2-1B"
    ref = ["--checkpoint", "tinker://run-1/sampler_weights/final"]
    assert main(eval_args(tmp_path, *ref, "--max-cost", "5")) == 2
    assert "No price is known for the Tinker model 'meta-llama/Llama-3.2-1B'" in capsys.readouterr().err
    table = tmp_path / "prices.json"
    table.write_text(json.dumps({"meta-llama/Llama-3.2-1B": {"prompt": 0.03, "sample": 0.09}}))
    assert main(eval_args(tmp_path, *ref, "--max-cost", "5", "--price-table", str(table), "--json")) == 0
    [result] = json.loads(capsys.readouterr().out)
    manifest = json.loads((Path(result["run_dir"]) / "manifest.json").read_text())
    usage = manifest["usage"]
    assert usage["cost_usd"] == pytest.approx(
        (usage["prompt_tokens"] * 0.03 + usage["completion_tokens"] * 0.09) / 1e6, abs=1e-6
    )
    bad = tmp_path / "bad.json"
    bad.write_text('{"meta-llama/Llama-3.2-1B": {"prompt": "cheap", "sample": 0.09}}')
    assert main(eval_args(tmp_path, *ref, "--price-table", str(bad))) == 2
    assert (
        f"The price table {bad}: field 'meta-llama/Llama-3.2-1B.prompt' must be a number"
        in capsys.readouterr().err
    )


def test_max_cost_is_not_applied_to_unpriced_backends(tmp_path: Path) -> None:
    from harness.data import resolve_data_source
    from harness.suite import SuiteOptions
    from suites import get_suite

    [sample] = get_suite("gsm8k", SuiteOptions()).load(resolve_data_source(str(DATA_DIR)), 1).samples
    replay = tmp_path / "answers.jsonl"
    replay.write_text(json.dumps({"sample_id": sample.id, "text": f"The answer is {sample.target}."}) + "\n")
    proc = harness("eval", "--checkpoint", f"replay:{replay}", "--suite", "gsm8k", "--limit", "1",
                   "--max-cost", "0", "--runs", str(tmp_path / "runs"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "--max-cost is not applied: replay:" in proc.stderr and "has no per-token prices" in proc.stderr
