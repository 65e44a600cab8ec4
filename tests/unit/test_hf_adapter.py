"""The transformers adapter (`hf:PATH[+lora:PATH]`) and `harness export-hf`.

Fast tests use fake model folders (the adapter never loads weights in its constructor, so garbage bytes
are enough to check paths and identities). Tests marked `model` run the embedded SmolLM2-135M, exported
once per session by `harness export-hf embedded DIR` (the `exported_hf_dir` fixture).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="the hf extra is not installed")

from adapters import AdapterOptions
from adapters.common import truncate_at_stop
from adapters.hf import HfAdapter, create_hf_adapter
from adapters.hf_export import prepare_out_dir
from harness.checkpoints import HfRef, parse_checkpoint
from harness.errors import UsageError
from harness.types import Completion, GenerationSettings, Message, Request
from tests.conftest import harness

CPU = AdapterOptions(device="cpu")


def hf_ref(text: str) -> HfRef:
    ref = parse_checkpoint(text)
    assert isinstance(ref, HfRef)
    return ref


def fake_model(folder: Path, weights: bytes = b"weights-1", template: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "dtype": "float32"}))
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "tokenizer_config.json").write_text("{}")
    if template:
        (folder / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    return folder


def fake_lora(folder: Path, weights: bytes = b"lora-1") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4, "base_model_name_or_path": "elsewhere"}))
    (folder / "adapter_model.safetensors").write_bytes(weights)
    return folder


def chat(text: str, max_tokens: int = 24, **settings: object) -> Request:
    return Request(
        f"id-{text[:12]}",
        GenerationSettings(max_tokens=max_tokens, **settings),  # type: ignore[arg-type]
        messages=(Message("user", text),),
    )


def generate(adapter: HfAdapter, requests: Sequence[Request]) -> list[Completion]:
    return asyncio.run(adapter.generate(requests))


# --- fast: no model -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "stops", "expected"),
    [
        ("The answer is 4.\nQ: next", ("Q:",), ("The answer is 4.\n", True)),
        (
            "a STOP b END c",
            ("END", "STOP"),
            ("a ", True),
        ),  # the earliest occurrence wins, not the first listed
        ("Q: at once", ("Q:",), ("", True)),
        ("nothing to cut", ("Q:", "\n\n"), ("nothing to cut", False)),
        ("no stops at all", (), ("no stops at all", False)),
        ("empty stop ignored", ("",), ("empty stop ignored", False)),
    ],
)
def test_truncate_at_stop(text: str, stops: tuple[str, ...], expected: tuple[str, bool]) -> None:
    assert truncate_at_stop(text, stops) == expected


def test_identity_follows_weights_tokenizer_and_lora(tmp_path: Path) -> None:
    model = fake_model(tmp_path / "my-model")
    first = create_hf_adapter(hf_ref(f"hf:{model}"), CPU).identity()  # garbage weights: nothing is loaded
    assert first.startswith("transformers-") and ":hf:my-model:" in first and first.endswith(":float32")
    assert create_hf_adapter(hf_ref(f"hf:{model}"), CPU).identity() == first

    (model / "harness_export.json").write_text("{}")  # bookkeeping files do not change the model
    (model / "trainer_state.json").write_text("{}")
    assert create_hf_adapter(hf_ref(f"hf:{model}"), CPU).identity() == first

    (model / "model.safetensors").write_bytes(b"weights-2")
    second = create_hf_adapter(hf_ref(f"hf:{model}"), CPU).identity()
    assert second != first
    (model / "chat_template.jinja").write_text("{{ 'another template' }}")
    third = create_hf_adapter(hf_ref(f"hf:{model}"), CPU).identity()
    assert third not in (first, second)

    lora = fake_lora(tmp_path / "my-lora")
    with_lora = create_hf_adapter(hf_ref(f"hf:{model}+lora:{lora}"), CPU).identity()
    assert with_lora.startswith(third.removesuffix(":float32") + "+lora:my-lora:")
    (lora / "adapter_model.safetensors").write_bytes(b"lora-2")
    assert create_hf_adapter(hf_ref(f"hf:{model}+lora:{lora}"), CPU).identity() != with_lora


def test_missing_or_malformed_paths_are_usage_errors(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(UsageError, match="does not exist") as error:
        create_hf_adapter(hf_ref(f"hf:{missing}"), CPU)
    assert str(missing) in error.value.message

    no_config = tmp_path / "no-config"
    no_config.mkdir()
    (no_config / "model.safetensors").write_bytes(b"x")
    with pytest.raises(UsageError, match=r"no config\.json"):
        create_hf_adapter(hf_ref(f"hf:{no_config}"), CPU)

    no_weights = fake_model(tmp_path / "no-weights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(UsageError, match="holds no weights"):
        create_hf_adapter(hf_ref(f"hf:{no_weights}"), CPU)

    model = fake_model(tmp_path / "model")
    with pytest.raises(UsageError, match=r"LoRA folder .* does not exist") as error:
        create_hf_adapter(hf_ref(f"hf:{model}+lora:{tmp_path / 'no-lora'}"), CPU)
    assert str(tmp_path / "no-lora") in error.value.message

    not_peft = tmp_path / "not-peft"
    not_peft.mkdir()
    (not_peft / "adapter_model.safetensors").write_bytes(b"x")
    with pytest.raises(UsageError, match=r"no adapter_config\.json"):
        create_hf_adapter(hf_ref(f"hf:{model}+lora:{not_peft}"), CPU)


def test_unknown_or_absent_device_is_a_usage_error(tmp_path: Path) -> None:
    import torch

    model = fake_model(tmp_path / "model")
    with pytest.raises(UsageError, match="Unknown torch device 'tpu7'"):
        create_hf_adapter(hf_ref(f"hf:{model}"), AdapterOptions(device="tpu7"))
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA GPU"):
            create_hf_adapter(hf_ref(f"hf:{model}"), AdapterOptions(device="cuda"))
        assert create_hf_adapter(hf_ref(f"hf:{model}"), AdapterOptions()).device == "cpu"


def test_preflight_refuses_a_tokenizer_without_chat_template(tmp_path: Path) -> None:
    adapter = create_hf_adapter(hf_ref(f"hf:{fake_model(tmp_path / 'bare', template=False)}"), CPU)
    with pytest.raises(UsageError, match="no chat template"):
        asyncio.run(adapter.preflight())
    asyncio.run(create_hf_adapter(hf_ref(f"hf:{fake_model(tmp_path / 'ok')}"), CPU).preflight())


def test_export_refuses_a_non_empty_folder_and_other_sources(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    proc = harness("export-hf", "embedded", str(target))
    assert proc.returncode == 2
    assert "is not empty" in proc.stderr and "--force" in proc.stderr
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]

    proc = harness("export-hf", f"hf:{target}", str(tmp_path / "out"))
    assert proc.returncode == 2 and "GGUF checkpoints only" in proc.stderr


def test_force_removes_stale_weights_and_keeps_other_files(tmp_path: Path) -> None:
    target = tmp_path / "old-export"
    target.mkdir()
    for name in ("model-00001-of-00002.safetensors", "pytorch_model.bin", "model.safetensors.index.json"):
        (target / name).write_bytes(b"stale")
    (target / "notes.txt").write_text("mine")
    prepare_out_dir(target, force=True)
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


# --- the real model -------------------------------------------------------------------------------------

PROMPTS = (
    "What is 2+2?",
    "Write a haiku about the sea.",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "Name three colors.",
    "hi",
    "Explain gravity in one sentence to a curious five-year-old.",
    "List the planets.",
    "What's the capital of France?",
)


@pytest.fixture(scope="module")
def hf_adapter(exported_hf_dir: Path) -> HfAdapter:
    return create_hf_adapter(hf_ref(f"hf:{exported_hf_dir}"), AdapterOptions(device="cpu", batch_size=8))


@pytest.mark.model
def test_export_folder_holds_float32_weights_tokenizer_and_provenance(exported_hf_dir: Path) -> None:
    from adapters.common import file_fingerprint
    from adapters.llama_cpp import embedded_gguf_path

    names = {p.name for p in exported_hf_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "harness_export.json"} <= names
    config = json.loads((exported_hf_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    record = json.loads((exported_hf_dir / "harness_export.json").read_text())
    assert record["source"] == str(embedded_gguf_path())
    assert record["source_fingerprint"] == file_fingerprint(embedded_gguf_path())
    assert record["dtype"] == "float32" and record["transformers"] and 130e6 < record["parameters"] < 140e6
    template = (exported_hf_dir / "chat_template.jinja").read_text()
    assert "<|im_start|>" in template  # ChatML, from the GGUF's tokenizer.chat_template


@pytest.mark.model
def test_exported_tokenizer_and_template_match_llama_cpp(exported_hf_dir: Path) -> None:
    """Same token ids as llama.cpp for every GSM8K exemplar and the first 100 questions, and the same
    rendered chat prompt. (transformers' own GGUF tokenizer conversion maps SmolLM2's spaces to <unk>.)"""
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from transformers import AutoTokenizer

    from adapters.llama_cpp import embedded_gguf_path
    from suites.gsm8k import EXEMPLARS
    from tests.conftest import DATA_DIR

    tokenizer = AutoTokenizer.from_pretrained(exported_hf_dir)
    llm = llama_cpp.Llama(model_path=str(embedded_gguf_path()), vocab_only=True, verbose=False)
    lines = (DATA_DIR / "gsm8k" / "test.jsonl").read_text().splitlines()[:100]
    texts = [q + "\n" + a for q, a in EXEMPLARS] + [json.loads(line)["question"] for line in lines]
    texts += ["  two spaces\n\n\ttab   three  \n", "café naïve 日本語 🤖 1234567 3.14 $1,000", "<|im_end|>\n"]
    for text in texts:
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == llm.tokenize(
            text.encode(), add_bos=False, special=True
        ), text
        assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id is not None

    messages = [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
    ]
    template = llm.metadata["tokenizer.chat_template"]
    formatter = Jinja2ChatFormatter(template, eos_token="<|im_end|>", bos_token="<|im_start|>")
    expected = formatter(messages=messages).prompt  # type: ignore[arg-type]
    assert tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == expected


@pytest.mark.model
def test_exported_weights_give_llama_cpp_logits(exported_hf_dir: Path) -> None:
    """Teacher-forced on one prompt, float32 transformers and Q4_1 llama.cpp agree closely (measured:
    logits correlation 0.9994 at the last position, the same arg-max at 69/69 positions; 95% of positions
    on another prompt). The remaining gap is llama.cpp's quantized matmuls (activations rounded to 8 bits),
    not different weights: a wrong export (e.g. unpermuted q/k projections) breaks both numbers."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from adapters.llama_cpp import embedded_gguf_path
    from adapters.llama_guard import load_llama

    tokenizer = AutoTokenizer.from_pretrained(exported_hf_dir)
    model = AutoModelForCausalLM.from_pretrained(exported_hf_dir, dtype=torch.float32)
    model.eval()  # type: ignore[no-untyped-call]
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPTS[2]}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    llm, _ = load_llama(embedded_gguf_path(), threads=2, n_ctx=256, logits_all=True, verbose=False, seed=0)
    llm.eval(ids)
    reference = np.array(llm.scores[: len(ids)])
    with torch.inference_mode():
        ours = model(torch.tensor([ids])).logits[0].numpy()
    assert np.corrcoef(reference[-1], ours[-1])[0, 1] > 0.99
    assert (reference.argmax(axis=1) == ours.argmax(axis=1)).mean() >= 0.9
    llm.close()


@pytest.mark.model
def test_batched_generation_equals_one_by_one(exported_hf_dir: Path, hf_adapter: HfAdapter) -> None:
    """Left padding + attention mask + pad token: a prompt's greedy output does not depend on its batch."""
    one_by_one = create_hf_adapter(
        hf_ref(f"hf:{exported_hf_dir}"), AdapterOptions(device="cpu", batch_size=1)
    )
    requests = [chat(p) for p in PROMPTS]
    requests.append(Request("text", GenerationSettings(max_tokens=24), prompt="Q: What is 3+5?\nA:"))
    batched, single = generate(hf_adapter, requests), generate(one_by_one, requests)
    assert len({c.prompt_tokens for c in batched}) > 4  # really different lengths, so really padded
    for request, b, s in zip(requests, batched, single, strict=True):
        assert (b.texts, b.finish_reasons, b.completion_tokens, b.prompt_tokens) == (
            s.texts,
            s.finish_reasons,
            s.completion_tokens,
            s.prompt_tokens,
        ), request
    assert all(c.text.strip() for c in batched)


@pytest.mark.model
def test_stop_string_ends_generation_and_cuts_the_text(hf_adapter: HfAdapter) -> None:
    free = generate(hf_adapter, [chat(PROMPTS[6], max_tokens=40)])[0]
    words = free.text.split()
    stop = next(w for w in words[3:] if len(w) > 3)  # a word well inside the response
    cut = free.text.index(stop)
    stopped = generate(hf_adapter, [chat(PROMPTS[6], max_tokens=40, stop=("@@never@@", stop))])[0]
    assert stopped.text == free.text[:cut]
    assert stopped.finish_reasons == ("stop",)
    assert stopped.completion_tokens < free.completion_tokens


@pytest.mark.model
def test_finish_reasons_and_token_counts(hf_adapter: HfAdapter) -> None:
    short, ended = generate(hf_adapter, [chat(PROMPTS[0], max_tokens=3), chat(PROMPTS[4], max_tokens=64)])
    assert short.finish_reasons == ("length",) and short.completion_tokens == 3
    assert ended.finish_reasons == ("stop",) and 0 < ended.completion_tokens < 64  # the model's <|im_end|>
    assert "<|im_end|>" not in ended.text and short.prompt_tokens > 20  # the template's system turn counts


@pytest.mark.model
def test_sampling_is_seeded_and_n_gives_n_texts(hf_adapter: HfAdapter) -> None:
    def sample(seed: int) -> Completion:
        return generate(
            hf_adapter, [chat("Tell me a word.", max_tokens=12, temperature=1.0, n=3, seed=seed)]
        )[0]

    first, again, other = sample(1), sample(1), sample(2)
    assert len(first.texts) == 3 and len(set(first.texts)) > 1
    assert first.texts == again.texts and first.texts != other.texts
    greedy = generate(hf_adapter, [chat("Tell me a word.", max_tokens=12, n=2)])[0]
    assert len(greedy.texts) == 2 and greedy.texts[0] == greedy.texts[1]


@pytest.mark.model
def test_checkpoint_sampling_defaults_do_not_leak_into_greedy(
    exported_hf_dir: Path, hf_adapter: HfAdapter, tmp_path: Path
) -> None:
    """transformers fills unset generate() settings from generation_config.json; greedy must stay greedy."""
    twin = tmp_path / "twin"
    twin.mkdir()
    for path in exported_hf_dir.iterdir():
        (twin / path.name).symlink_to(path)
    (twin / "generation_config.json").unlink()
    (twin / "generation_config.json").write_text(
        json.dumps({"eos_token_id": [2, 0], "do_sample": True, "temperature": 0.3, "top_k": 5,
                    "repetition_penalty": 1.8, "no_repeat_ngram_size": 2})
    )  # fmt: skip
    twin_adapter = create_hf_adapter(hf_ref(f"hf:{twin}"), CPU)
    assert twin_adapter.identity() != hf_adapter.identity()
    requests = [chat(PROMPTS[6], max_tokens=40)]
    assert generate(twin_adapter, requests)[0].texts == generate(hf_adapter, requests)[0].texts
