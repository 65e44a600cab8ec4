from __future__ import annotations

import base64

import pytest

from harness.checkpoints import (
    EmbeddedRef,
    EndpointRef,
    GgufRef,
    HfRef,
    RegistryRef,
    ReplayRef,
    TinkerBaseRef,
    TinkerRef,
    VllmRef,
    parse_checkpoint,
    redact_reference,
)
from harness.errors import ExitCode, UsageError


def test_every_form_of_the_design_parses() -> None:
    assert parse_checkpoint("embedded") == EmbeddedRef(raw="embedded")
    assert parse_checkpoint("gguf:/models/x.gguf") == GgufRef(
        raw="gguf:/models/x.gguf", path="/models/x.gguf"
    )
    assert parse_checkpoint("hf:./out/sft") == HfRef(raw="hf:./out/sft", path="./out/sft", lora=None)
    assert parse_checkpoint("hf:base+lora:./adapter") == HfRef(
        raw="hf:base+lora:./adapter", path="base", lora="./adapter"
    )
    assert parse_checkpoint("vllm:meta-llama/Llama-3.2-1B+lora:/ckpt/a") == VllmRef(
        raw="vllm:meta-llama/Llama-3.2-1B+lora:/ckpt/a", base="meta-llama/Llama-3.2-1B", lora="/ckpt/a"
    )
    tinker = parse_checkpoint("tinker://run-123/sampler_weights/000080")
    assert tinker == TinkerRef(
        raw="tinker://run-123/sampler_weights/000080", run_id="run-123", weights_id="000080"
    )
    assert parse_checkpoint("tinker-base:meta-llama/Llama-3.2-1B") == TinkerBaseRef(
        raw="tinker-base:meta-llama/Llama-3.2-1B", model="meta-llama/Llama-3.2-1B"
    )
    assert parse_checkpoint("sft:latest") == RegistryRef(raw="sft:latest", stage="sft", tag="latest")
    assert parse_checkpoint("dpo:v2") == RegistryRef(raw="dpo:v2", stage="dpo", tag="v2")
    assert parse_checkpoint("replay:gold.jsonl") == ReplayRef(raw="replay:gold.jsonl", path="gold.jsonl")


def test_endpoint_reference_with_model_key_variable_and_api() -> None:
    ref = parse_checkpoint(
        "https://integrate.api.nvidia.com/v1#meta/llama-3.2-1b-instruct?api_key_env=NVIDIA_API_KEY"
    )
    assert isinstance(ref, EndpointRef)
    assert ref.base_url == "https://integrate.api.nvidia.com/v1"
    assert ref.model == "meta/llama-3.2-1b-instruct"
    assert ref.api_key_env == "NVIDIA_API_KEY"
    assert ref.api == "chat"
    text = parse_checkpoint("http://127.0.0.1:8000/v1/#m?api=text")
    assert (
        isinstance(text, EndpointRef) and text.api == "text" and text.base_url == "http://127.0.0.1:8000/v1"
    )


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "it is empty"),
        ("gpt4", "matches none of the reference forms"),
        ("gguf:", "GGUF path is empty"),
        ("hf:+lora:x", "model path is empty"),
        ("hf:base+lora:", "'+lora:' is followed by no path"),
        ("http://127.0.0.1:8080/v1", "model name is missing"),
        ("http://127.0.0.1:8080/v1#", "model name is missing"),
        ("http://127.0.0.1:8080/v1#m?api=grpc", "api must be 'chat' or 'text'"),
        ("http://127.0.0.1:8080/v1#m?token=abc", "unknown option(s) token"),
        ("http://127.0.0.1:8080/v1#m?api_key_env=not-a-var", "must name an environment variable"),
        ("tinker://run/weights", "tinker://RUN/sampler_weights/ID"),
        ("tinker-base:", "base model name is empty"),
        ("/path/to/model.gguf", "matches none"),
    ],
)
def test_malformed_references_name_the_problem_and_list_the_forms(raw: str, problem: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_checkpoint(raw)
    message = caught.value.message
    assert problem in message
    for form in (
        "embedded",
        "gguf:PATH",
        "hf:PATH[+lora:PATH]",
        "vllm:BASE[+lora:PATH]",
        "tinker://RUN/sampler_weights/ID",
        "tinker-base:MODEL",
        "http(s)://HOST:PORT/v1#MODEL",
        "STAGE:TAG",
    ):
        assert form in message
    assert caught.value.exit_code == ExitCode.USAGE


def test_slug_is_a_safe_unique_folder_name() -> None:
    assert parse_checkpoint("embedded").slug() == "embedded"
    a = parse_checkpoint("http://127.0.0.1:8080/v1#m").slug()
    b = parse_checkpoint("http://127.0.0.1:8081/v1#m").slug()
    assert a != b
    assert "/" not in a and ":" not in a and "#" not in a


SECRET = "hunter2-S3CR3T"


@pytest.mark.parametrize(
    ("userinfo", "scheme"),
    [
        (f"alice:{SECRET}", "Basic"),
        (f"{SECRET}", "Bearer"),
        (f":{SECRET}", "Bearer"),
        (f"{SECRET}:", "Bearer"),
    ],
)
def test_url_credentials_are_taken_out_of_everything_but_the_authorization(
    userinfo: str, scheme: str
) -> None:
    plain = parse_checkpoint("http://127.0.0.1:8080/v1#m?api=text")
    ref = parse_checkpoint(f"http://{userinfo}@127.0.0.1:8080/v1#m?api=text")
    assert isinstance(ref, EndpointRef) and isinstance(plain, EndpointRef)
    assert ref.raw == plain.raw == "http://127.0.0.1:8080/v1#m?api=text"
    assert ref.base_url == "http://127.0.0.1:8080/v1" and ref.slug() == plain.slug()
    assert ref == plain and hash(ref) == hash(plain)  # identity does not depend on the secret
    assert ref.auth_scheme == scheme and plain.authorization is None
    assert ref.authorization is not None and ref.authorization.startswith(f"{scheme} ")
    for shown in (repr(ref), str(ref), ref.raw, ref.slug(), ref.base_url, repr(ref.options)):
        assert SECRET not in shown and "alice" not in shown
    again = parse_checkpoint(ref.raw)  # what stores keep re-parses to the same reference, without the key
    assert again == ref and isinstance(again, EndpointRef) and again.authorization is None


def test_basic_credentials_are_percent_decoded() -> None:
    ref = parse_checkpoint("https://bob:p%40ss%3Aword@[::1]:8443/v1#m")
    assert isinstance(ref, EndpointRef)
    assert ref.authorization == "Basic " + base64.b64encode(b"bob:p@ss:word").decode()
    assert ref.raw == "https://[::1]:8443/v1#m" and ref.base_url == "https://[::1]:8443/v1"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (f"http://u:{SECRET}@127.0.0.1:8080/v1", "model name is missing"),
        (f"http://u:{SECRET}@127.0.0.1:8080/v1#m?api=grpc", "api must be 'chat' or 'text'"),
        (f"http://127.0.0.1:8080/v1#m?token={SECRET}", "unknown option(s) token"),
        (f"http://127.0.0.1:8080/v1#m?api_key_env=sk-{SECRET}", "must name an environment variable"),
        (f"http://127.0.0.1:8080/v1?key={SECRET}#m", "query before '#MODEL'"),
        (f"http://u:ab/{SECRET}@127.0.0.1:8080/v1#m", "port is not a number"),
        (f"http://u:{SECRET} @h/v1#m", "spaces or control characters"),
        (f"ftp://u:{SECRET}@h/v1#m", "matches none"),
    ],
)
def test_error_messages_never_echo_a_secret(raw: str, problem: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_checkpoint(raw)
    assert problem in caught.value.message
    assert SECRET not in caught.value.message and "Invalid --checkpoint '" in caught.value.message


def test_redact_reference_keeps_known_options_and_masks_the_rest() -> None:
    assert (
        redact_reference("http://a:b@h:1/v1#m?api_key_env=KEY&api=chat")
        == "http://h:1/v1#m?api_key_env=KEY&api=chat"
    )
    assert redact_reference("http://h/v1#m?key=abc&api=text") == "http://h/v1#m?key=***&api=text"
    assert redact_reference("sft:latest") == "sft:latest"
