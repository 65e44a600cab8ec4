"""In-process vLLM: `vllm:BASE[+lora:PATH]` (CUDA only; `pip install -e '.[vllm]'`).

How it drives vLLM, and why (API facts checked against vllm-project/vllm sources, see the unit tests):

- One `vllm.LLM(model=BASE, enable_lora=..., max_lora_rank=..., tensor_parallel_size=..., seed=0)`,
  built on first use (preflight or generate), so a fully cached or finished run never loads it. It is
  built on the event-loop thread, not in a worker: vLLM 0.8 to 0.10.1 silently fall back to their older
  V0 engine when the engine is constructed off the main thread (the guard was removed in vLLM PR #23298).
  `LLM.generate` then runs in a worker thread so the event loop keeps writing finished samples.
- Every generate() call sends all its requests in ONE `LLM.generate(prompts, [SamplingParams per prompt],
  lora_request=...)`: vLLM's continuous batching is where its throughput comes from. The runner hands
  over `batch_size` requests per call with concurrency 1. Bigger batches keep the GPU fuller (fewer
  ramp-up/drain tails, where the last long answers run nearly alone); smaller ones append finished
  samples to disk sooner, so an interrupted run loses less. 512 is in between: a few GSM8K/IFEval-sized
  batches per suite, each a minute or two for a 1B model on one GPU.
- Chat requests use the tokenizer's own chat template (`add_generation_prompt=True`), rendered to text
  and then tokenized WITHOUT special tokens and sent as token ids. The template already holds BOS; vLLM's
  own `LLM.chat` does exactly this (`tokenizer.encode(prompt, add_special_tokens=False)`), so no doubled
  BOS. Text requests are sent as strings (vLLM adds special tokens, like its completions API).
  Reasoning: a thinking budget of 0 renders with `enable_thinking=False` (Qwen3-style templates); a budget
  > 0 is already inside max_tokens, and SamplingParams' `thinking_token_budget` is not sent (older vLLM
  lacks it; newer ones need a reasoning config). A prompt ending inside an open think tag marks its
  completion `opened_in_prompt`.
- Sampling maps GenerationSettings field by field (see `sampling_plan`). vLLM rejects `n > 1` with greedy
  sampling, so greedy `n > 1` becomes n separate greedy prompts (each really decoded, as llama.cpp does).
- LoRA: `max_lora_rank` is the adapter's rank rounded up to a size vLLM accepts, and one
  `LoRARequest(lora_name=..., lora_int_id=1, lora_path=...)` applies to every prompt. Keywords, not
  positions: forks have reordered those fields.
- Log-probabilities (GenerationSettings.logprobs): `SamplingParams(logprobs=0)`, the sampled token's own
  log-probability only (vLLM always includes it; its default logprobs_mode is the raw model distribution).
  `CompletionOutput.logprobs` holds one {token_id: Logprob(logprob, rank, decoded_token)} per token id
  (a list, or vLLM's FlatLogprobs, which indexes the same way); offsets come from decoding the token ids
  with the model's tokenizer, tokens from a stop string on are dropped (adapters/logprobs.py).
"""

from __future__ import annotations

import asyncio
import gc
import importlib.metadata
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from adapters.common import folder_fingerprint
from adapters.hub import HubSnapshot, fetch_snapshot, hub_id_for
from adapters.logprobs import token_cap, vllm_sampled_logprobs
from adapters.options import AdapterOptions, opens_thinking
from adapters.vllm_lora import (  # noqa: F401  (re-exported: the adapter's LoRA checks)
    VLLM_LORA_RANKS,
    lora_rank,
    read_lora_config,
    resolve_lora,
    vllm_max_lora_rank,
)
from harness.checkpoints import VllmRef
from harness.errors import EndpointError, MissingExtraError, UsageError
from harness.types import Adapter, ApiKind, Completion, GenerationSettings, Message, Request, TokenLogprobs

DEFAULT_BATCH_SIZE = 512
LORA_INT_ID = 1  # vLLM requires lora_int_id > 0, unique per adapter; we load one
# CompletionOutput.finish_reason values (vllm/v1/engine/__init__.py FINISH_REASON_STRINGS) whose text
# is not a real answer: caching it would make a transient failure permanent.
FAILED_FINISH_REASONS = frozenset({"abort", "error"})


def vllm_version() -> str:
    try:
        return importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        raise MissingExtraError(
            "A vllm: checkpoint needs the 'vllm' extra, which is not installed (no 'vllm' distribution).",
            "Install it on a CUDA machine: pip install -e '.[vllm]'.",
        ) from None


# ---------------------------------------------------------------------------------------------------
# Pure mapping (no vllm import): settings, prompts, outputs, LoRA rank, fingerprints.


@dataclass(frozen=True)
class SamplingPlan:
    """SamplingParams keyword arguments for one request, and how many prompts carry them."""

    kwargs: Mapping[str, Any]
    copies: int  # > 1 only for greedy n > 1, which vLLM refuses as one request


def sampling_plan(settings: GenerationSettings) -> SamplingPlan:
    """GenerationSettings -> vLLM SamplingParams kwargs, field by field (vllm/sampling_params.py).

    Our ranges are checked here, as a UsageError, instead of surfacing as vLLM's validation error from
    inside a worker thread. `include_stop_str_in_output=False` is vLLM's default, passed explicitly
    because the stop string must be cut like an OpenAI server does.
    """
    s = settings
    if s.max_tokens < 1:
        raise UsageError(f"max_tokens must be at least 1, not {s.max_tokens}.", "Fix --max-tokens.")
    if s.n < 1:
        raise UsageError(f"n must be at least 1, not {s.n}.", "Fix --samples.")
    if not 0.0 <= s.temperature <= 2.0:
        raise UsageError(f"vLLM takes a temperature in [0, 2], not {s.temperature}.", "Fix --temperature.")
    if not 0.0 < s.top_p <= 1.0:
        raise UsageError(f"vLLM takes a top_p in (0, 1], not {s.top_p}.", "Fix --top-p.")
    if any(not stop for stop in s.stop):
        raise UsageError("vLLM refuses an empty stop string.", "Drop the empty stop sequence.")
    greedy = s.temperature == 0.0
    kwargs: dict[str, Any] = {
        "n": 1 if greedy else s.n,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "max_tokens": s.max_tokens,
        "stop": list(s.stop),
        "seed": s.seed,
        "include_stop_str_in_output": False,
    }
    if s.logprobs:
        kwargs["logprobs"] = 0
    return SamplingPlan(kwargs=kwargs, copies=s.n if greedy else 1)


def chat_prompt_ids(tokenizer: Any, messages: Sequence[Message], thinking_off: bool = False) -> list[int]:
    """Token ids of the chat-templated prompt, as vLLM's own LLM.chat builds them."""
    return list(
        tokenizer.encode(chat_prompt_text(tokenizer, messages, thinking_off), add_special_tokens=False)
    )


def chat_prompt_text(tokenizer: Any, messages: Sequence[Message], thinking_off: bool = False) -> str:
    """The chat-templated prompt; `thinking_off` passes enable_thinking=False to the template."""
    no_template = UsageError(
        "This base model's tokenizer has no chat template, so chat requests cannot be formatted.",
        "Use an instruct/chat model (or one whose tokenizer_config.json sets chat_template).",
    )
    if hasattr(tokenizer, "chat_template") and not tokenizer.chat_template:
        raise no_template
    conversation = [{"role": m.role, "content": m.content} for m in messages]
    extra = {"enable_thinking": False} if thinking_off else {}
    try:
        text = tokenizer.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=False, **extra
        )
    except ValueError as error:  # transformers: "Cannot use chat template functions because ... not set"
        if "chat_template" in str(error) or "chat template" in str(error):
            raise no_template from error
        raise
    return str(text)


def completion_from_outputs(
    outputs: Sequence[Any],
    latency_s: float = 0.0,
    logprobs_cap: int | None = None,
    decode: Callable[[list[int]], str] | None = None,
) -> Completion:
    """vLLM RequestOutput(s) of one request -> Completion.

    Several outputs only when a greedy n > 1 request was split into copies. Texts follow each
    output's `index`; prompt tokens are counted once; completion tokens are summed over all texts.
    With `logprobs_cap` (log-probabilities were asked for), each text's are read (vllm_sampled_logprobs).
    """
    blocks: list[TokenLogprobs | None] = []
    texts: list[str] = []
    reasons: list[str] = []
    completion_tokens = 0
    for output in outputs:
        for choice in sorted(output.outputs, key=lambda c: int(c.index)):
            reason = choice.finish_reason
            if reason in FAILED_FINISH_REASONS:
                raise EndpointError(
                    f"vLLM finished a request with finish_reason '{reason}' instead of an answer.",
                    "Re-run the same command: finished samples are kept and only the rest is generated.",
                )
            texts.append(str(choice.text))
            reasons.append(str(reason) if reason else "unknown")
            completion_tokens += len(choice.token_ids)
            if logprobs_cap is not None:
                blocks.append(vllm_sampled_logprobs(choice, logprobs_cap, decode))
    prompt_ids = getattr(outputs[0], "prompt_token_ids", None) if outputs else None
    return Completion(
        texts=tuple(texts),
        finish_reasons=tuple(reasons),
        prompt_tokens=len(prompt_ids or ()),
        completion_tokens=completion_tokens,
        latency_s=latency_s,
        logprobs=tuple(blocks) if any(b is not None for b in blocks) else (),
    )


def resolve_base(base: str) -> tuple[str, str]:
    """(what LLM(model=...) gets, label for identity): a local folder, fingerprinted, or a hub id as named.

    The factory (create_vllm_adapter) downloads hub ids first and passes the snapshot folder with a
    `hub:ORG/NAME@SHA` label; a hub id reaching this function comes from a direct VllmAdapter(...)
    construction and is left to vLLM, unpinned."""
    path = Path(base).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(
                f"{path} has no config.json, so it is not a transformers model folder.",
                "Point vllm: at a save_pretrained() folder or a hub id such as Qwen/Qwen2.5-0.5B-Instruct.",
            )
        resolved = path.resolve()
        return str(resolved), f"{resolved}@{folder_fingerprint(resolved)}"
    if path.exists():
        raise UsageError(f"{path} is a file, not a model folder.", "vLLM loads a transformers model folder.")
    if base.startswith(("/", "./", "../", "~")):
        raise UsageError(f"The base model folder {path} does not exist.", "Check the path after 'vllm:'.")
    return base, f"hub:{base}"  # the hub revision is not pinned; use a local folder to pin weights


def llm_kwargs(
    model: str, max_lora_rank: int | None, tensor_parallel_size: int, max_model_len: int | None = None
) -> dict[str, Any]:
    """Keyword arguments for vllm.LLM (vllm/entrypoints/llm.py; LoRA fields reach EngineArgs)."""
    kwargs: dict[str, Any] = {"model": model, "tensor_parallel_size": tensor_parallel_size, "seed": 0}
    if max_lora_rank is not None:
        kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=max_lora_rank)
    if max_model_len is not None:
        kwargs["max_model_len"] = max_model_len
    return kwargs


# ---------------------------------------------------------------------------------------------------
# The adapter.


class VllmAdapter:
    concurrency = 1  # one LLM: batches go one after another, each fully inside vLLM's scheduler

    def __init__(
        self,
        base: str,
        lora_dir: Path | None = None,
        tensor_parallel_size: int = 1,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_model_len: int | None = None,
        base_hub: HubSnapshot | None = None,
        lora_hub: HubSnapshot | None = None,
        think_open_tag: str = "<think>",
    ) -> None:
        self.api: ApiKind = "chat"
        self.think_open_tag = think_open_tag
        self.batch_size = max(1, batch_size)
        self.model, base_label = resolve_base(base)
        if base_hub is not None:  # a downloaded snapshot: named by repository and commit, not its cache path
            base_label = base_hub.label()
        self.lora_dir = lora_dir
        self.max_lora_rank: int | None = None
        parts = [f"vllm-{vllm_version()}", base_label]
        if lora_dir is not None:
            self.max_lora_rank = vllm_max_lora_rank(lora_rank(read_lora_config(lora_dir)))
            lora_name = lora_hub.label() if lora_hub is not None else lora_dir.name
            parts.append(f"lora:{lora_name}@{folder_fingerprint(lora_dir)}")
        parts.append(f"tp{tensor_parallel_size}")
        if max_model_len is not None:
            parts.append(f"ctx{max_model_len}")
        self._identity = ":".join(parts)
        self._llm_kwargs = llm_kwargs(self.model, self.max_lora_rank, tensor_parallel_size, max_model_len)
        self._llm: Any = None
        self._lora_request: Any = None
        self._sampling_cache: dict[GenerationSettings, Any] = {}
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()  # vllm.LLM is not safe for concurrent generate() calls

    def identity(self) -> str:
        return self._identity

    def _load(self) -> Any:
        with self._load_lock:
            if self._llm is None:
                import vllm
                from vllm.lora.request import LoRARequest

                try:
                    llm = vllm.LLM(**self._llm_kwargs)
                except Exception as error:  # no GPU, out of memory, unknown model, missing files...
                    raise EndpointError(
                        f"vLLM could not load '{self.model}': {type(error).__name__}: {error}",
                        "vLLM needs a CUDA GPU and the model's weights (local folder or hub access); "
                        "on CPU use hf:PATH or gguf:PATH.",
                    ) from error
                if self.lora_dir is not None:
                    self._lora_request = LoRARequest(
                        lora_name=self.lora_dir.name, lora_int_id=LORA_INT_ID, lora_path=str(self.lora_dir)
                    )
                self._llm = llm
            return self._llm

    async def preflight(self) -> None:
        self._load()  # on the event-loop thread: see the module docstring

    def _sampling_params(self, settings: GenerationSettings) -> Any:
        params = self._sampling_cache.get(settings)
        if params is None:
            import vllm

            params = vllm.SamplingParams(**sampling_plan(settings).kwargs)
            self._sampling_cache[settings] = params
        return params

    def _prompt(self, llm: Any, request: Request) -> tuple[Any, bool]:
        """(what LLM.generate gets, whether the prompt ends inside an open think tag)."""
        if request.messages is None:
            return request.prompt, False
        tokenizer, off = llm.get_tokenizer(), request.settings.thinking_budget == 0
        text = chat_prompt_text(tokenizer, request.messages, off)
        ids = list(tokenizer.encode(text, add_special_tokens=False))
        return {"prompt_token_ids": ids}, opens_thinking(text, self.think_open_tag)

    def _generate_sync(self, llm: Any, requests: Sequence[Request]) -> list[Completion]:
        prompts: list[Any] = []
        params: list[Any] = []
        copies: list[int] = []
        opened: list[bool] = []
        for request in requests:
            count = sampling_plan(request.settings).copies
            (prompt, ends_open), sp = self._prompt(llm, request), self._sampling_params(request.settings)
            opened.append(ends_open)
            prompts.extend([prompt] * count)
            params.extend([sp] * count)
            copies.append(count)
        start = time.perf_counter()
        with self._generate_lock:
            try:
                outputs = llm.generate(prompts, params, use_tqdm=False, lora_request=self._lora_request)
            except ValueError as error:  # vLLM's verdict on a prompt, e.g. longer than max_model_len
                raise UsageError(
                    f"vLLM rejected a batch of {len(prompts)} prompts: {error}",
                    "A prompt plus max_tokens may exceed the model's context; try a lower --max-tokens.",
                ) from error
        # The batch's wall time, shared out: summed over a run it is the time spent generating.
        share = (time.perf_counter() - start) / max(1, len(requests))
        if len(outputs) != len(prompts):
            raise EndpointError(
                f"vLLM returned {len(outputs)} outputs for {len(prompts)} prompts.",
                "This is a bug; please report it.",
            )
        completions, offset = [], 0
        tokenizer: Any = llm.get_tokenizer() if any(r.settings.logprobs for r in requests) else None

        def decode(ids: list[int]) -> str:
            return str(tokenizer.decode(ids, skip_special_tokens=True))  # as vLLM detokenizes the text

        for request, count, ends_open in zip(requests, copies, opened, strict=True):
            cap = token_cap(request.settings.max_tokens) if request.settings.logprobs else None
            completion = completion_from_outputs(outputs[offset : offset + count], share, cap, decode)
            completion = replace(completion, opened_in_prompt=ends_open) if ends_open else completion
            offset += count
            if len(completion.texts) != request.settings.n:
                raise EndpointError(
                    f"vLLM returned {len(completion.texts)} texts where n={request.settings.n} were asked.",
                    "This is a bug; please report it.",
                )
            completions.append(completion)
        return completions

    async def generate(self, requests: Sequence[Request]) -> list[Completion]:
        if not requests:
            return []
        llm = self._load()
        return await asyncio.to_thread(self._generate_sync, llm, requests)

    async def aclose(self) -> None:
        # vLLM frees the GPU and stops its engine processes when the LLM is garbage-collected.
        self._llm = None
        self._lora_request = None
        self._sampling_cache.clear()
        gc.collect()


def create_vllm_adapter(ref: VllmRef, options: AdapterOptions) -> Adapter:
    """`vllm:BASE[+lora:PATH]`; a BASE or PATH that is no local path but a hub id is downloaded first
    (adapters/hub.py), so vLLM loads the pinned snapshot and the identity names its commit."""
    base, base_hub = ref.base, None
    base_id = hub_id_for(ref.base)
    if base_id is not None:
        base_hub = fetch_snapshot(base_id, form="vllm")
        base = str(base_hub.path)
    lora_dir, lora_hub = None, None
    if ref.lora:
        lora_id = hub_id_for(ref.lora)
        lora_hub = fetch_snapshot(lora_id, form="vllm", what="lora") if lora_id is not None else None
        lora_dir = lora_hub.path if lora_hub is not None else resolve_lora(ref.lora)
    return VllmAdapter(
        base,
        base_hub=base_hub,
        lora_hub=lora_hub,
        lora_dir=lora_dir,
        tensor_parallel_size=options.tensor_parallel_size,
        batch_size=options.batch_size or DEFAULT_BATCH_SIZE,
        max_model_len=options.n_ctx,
        think_open_tag=options.think_open_tag,
    )
