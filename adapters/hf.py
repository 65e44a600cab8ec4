"""transformers (CPU or GPU) with an optional peft LoRA: `hf:PATH[+lora:PATH]`.

- The model loads on the first generate(), so a cached or finished run never pays for it; the
  constructor only checks paths and fingerprints the files (the identity changes with the weights).
- Requests are rendered with the tokenizer's chat template (`add_generation_prompt=True`; with
  `enable_thinking=False` when the request's thinking budget is 0, which Qwen3-style templates read and
  others ignore); text requests are tokenized as they are. A rendered prompt that ends inside an open think
  tag marks its completion `opened_in_prompt` (harness.reasoning). A batch is LEFT-padded with an attention mask, so every prompt ends where
  generation starts and greedy results equal those of the same prompts one by one (tested).
- Decoding starts from a fresh GenerationConfig: greedy when temperature == 0, else sampling with top_p
  (no top_k) and the request's seed. A checkpoint's generation_config.json (repetition_penalty, top_k,
  ...) is ignored, so temperature 0 means greedy as in the OpenAI API and in the llama.cpp adapters.
- Stop strings end a sequence (transformers' StopStringCriteria) and the text is cut at the first one,
  like OpenAI servers; finish_reason is "stop" (EOS or a stop string) or "length".
- Dtype: float32 on CPU; on CUDA the checkpoint's dtype, with float32 served as bfloat16 (as vLLM does).
  Requests with different settings are generated in separate sub-batches; sampled outputs depend on
  the batch they were drawn in (one seed per sub-batch), greedy outputs do not.
- Log-probabilities (GenerationSettings.logprobs): generate() also returns each step's raw logits
  (`output_logits`; not `output_scores`, which are after temperature and top_p); a token's log-probability
  is log_softmax of them, the model's own distribution as in the llama.cpp and vLLM adapters. Offsets come
  from decoding the kept tokens incrementally; tokens from a stop string on are dropped (adapters/logprobs.py).
  generate() keeps every step's logits until it returns (steps x rows x vocab in the model's dtype).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from adapters.common import folder_fingerprint, truncate_at_stop
from adapters.hub import HubSnapshot, fetch_snapshot, hub_id_for
from adapters.logprobs import from_token_ids, token_cap
from adapters.options import opens_thinking
from harness.errors import UsageError
from harness.types import ApiKind, Completion, GenerationSettings, Request, TokenLogprobs

if TYPE_CHECKING:
    from adapters.options import AdapterOptions
    from harness.checkpoints import HfRef

DEFAULT_BATCH_SIZE = 8


def _check_model_dir(path: Path, hub: HubSnapshot | None = None) -> Path:
    where = (
        f"The hub model {hub.hub} (commit {hub.commit[:12]}, in {path})" if hub else f"The hf: folder {path}"
    )
    if not (path / "config.json").is_file():
        raise UsageError(
            f"{where} has no config.json, so it is not a transformers model folder.",
            "Point hf: at the folder that holds config.json and the weights.",
        )
    if not any(path.glob("*.safetensors")) and not any(path.glob("pytorch_model*.bin")):
        if hub is not None:  # only safetensors are downloaded: .bin weights run pickled code on load
            raise UsageError(
                f"{where} has no *.safetensors weights; the harness downloads only safetensors.",
                "Convert the weights to safetensors into a local folder and use hf:/path/to/folder.",
            )
        raise UsageError(
            f"{where} holds no weights (*.safetensors or pytorch_model*.bin).",
            "Export or copy the weights into it.",
        )
    return path.resolve()


def resolve_model(path_text: str) -> tuple[Path, HubSnapshot | None]:
    """The model folder of `hf:PATH` and, for a hub id, the snapshot it came from (see adapters/hub.py)."""
    hub = hub_id_for(path_text)
    if hub is not None:
        snapshot = fetch_snapshot(hub, form="hf")
        return _check_model_dir(snapshot.path, snapshot), snapshot
    path = Path(path_text).expanduser()
    if not path.is_dir():
        raise UsageError(
            f"The hf: model folder {path} does not exist.",
            "Point hf: at a transformers folder (config.json + weights), e.g. one written by "
            "`harness export-hf embedded DIR`, or at a hub id ORG/NAME (hf:meta-llama/Llama-3.2-1B).",
        )
    return _check_model_dir(path), None


def resolve_model_dir(path_text: str) -> Path:
    return resolve_model(path_text)[0]


def resolve_lora(path_text: str) -> tuple[Path, HubSnapshot | None]:
    """The peft adapter folder after '+lora:' and, for a hub id, its snapshot."""
    hub = hub_id_for(path_text)
    snapshot = fetch_snapshot(hub, form="hf", what="lora") if hub is not None else None
    path = snapshot.path if snapshot is not None else Path(path_text).expanduser()
    if not path.is_dir():
        raise UsageError(
            f"The LoRA folder {path} does not exist.",
            "Check the path after '+lora:' (a peft adapter folder, or a hub id ORG/NAME).",
        )
    if not (path / "adapter_config.json").is_file():
        raise UsageError(
            f"The LoRA folder {path} has no adapter_config.json, so it is not a peft adapter.",
            "Point '+lora:' at the folder written by PeftModel.save_pretrained().",
        )
    return path.resolve(), snapshot


def resolve_lora_dir(path_text: str) -> Path:
    return resolve_lora(path_text)[0]


def _config_dtype(model_dir: Path) -> str:
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return str(config.get("dtype") or config.get("torch_dtype") or "float32")


def resolve_device_and_dtype(requested: str | None, model_dir: Path) -> tuple[str, str]:
    import torch

    device = requested or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise UsageError(f"Unknown torch device '{device}'.", "Use cpu, cuda or cuda:N.") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device} was asked for, but torch sees no CUDA GPU.", "Use --device cpu.")
    if kind != "cuda":
        return device, "float32"  # half precision on CPU is slow or unsupported for many kernels
    dtype = _config_dtype(model_dir)
    return device, "bfloat16" if dtype == "float32" else dtype


def _eos_ids(configured: int | list[int] | None, tokenizer_eos: int | None) -> list[int]:
    """EOS ids from the checkpoint's generation config (possibly several) and the tokenizer."""
    ids = set(configured if isinstance(configured, list) else [] if configured is None else [configured])
    if tokenizer_eos is not None:
        ids.add(int(tokenizer_eos))
    return sorted(ids)


@dataclass(frozen=True)
class _Row:
    index: int  # position in the generate() call's requests
    request: Request


class HfAdapter:
    concurrency = 1  # one model instance: batches run one after another under a lock

    def __init__(
        self,
        model_dir: Path,
        lora_dir: Path | None = None,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int = DEFAULT_BATCH_SIZE,
        model_hub: HubSnapshot | None = None,
        lora_hub: HubSnapshot | None = None,
        think_open_tag: str = "<think>",
    ) -> None:
        self.model_dir = model_dir
        self.think_open_tag = think_open_tag
        self.lora_dir = lora_dir
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.api: ApiKind = "chat"
        version = importlib.metadata.version("transformers")
        # A hub model is named by repository and commit sha (its folder's name is only the sha).
        model_name = model_hub.label() if model_hub else model_dir.name
        identity = f"transformers-{version}:hf:{model_name}:{folder_fingerprint(model_dir)}"
        if lora_dir is not None:
            lora_name = lora_hub.label() if lora_hub else lora_dir.name
            identity += f"+lora:{lora_name}:{folder_fingerprint(lora_dir)}"
        self._identity = f"{identity}:{dtype}"
        self._model: Any = None
        self._tokenizer: Any = None
        self._eos: list[int] = []
        self._lock = threading.Lock()

    def identity(self) -> str:
        return self._identity

    async def preflight(self) -> None:
        from adapters.hf_export import has_chat_template

        if not has_chat_template(self.model_dir):
            raise UsageError(
                f"The tokenizer in {self.model_dir} has no chat template, so chat prompts cannot be rendered.",
                "Save a tokenizer with a chat_template into the folder (harness export-hf keeps the GGUF's); "
                "base models such as meta-llama/Llama-3.2-1B ship none: see docs/course.md "
                "(chat templates for base models).",
            )

    def _load(self) -> tuple[Any, Any]:
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
            from transformers.utils import logging as hf_logging

            # No "Loading weights" bar in the middle of a run's output.
            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

            tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
            tokenizer.padding_side = "left"  # generation continues right after each prompt's last token
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model: Any = AutoModelForCausalLM.from_pretrained(
                self.model_dir, dtype=getattr(torch, self.dtype)
            )
            self._eos = _eos_ids(model.generation_config.eos_token_id, tokenizer.eos_token_id)
            # generate() fills every setting a request leaves unset from model.generation_config, so a
            # checkpoint's sampling defaults (repetition_penalty, top_k, ...) would leak into "greedy".
            # Keep only the special tokens.
            model.generation_config = cast(Any, GenerationConfig)(
                bos_token_id=model.generation_config.bos_token_id,
                eos_token_id=self._eos,
                pad_token_id=tokenizer.pad_token_id,
            )
            if self.lora_dir is not None:
                from peft import PeftModel

                model = cast(Any, PeftModel).from_pretrained(model, str(self.lora_dir))
            self._model = model.to(self.device).eval()
            self._tokenizer = tokenizer
        return self._model, self._tokenizer

    def _render(self, tokenizer: Any, request: Request) -> str:
        if request.messages is None:
            return request.prompt or ""
        return render_chat(tokenizer, request)

    def _generate_batch(self, rows: Sequence[_Row], settings: GenerationSettings) -> list[Completion]:
        import torch
        from transformers import GenerationConfig

        model, tokenizer = self._load()
        api = rows[0].request.api
        prompts = [self._render(tokenizer, r.request) for r in rows]
        opened = [api == "chat" and opens_thinking(p, self.think_open_tag) for p in prompts]
        # A chat template writes its own special tokens; raw text prompts get the tokenizer's (e.g. BOS).
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=api == "text").to(
            self.device
        )
        sampling = settings.temperature > 0
        # Greedy n > 1 would give n identical texts: decode once and repeat it.
        per_prompt = settings.n if sampling else 1
        eos_ids = self._eos
        config = cast(Any, GenerationConfig)(
            max_new_tokens=settings.max_tokens,
            do_sample=sampling,
            num_return_sequences=per_prompt,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=eos_ids,
            stop_strings=list(settings.stop) or None,
            **(
                {"temperature": settings.temperature, "top_p": settings.top_p, "top_k": 0} if sampling else {}
            ),
        )
        if sampling and settings.seed is not None:
            torch.manual_seed(settings.seed)
        start = time.perf_counter()
        extra = {"output_logits": True, "return_dict_in_generate": True} if settings.logprobs else {}
        with torch.inference_mode():
            output = model.generate(
                **encoded,
                generation_config=config,
                tokenizer=tokenizer if settings.stop else None,
                **extra,
            )
        latency = time.perf_counter() - start
        sequences = output.sequences if settings.logprobs else output
        new_tokens = sequences[:, encoded["input_ids"].shape[1] :].tolist()
        chosen = _chosen_logprobs(output.logits, sequences, len(output.logits)) if settings.logprobs else None
        prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        completions = []
        for i in range(len(rows)):
            texts: list[str] = []
            reasons: list[str] = []
            blocks: list[TokenLogprobs | None] = []
            used = 0
            for row in range(i * per_prompt, (i + 1) * per_prompt):
                text, reason, count = self._finish(new_tokens[row], tokenizer, eos_ids, settings)
                texts.append(text)
                reasons.append(reason)
                used += count
                if chosen is not None:
                    blocks.append(
                        _text_logprobs(tokenizer, new_tokens[row][:count], chosen[row][:count], text)
                    )
            if not sampling:
                texts, reasons, used = texts * settings.n, reasons * settings.n, used * settings.n
                blocks = blocks * settings.n
            completions.append(
                Completion(
                    texts=tuple(texts),
                    finish_reasons=tuple(reasons),
                    prompt_tokens=int(prompt_lengths[i]),
                    completion_tokens=used,
                    latency_s=latency / len(rows),  # a share of the batch: sums to generation time
                    opened_in_prompt=opened[i],
                    logprobs=tuple(blocks) if any(b is not None for b in blocks) else (),
                )
            )
        return completions

    @staticmethod
    def _finish(
        tokens: list[int], tokenizer: Any, eos_ids: Sequence[int], settings: GenerationSettings
    ) -> tuple[str, str, int]:
        """(text, finish_reason, completion tokens) of one generated row."""
        ended = next((k for k, t in enumerate(tokens) if t in eos_ids), None)
        if ended is not None:
            tokens = tokens[:ended]  # the EOS itself is not text, and not counted (as llama.cpp)
        else:
            # A row that a stop string ended early (or that waited for longer rows) is padded at the end.
            while tokens and tokens[-1] == tokenizer.pad_token_id:
                tokens = tokens[:-1]
        text, stopped = truncate_at_stop(tokenizer.decode(tokens, skip_special_tokens=True), settings.stop)
        reason = "stop" if ended is not None or stopped or len(tokens) < settings.max_tokens else "length"
        return text, reason, len(tokens)

    def _generate_sync(self, requests: Sequence[Request]) -> list[Completion]:
        groups: dict[tuple[str, GenerationSettings], list[_Row]] = {}
        for index, request in enumerate(requests):
            groups.setdefault((request.api, request.settings), []).append(_Row(index, request))
        results: list[Completion | None] = [None] * len(requests)
        with self._lock:  # one model: never two generate() calls at once
            for (_, settings), rows in groups.items():
                for start in range(0, len(rows), self.batch_size):
                    chunk = rows[start : start + self.batch_size]
                    for row, completion in zip(chunk, self._generate_batch(chunk, settings), strict=True):
                        results[row.index] = completion
        return [c for c in results if c is not None]

    async def generate(self, requests: Sequence[Request]) -> list[Completion]:
        if not requests:
            return []
        return await asyncio.to_thread(self._generate_sync, requests)

    async def aclose(self) -> None:
        self._model = None
        self._tokenizer = None


def _chosen_logprobs(logits: Sequence[Any], sequences: Any, steps: int) -> list[list[float]]:
    """Per output row, the log-probability of each generated token under the raw logits of its step
    (one step at a time: all steps' log_softmax at once would be steps x rows x vocab floats)."""
    import torch

    generated = sequences[:, sequences.shape[1] - steps :]
    picked = [
        torch.log_softmax(step.float(), dim=-1).gather(1, generated[:, k : k + 1]).squeeze(1)
        for k, step in enumerate(logits)
    ]
    return [[float(x) for x in row] for row in torch.stack(picked, dim=1).cpu().tolist()]


def _text_logprobs(
    tokenizer: Any, tokens: list[int], logprobs: list[float], text: str
) -> TokenLogprobs | None:
    def decode(ids: list[int]) -> str:
        return str(tokenizer.decode(ids, skip_special_tokens=True))

    return from_token_ids(decode, tokens, logprobs, text, token_cap(len(tokens)))


def render_chat(tokenizer: Any, request: Request) -> str:
    """A chat request through the tokenizer's template; thinking off when the thinking budget is 0."""
    assert request.messages is not None
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    extra = {"enable_thinking": False} if request.settings.thinking_budget == 0 else {}
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra))


def create_hf_adapter(ref: HfRef, options: AdapterOptions) -> HfAdapter:
    model_dir, model_hub = resolve_model(ref.path)
    lora_dir, lora_hub = resolve_lora(ref.lora) if ref.lora else (None, None)
    device, dtype = resolve_device_and_dtype(options.device, model_dir)
    return HfAdapter(
        model_dir,
        lora_dir,
        device=device,
        dtype=dtype,
        batch_size=options.batch_size or DEFAULT_BATCH_SIZE,
        model_hub=model_hub,
        lora_hub=lora_hub,
        think_open_tag=options.think_open_tag,
    )
