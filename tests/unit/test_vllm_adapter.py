"""The in-process vLLM adapter (adapters/vllm.py) on a machine without vLLM or a GPU.

Three layers: the pure mapping functions (no vllm import at all); the adapter end to end against a
STAND-IN `vllm` package (written below, put on sys.path, so it lands in sys.modules as `vllm`); and the
CLI, both without vllm (exit 5) and with the stand-in through the real runner. The stand-in mirrors the
constructor signatures and the validation rules of the real classes, checked in vLLM's sources with the
search tool (files and commits named next to each list), and refuses any keyword outside those lists.
What it cannot show: real decoding, real LoRA weights, GPU memory; bench/vllm_gpu_check.py does that on a GPU.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from adapters import AdapterOptions, create_adapter
from adapters.vllm import (
    DEFAULT_BATCH_SIZE,
    VllmAdapter,
    chat_prompt_ids,
    completion_from_outputs,
    lora_rank,
    read_lora_config,
    resolve_base,
    sampling_plan,
    vllm_max_lora_rank,
)
from harness.checkpoints import parse_checkpoint
from harness.errors import EndpointError, UsageError
from harness.types import GenerationSettings, Message, Request
from tests.conftest import cli_env, harness, read_samples

# --- The real vLLM API, as read in vllm-project/vllm with the search tool ------------------------------
# vllm/entrypoints/llm.py @ 10fdb8f0d75a (current main): LLM.__init__(self, model, *, ...named below...,
# **kwargs), the **kwargs going to EngineArgs. Older releases (0.9, @0012cf691b7e) had `task`, `seed=None`
# and `max_seq_len_to_capture`; nothing the adapter passes differs between the two.
REAL_LLM_INIT = frozenset(
    {
        "model", "runner", "convert", "tokenizer", "tokenizer_mode", "skip_tokenizer_init",
        "trust_remote_code", "allowed_local_media_path", "allowed_media_domains", "tensor_parallel_size",
        "dtype", "quantization", "revision", "tokenizer_revision", "seed", "gpu_memory_utilization",
        "swap_space", "cpu_offload_gb", "enforce_eager", "enable_return_routed_experts",
        "disable_custom_all_reduce", "hf_token", "hf_overrides", "mm_processor_kwargs", "pooler_config",
        "structured_outputs_config", "profiler_config", "attention_config", "kv_cache_memory_bytes",
        "compilation_config", "logits_processors",
    }
)  # fmt: skip
# vllm/engine/arg_utils.py @ 99d7eb5d6a51, dataclass EngineArgs: the fields reached through LLM(**kwargs)
# that a harness could want ("# LoRA fields" block, and max_model_len next to seed).
REAL_ENGINE_ARGS = frozenset(
    {"enable_lora", "max_loras", "max_lora_rank", "max_cpu_loras", "fully_sharded_loras", "lora_dtype",
     "max_model_len", "max_num_seqs", "enable_prefix_caching", "gpu_memory_utilization"}
)  # fmt: skip
# vllm/entrypoints/llm.py @ 10fdb8f0d75a: def generate(self, prompts, sampling_params=None, *, use_tqdm=True,
# lora_request=None, priority=None, tokenization_kwargs=None). `sampling_params` may be a list "paired one
# by one with the prompt"; `lora_request` a LoRARequest (all prompts) or a list.
REAL_GENERATE = frozenset({"use_tqdm", "lora_request", "priority", "tokenization_kwargs"})
# vllm/sampling_params.py @ 00388f6573cc, class SamplingParams(msgspec.Struct): the init fields. Also
# verified there: temperature default 1.0 ("Zero means greedy"), max_tokens default 16, stop strings
# excluded from the output (`include_stop_str_in_output: bool = False`), and _verify_greedy_sampling()
# raising "n must be 1 when using greedy sampling" (temperature < 1e-5).
REAL_SAMPLING_PARAMS = frozenset(
    {
        "n", "presence_penalty", "frequency_penalty", "repetition_penalty", "temperature", "top_p", "top_k",
        "min_p", "seed", "stop", "stop_token_ids", "ignore_eos", "max_tokens", "min_tokens", "logprobs",
        "prompt_logprobs", "detokenize", "skip_special_tokens", "spaces_between_special_tokens",
        "include_stop_str_in_output", "output_kind", "structured_outputs", "logit_bias", "allowed_token_ids",
        "extra_args", "bad_words", "thinking_token_budget",
    }
)  # fmt: skip
# vllm/lora/request.py (docs.vllm.ai v0.22.1 and v0.14.0 API pages; @8539e44c0b8f for 0.6): LoRARequest
# (lora_name, lora_int_id, lora_path="", base_model_name=None, tensorizer_config_dict=None,
# load_inplace=False); __post_init__ raises "id must be > 0" and asserts a non-empty lora_path.
REAL_LORA_REQUEST = frozenset(
    {"lora_name", "lora_int_id", "lora_path", "base_model_name", "tensorizer_config_dict", "load_inplace"}
)
# vllm/config/lora.py @ a78dc92f43ae: MaxLoRARanks = Literal[1, 8, 16, 32, 64, 128, 256, 320, 512];
# older LoRAConfig.__post_init__: possible_max_ranks = (8, 16, 32, 64, 128, 256, 320, 512).

STANDIN_VERSION = "0.0.0+standin"

STANDIN_INIT = '''\
"""STAND-IN for the vllm package, written by tests/unit/test_vllm_adapter.py. Not vLLM: it decodes
nothing. It checks keyword names against the real ones and mirrors SamplingParams' validation."""
import json
import os
import threading
from dataclasses import dataclass, field

__version__ = "{version}"
LLM_PARAMS = frozenset({llm_params})
SAMPLING_PARAMS = frozenset({sampling_params})
CALLS = []


def _log(entry):
    CALLS.append(entry)
    if os.environ.get("STANDIN_VLLM_LOG"):
        with open(os.environ["STANDIN_VLLM_LOG"], "a") as handle:
            handle.write(json.dumps(entry) + "\\n")


def _on_main_thread():
    return threading.current_thread() is threading.main_thread()


class SamplingParams:
    def __init__(self, **kwargs):
        unknown = set(kwargs) - SAMPLING_PARAMS
        if unknown:
            raise TypeError(f"SamplingParams got unexpected keyword(s) {{sorted(unknown)}}")
        self.kwargs = dict(kwargs)
        self.n = kwargs.get("n", 1)
        self.temperature = kwargs.get("temperature", 1.0)
        self.top_p = kwargs.get("top_p", 1.0)
        self.max_tokens = kwargs.get("max_tokens", 16)
        self.seed = kwargs.get("seed")
        stop = kwargs.get("stop")
        self.stop = [] if stop is None else [stop] if isinstance(stop, str) else list(stop)
        self.include_stop_str_in_output = kwargs.get("include_stop_str_in_output", False)
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {{self.n}}.")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {{self.temperature}}.")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {{self.top_p}}.")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {{self.max_tokens}}.")
        if any(not s for s in self.stop):
            raise ValueError("stop cannot contain an empty string.")
        if self.temperature < 1e-5 and self.n > 1:
            raise ValueError(f"n must be 1 when using greedy sampling, got {{self.n}}.")


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list
    cumulative_logprob: float = None
    logprobs: object = None
    finish_reason: str = None
    stop_reason: object = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str
    prompt_token_ids: list
    outputs: list = field(default_factory=list)
    finished: bool = True


class LLM:
    def __init__(self, model, **kwargs):
        unknown = set(kwargs) - LLM_PARAMS
        if unknown:
            raise TypeError(f"LLM/EngineArgs got unexpected keyword(s) {{sorted(unknown)}}")
        from transformers import AutoTokenizer

        self.model = model
        self._tokenizer = AutoTokenizer.from_pretrained(model)
        _log({{"call": "LLM", "model": model, "kwargs": kwargs, "main_thread": _on_main_thread()}})

    def get_tokenizer(self):
        return self._tokenizer

    def generate(self, prompts, sampling_params=None, *, use_tqdm=True, lora_request=None, priority=None,
                 tokenization_kwargs=None):
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError("The lengths of prompts and params must be the same.")
        tag = lora_request.lora_name if lora_request is not None else "base"
        results = []
        for number, (prompt, sp) in enumerate(zip(prompts, params)):
            if isinstance(prompt, dict):
                ids, text = list(prompt["prompt_token_ids"]), None
            else:  # a text prompt is tokenized with special tokens, as vLLM does
                ids, text = self._tokenizer.encode(prompt), prompt
            choices = []
            for index in reversed(range(sp.n)):  # out of order on purpose: the adapter sorts by index
                answer = f"[{{tag}}] saw {{len(ids)}} tokens, sample {{index}}, seed {{sp.seed}}. The answer is 7."
                token_ids = self._tokenizer.encode(answer, add_special_tokens=False)
                reason = "stop"
                if len(token_ids) > sp.max_tokens:
                    token_ids, reason = token_ids[: sp.max_tokens], "length"
                    answer = self._tokenizer.decode(token_ids)
                choices.append(CompletionOutput(index, answer, token_ids, finish_reason=reason))
            results.append(RequestOutput(str(number), text, ids, choices))
        _log({{
            "call": "generate",
            "main_thread": _on_main_thread(),
            "n_prompts": len(prompts),
            "kinds": ["ids" if isinstance(p, dict) else "text" for p in prompts],
            "prompt_ids": [p["prompt_token_ids"] if isinstance(p, dict) else None for p in prompts],
            "sampling": [sp.kwargs for sp in params],
            "use_tqdm": use_tqdm,
            "lora": None if lora_request is None else lora_request.as_dict(),
        }})
        return results
'''

STANDIN_LORA_REQUEST = '''\
"""STAND-IN for vllm.lora.request: the real field order and __post_init__ checks."""
from dataclasses import asdict, dataclass


@dataclass
class LoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str = ""
    base_model_name: str = None
    tensorizer_config_dict: dict = None
    load_inplace: bool = False

    def __post_init__(self):
        if self.lora_int_id < 1:
            raise ValueError(f"id must be > 0, got {self.lora_int_id}")
        assert self.lora_path, "lora_path cannot be empty"

    def as_dict(self):
        return asdict(self)
'''


def write_standin(root: Path) -> Path:
    package = root / "vllm"
    (package / "lora").mkdir(parents=True)
    (package / "__init__.py").write_text(
        STANDIN_INIT.format(
            version=STANDIN_VERSION,
            llm_params=sorted(REAL_LLM_INIT | REAL_ENGINE_ARGS),
            sampling_params=sorted(REAL_SAMPLING_PARAMS),
        )
    )
    (package / "lora" / "__init__.py").write_text("")
    (package / "lora" / "request.py").write_text(STANDIN_LORA_REQUEST)
    dist = root / "vllm-0.0.0.dist-info"  # so importlib.metadata.version("vllm") answers, as for a wheel
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {STANDIN_VERSION}\n")
    return root


@pytest.fixture(scope="session")
def standin_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_standin(tmp_path_factory.mktemp("standin-vllm"))


@pytest.fixture
def standin_path(standin_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The stand-in importable as `vllm` (not yet imported); removed from sys.modules afterwards."""
    assert "vllm" not in sys.modules, "a real or leftover vllm module is loaded"
    monkeypatch.syspath_prepend(str(standin_root))
    yield standin_root
    for name in [n for n in sys.modules if n == "vllm" or n.startswith("vllm.")]:
        del sys.modules[name]


def standin_calls() -> list[dict[str, Any]]:
    module: Any = sys.modules["vllm"]
    return list(module.CALLS)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real tokenizer (SmolLM2's, with its ChatML template) built offline from the embedded GGUF.

    Saved as a plain PreTrainedTokenizerFast around the GGUF's tokenizer: transformers 5.23 labels the
    GGUF tokenizer CodeLlamaTokenizer, and that class, reloaded from disk, turns spaces into <unk>.
    """
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from adapters.llama_cpp import embedded_gguf_path

    gguf = embedded_gguf_path()
    loaded = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=loaded.backend_tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = loaded.chat_template
    out = tmp_path_factory.mktemp("smollm2-tokenizer")
    tokenizer.save_pretrained(str(out))
    return out


@pytest.fixture
def model_dir(tmp_path: Path, tokenizer_dir: Path) -> Path:
    """A transformers-style model folder: the real tokenizer, a config and stand-in weights bytes."""
    folder = tmp_path / "SmolLM2-135M-Instruct"
    folder.mkdir()
    for path in tokenizer_dir.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "config.json").write_text(
        json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"})
    )
    (folder / "model.safetensors").write_bytes(b"stand-in weights v1")
    return folder


def write_lora(folder: Path, **config: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    base = {"peft_type": "LORA", "r": 12, "lora_alpha": 24, "target_modules": ["q_proj", "v_proj"]}
    (folder / "adapter_config.json").write_text(json.dumps({**base, **config}))
    (folder / "adapter_model.safetensors").write_bytes(b"stand-in lora weights v1")
    return folder


def settings(**overrides: Any) -> GenerationSettings:
    return GenerationSettings(**{"max_tokens": 64, "temperature": 0.0, "seed": 0, **overrides})


# --- Pure mapping ------------------------------------------------------------------------------------


def test_greedy_settings_map_exactly_and_keep_vllm_names() -> None:
    plan = sampling_plan(settings(max_tokens=512, stop=("Question:", "\n\n"), seed=3))
    assert dict(plan.kwargs) == {
        "n": 1,
        "temperature": 0.0,
        "top_p": 1.0,
        "max_tokens": 512,
        "stop": ["Question:", "\n\n"],
        "seed": 3,
        "include_stop_str_in_output": False,
    }
    assert plan.copies == 1
    assert set(plan.kwargs) <= REAL_SAMPLING_PARAMS


def test_sampled_n_goes_to_vllm_but_greedy_n_is_split_into_copies() -> None:
    sampled = sampling_plan(settings(n=5, temperature=0.8, top_p=0.95, seed=None))
    assert (sampled.kwargs["n"], sampled.kwargs["temperature"], sampled.kwargs["top_p"]) == (5, 0.8, 0.95)
    assert sampled.kwargs["seed"] is None and sampled.copies == 1
    greedy = sampling_plan(settings(n=3))
    assert greedy.kwargs["n"] == 1 and greedy.copies == 3  # vLLM: "n must be 1 when using greedy sampling"


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"top_p": 0.0}, "top_p in (0, 1]"),
        ({"temperature": 2.5}, "temperature in [0, 2]"),
        ({"stop": ("",)}, "empty stop string"),
        ({"max_tokens": 0}, "max_tokens must be at least 1"),
        ({"n": 0}, "n must be at least 1"),
    ],
)
def test_settings_vllm_would_reject_are_usage_errors(overrides: dict[str, Any], needle: str) -> None:
    with pytest.raises(UsageError) as info:
        sampling_plan(settings(**overrides))
    assert needle in info.value.message


class TemplatedTokenizer:
    """A tokenizer-like object whose template starts with BOS, as Llama 3's does, and whose encode()
    adds BOS unless told not to: the case where a text prompt would get BOS twice."""

    chat_template = "<s>{% for m in messages %}...{% endfor %}"
    BOS = 1

    def apply_chat_template(self, conversation: list[dict[str, str]], **kwargs: Any) -> str:
        assert kwargs == {"add_generation_prompt": True, "tokenize": False}
        body = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in conversation)
        return "<s>" + body + "<assistant>"

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [self.BOS if part == "<s>" else ord(part) for part in _split_bos(text)]
        return [self.BOS, *ids] if add_special_tokens else ids


def _split_bos(text: str) -> list[str]:
    head, sep, tail = text.partition("<s>")
    return [*head, *(["<s>"] if sep else []), *tail]


def test_chat_prompt_keeps_the_templates_single_bos() -> None:
    tokenizer = TemplatedTokenizer()
    ids = chat_prompt_ids(tokenizer, [Message("system", "Be brief."), Message("user", "2+2?")])
    assert ids.count(TemplatedTokenizer.BOS) == 1 and ids[0] == TemplatedTokenizer.BOS
    assert "".join(chr(i) for i in ids[1:]) == "<system>Be brief.</system><user>2+2?</user><assistant>"


def test_chat_prompt_with_the_real_smollm2_template(tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    messages = [Message("user", "What is 2+2?"), Message("assistant", "4"), Message("user", "And 3+3?")]
    ids = chat_prompt_ids(tokenizer, messages)
    text = str(tokenizer.decode(ids))
    conversation = [{"role": m.role, "content": m.content} for m in messages]
    assert text == tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n")
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids[1] != ids[0]  # the template's first token appears once
    plain = "What is 2+2?\nAnd 3+3?"  # the fixture itself: spaces and newlines survive the reload
    assert tokenizer.decode(tokenizer.encode(plain, add_special_tokens=False)) == plain


def test_a_tokenizer_without_chat_template_is_a_usage_error() -> None:
    tokenizer = TemplatedTokenizer()
    tokenizer.chat_template = ""
    with pytest.raises(UsageError) as info:
        chat_prompt_ids(tokenizer, [Message("user", "hi")])
    assert "no chat template" in info.value.message


@dataclass
class FakeChoice:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None


@dataclass
class FakeOutput:
    prompt_token_ids: list[int] | None
    outputs: list[FakeChoice] = field(default_factory=list)


def test_request_output_maps_to_completion_in_index_order() -> None:
    output = FakeOutput(
        [5, 6, 7],
        [FakeChoice(1, "second", [1, 2], "length"), FakeChoice(0, "first", [3, 4, 5], "stop")],
    )
    completion = completion_from_outputs([output], latency_s=0.25)
    assert completion.texts == ("first", "second")
    assert completion.finish_reasons == ("stop", "length")
    assert (completion.prompt_tokens, completion.completion_tokens, completion.latency_s) == (3, 5, 0.25)


def test_split_greedy_copies_merge_into_one_completion() -> None:
    copies = [
        FakeOutput([1, 2], [FakeChoice(0, "a", [9], "stop")]),
        FakeOutput([1, 2], [FakeChoice(0, "b", [8, 7], None)]),
    ]
    completion = completion_from_outputs(copies)
    assert completion.texts == ("a", "b") and completion.finish_reasons == ("stop", "unknown")
    assert (completion.prompt_tokens, completion.completion_tokens) == (2, 3)  # the prompt counts once


@pytest.mark.parametrize("reason", ["abort", "error"])
def test_failed_outputs_are_errors_not_answers(reason: str) -> None:
    with pytest.raises(EndpointError) as info:
        completion_from_outputs([FakeOutput([1], [FakeChoice(0, "partial", [1], reason)])])
    assert f"finish_reason '{reason}'" in info.value.message


@pytest.mark.parametrize(
    ("rank", "allowed"), [(1, 8), (4, 8), (8, 8), (12, 16), (64, 64), (300, 320), (512, 512)]
)
def test_max_lora_rank_rounds_up_to_a_rank_vllm_accepts(rank: int, allowed: int) -> None:
    assert vllm_max_lora_rank(rank) == allowed


def test_a_rank_beyond_vllm_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        vllm_max_lora_rank(513)
    assert "above 512" in info.value.message


def test_lora_rank_reads_r_and_the_largest_rank_pattern(tmp_path: Path) -> None:
    plain = read_lora_config(write_lora(tmp_path / "plain", r=12))
    assert lora_rank(plain) == 12
    patterned = read_lora_config(
        write_lora(tmp_path / "pattern", r=16, rank_pattern={"q_proj": 64, "v_proj": 8})
    )
    assert vllm_max_lora_rank(lora_rank(patterned)) == 64


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"use_dora": True}, "DoRA"),
        ({"modules_to_save": ["lm_head"]}, "modules ['lm_head']"),
        ({"peft_type": "IA3"}, "IA3 adapter"),
    ],
)
def test_adapters_vllm_refuses_fail_before_any_gpu_work(
    tmp_path: Path, config: dict[str, Any], needle: str
) -> None:
    with pytest.raises(UsageError) as info:
        read_lora_config(write_lora(tmp_path / "lora", **config))
    assert needle in info.value.message and "hf:BASE+lora:PATH" in info.value.message


def test_a_folder_without_adapter_config_is_not_a_lora(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        read_lora_config(tmp_path)
    assert "no adapter_config.json" in info.value.message


def test_base_references(tmp_path: Path) -> None:
    assert resolve_base("HuggingFaceTB/SmolLM2-135M-Instruct") == (
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "hub:HuggingFaceTB/SmolLM2-135M-Instruct",
    )
    with pytest.raises(UsageError, match="does not exist"):
        resolve_base(str(tmp_path / "missing"))
    with pytest.raises(UsageError, match=r"no config\.json"):
        resolve_base(str(tmp_path))


# --- The adapter against the stand-in ----------------------------------------------------------------


def test_identity_names_version_weights_lora_and_tp_without_importing_vllm(
    standin_path: Path, model_dir: Path, tmp_path: Path
) -> None:
    lora = write_lora(tmp_path / "sft-lora")
    adapter = create_adapter(
        parse_checkpoint(f"vllm:{model_dir}+lora:{lora}"), AdapterOptions(tensor_parallel_size=2)
    )
    identity = adapter.identity()
    assert "vllm" not in sys.modules  # identity() and the constructor stay light
    assert identity.startswith(f"vllm-{STANDIN_VERSION}:{model_dir.resolve()}@")
    assert ":lora:sft-lora@" in identity and identity.endswith(":tp2")
    assert adapter.batch_size == DEFAULT_BATCH_SIZE and adapter.concurrency == 1 and adapter.api == "chat"

    (model_dir / "model.safetensors").write_bytes(b"stand-in weights v2")
    changed_base = VllmAdapter(str(model_dir), lora.resolve(), tensor_parallel_size=2).identity()
    (lora / "adapter_model.safetensors").write_bytes(b"stand-in lora weights v2")
    changed_lora = VllmAdapter(str(model_dir), lora.resolve(), tensor_parallel_size=2).identity()
    assert len({identity, changed_base, changed_lora}) == 3
    hub = VllmAdapter("HuggingFaceTB/SmolLM2-135M-Instruct").identity()
    assert hub == f"vllm-{STANDIN_VERSION}:hub:HuggingFaceTB/SmolLM2-135M-Instruct:tp1"


def test_one_llm_one_generate_call_per_batch_with_aligned_params(
    standin_path: Path, model_dir: Path, tmp_path: Path
) -> None:
    lora = write_lora(tmp_path / "dpo-lora", r=12)
    adapter = create_adapter(
        parse_checkpoint(f"vllm:{model_dir}+lora:{lora}"),
        AdapterOptions(tensor_parallel_size=2, batch_size=64, n_ctx=4096),
    )
    chat = (Message("user", "What is 6 times 7?"),)
    requests = [
        Request("greedy", settings(max_tokens=512, stop=("Question:",)), messages=chat),
        Request("sampled", settings(n=3, temperature=0.7, top_p=0.9, seed=11), messages=chat),
        Request("greedy-n2", settings(n=2), messages=chat),
        Request("text", settings(max_tokens=4), prompt="Q: 6*7=?\nA:"),
    ]
    assert "vllm" not in sys.modules  # nothing loaded before the first generate
    completions = asyncio.run(adapter.generate(requests))
    calls = standin_calls()

    llm_calls = [c for c in calls if c["call"] == "LLM"]
    assert len(llm_calls) == 1
    llm = llm_calls[0]
    assert llm["model"] == str(model_dir.resolve())
    assert llm["kwargs"] == {
        "tensor_parallel_size": 2,
        "seed": 0,
        "enable_lora": True,
        "max_loras": 1,
        "max_lora_rank": 16,  # r=12 rounded up to a rank vLLM accepts
        "max_model_len": 4096,
    }
    assert set(llm["kwargs"]) <= REAL_LLM_INIT | REAL_ENGINE_ARGS
    assert (
        llm["main_thread"] is True
    )  # built on the event-loop thread: vLLM 0.8-0.10.1 fall back to V0 off it

    (gen,) = [c for c in calls if c["call"] == "generate"]
    assert gen["main_thread"] is False  # decoding runs in a worker thread
    assert gen["n_prompts"] == 5  # greedy, sampled (n=3 inside vLLM), greedy-n2 as two copies, text
    assert gen["kinds"] == ["ids", "ids", "ids", "ids", "text"]
    assert gen["use_tqdm"] is False
    assert gen["lora"] == {
        "lora_name": "dpo-lora",
        "lora_int_id": 1,
        "lora_path": str(lora.resolve()),
        "base_model_name": None,
        "tensorizer_config_dict": None,
        "load_inplace": False,
    }
    assert set(k for k, v in gen["lora"].items() if v not in (None, False)) <= REAL_LORA_REQUEST
    sampling = gen["sampling"]
    assert [s["n"] for s in sampling] == [1, 3, 1, 1, 1]
    assert sampling[0]["stop"] == ["Question:"] and sampling[0]["include_stop_str_in_output"] is False
    assert (sampling[1]["temperature"], sampling[1]["top_p"], sampling[1]["seed"]) == (0.7, 0.9, 11)
    assert all(set(s) <= REAL_SAMPLING_PARAMS for s in sampling)

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    expected_ids = chat_prompt_ids(tokenizer, chat)
    assert gen["prompt_ids"][0] == expected_ids
    n_text = len(tokenizer.encode("Q: 6*7=?\nA:"))

    by_id = dict(zip([r.sample_id for r in requests], completions, strict=True))
    assert by_id["greedy"].texts == (
        f"[dpo-lora] saw {len(expected_ids)} tokens, sample 0, seed 0. The answer is 7.",
    )
    assert by_id["greedy"].finish_reasons == ("stop",)
    assert by_id["greedy"].prompt_tokens == len(expected_ids)
    assert [t.split(", ")[1] for t in by_id["sampled"].texts] == ["sample 0", "sample 1", "sample 2"]
    assert len(by_id["greedy-n2"].texts) == 2 and by_id["greedy-n2"].prompt_tokens == len(expected_ids)
    assert by_id["text"].prompt_tokens == n_text and by_id["text"].finish_reasons == ("length",)
    assert by_id["text"].completion_tokens == 4
    answer_tokens = len(tokenizer.encode(by_id["greedy"].text, add_special_tokens=False))
    assert by_id["greedy"].completion_tokens == answer_tokens
    assert by_id["sampled"].completion_tokens == sum(
        len(tokenizer.encode(t, add_special_tokens=False)) for t in by_id["sampled"].texts
    )

    asyncio.run(adapter.generate(requests[:1]))  # the same LLM serves the next batch
    assert [c["call"] for c in standin_calls()] == ["LLM", "generate", "generate"]
    asyncio.run(adapter.aclose())
    assert isinstance(adapter, VllmAdapter) and adapter._llm is None


def test_without_lora_no_lora_arguments_reach_vllm(standin_path: Path, model_dir: Path) -> None:
    adapter = create_adapter(parse_checkpoint(f"vllm:{model_dir}"), AdapterOptions())
    asyncio.run(adapter.preflight())  # preflight loads the model, so a broken setup fails before any work
    asyncio.run(adapter.generate([Request("a", settings(), messages=(Message("user", "hi"),))]))
    llm, gen = standin_calls()
    assert llm["kwargs"] == {"tensor_parallel_size": 1, "seed": 0}
    assert gen["lora"] is None and gen["sampling"][0]["n"] == 1


def test_a_model_vllm_cannot_load_is_a_clean_endpoint_error(standin_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    adapter = VllmAdapter(str(folder))
    with pytest.raises(EndpointError) as info:
        asyncio.run(adapter.preflight())
    assert f"vLLM could not load '{folder.resolve()}'" in info.value.message
    assert "on CPU use hf:PATH or gguf:PATH" in info.value.message


# --- The CLI -----------------------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
@pytest.mark.parametrize(
    "ref", ["vllm:Qwen/Qwen2.5-0.5B-Instruct", "vllm:Qwen/Qwen2.5-0.5B-Instruct+lora:/no/such/dir"]
)
def test_cli_without_vllm_exits_5_with_the_install_command(ref: str) -> None:
    proc = harness("eval", "--checkpoint", ref, "--suite", "gsm8k", "--limit", "1")
    assert proc.returncode == 5, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "A vllm: checkpoint needs the 'vllm' extra" in proc.stderr
    assert "pip install -e '.[vllm]'" in proc.stderr


def test_cli_runs_gsm8k_through_the_standin_in_batches_and_resumes_without_loading(
    standin_root: Path, model_dir: Path, tmp_path: Path, data_dir: Path
) -> None:
    lora = write_lora(tmp_path / "rl-lora", r=32)
    log = tmp_path / "standin-calls.jsonl"
    env = cli_env(PYTHONPATH=str(standin_root), STANDIN_VLLM_LOG=str(log))
    args = (
        "eval", "--checkpoint", f"vllm:{model_dir}+lora:{lora}", "--suite", "gsm8k", "--limit", "5",
        "--batch-size", "2", "--json", "--quiet", "--runs", str(tmp_path / "runs"),
    )  # fmt: skip
    proc = harness(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)[0]
    run_dir = Path(payload["run_dir"])
    assert payload["n_samples"] == 5 and payload["invocation"]["generated"] == 5

    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["call"] for c in calls] == ["LLM", "generate", "generate", "generate"]
    assert calls[0]["kwargs"]["max_lora_rank"] == 32 and calls[0]["main_thread"] is True
    assert [c["n_prompts"] for c in calls[1:]] == [2, 2, 1]  # the runner's batches, each one vLLM call
    assert all(c["lora"]["lora_name"] == "rl-lora" for c in calls[1:])
    assert all(s == calls[1]["sampling"][0] for c in calls[1:] for s in c["sampling"])
    assert calls[1]["sampling"][0] == {
        "n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 512, "stop": [], "seed": 0,
        "include_stop_str_in_output": False,
    }  # fmt: skip

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert (
        manifest["adapter"].startswith(f"vllm-{STANDIN_VERSION}:") and ":lora:rl-lora@" in manifest["adapter"]
    )
    records = read_samples(run_dir)
    assert len(records) == 5
    for record in records:
        completion = record["completions"][0]  # type: ignore[index]
        assert completion["texts"][0].startswith("[rl-lora] saw ")
        assert completion["texts"][0].endswith("The answer is 7.")
        assert completion["prompt_tokens"] > 500  # the 8-shot chat prompt

    again = harness(*args, env=env)
    assert again.returncode == 0, again.stderr
    assert len(log.read_text().splitlines()) == len(calls)  # all samples done: vLLM is never loaded


def test_standin_refuses_what_real_vllm_refuses(standin_path: Path) -> None:
    """The stand-in is only useful if it says no where vLLM does (messages from vllm/sampling_params.py)."""
    import vllm  # the stand-in

    with pytest.raises(ValueError, match="n must be 1 when using greedy sampling"):
        vllm.SamplingParams(n=2, temperature=0.0)
    with pytest.raises(TypeError, match="best_of"):
        vllm.SamplingParams(best_of=2)
    from vllm.lora.request import LoRARequest

    with pytest.raises(ValueError, match="id must be > 0"):
        LoRARequest(lora_name="x", lora_int_id=0, lora_path="/x")
    module: ModuleType = sys.modules["vllm"]
    assert module.__version__ == STANDIN_VERSION
