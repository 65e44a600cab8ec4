"""lm-eval model type "harness": lm-eval generation tasks through any harness checkpoint reference.

    python -m harness.bridges.lm_eval_model --model harness --model_args checkpoint=<ref> --tasks ...

takes exactly lm-eval's command line. lm-eval 0.4.13 cannot discover third-party model types: its
registry (lm_eval/api/registry.py) accepts lazy "module:attr" placeholders and EntryPoint objects, but
nothing ever reads an entry-point group (`importlib.metadata.entry_points` is called nowhere in lm_eval);
models come from a fixed table in lm_eval/models/__init__.py, and `--model` only looks names up there.
So plain `lm_eval --model harness` cannot work without patching lm-eval; this module registers the type
and then runs lm-eval's own CLI (`lm_eval.__main__.cli_evaluate`). From Python, importing this module
registers it: `import harness.bridges.lm_eval_model; lm_eval.simple_evaluate(model="harness", ...)`.

Model args: `checkpoint` (any --checkpoint form; default embedded), or its alias `pretrained` (lm-eval's
results tracker names the output folder after `pretrained`, else a random id); `max_gen_toks` (when a task
sets none; default 256 like lm-eval's); `seed` (default 0); and the options in
harness.bridges.KNOWN_OPTIONS. lm-eval's --batch_size becomes the adapter's batch size only when it is a
number above 1 (its default 1 would slow batched backends down). --device goes to the backend (hf),
except lm-eval's own default "cuda:0", which it passes even without the flag: then the backend chooses
(cuda when available, else cpu), so a CPU machine works without --device cpu.

Reasoning models: `reasoning=think-tags|auto|field` (with `think_open=...,think_close=...` for other
tags) splits each response with harness.reasoning; lm-eval gets the answer only, cut at the task's
`until` after the thinking is removed (the stops are not sent to the backend: they would end generation
inside the thinking), and "" for a response whose thinking never closed, never the thinking itself.
lm-eval's own `think_end_token` keeps everything after the last close tag, or the whole text when there is
none; tests/unit/test_reasoning_bridges.py shows where the two agree and differ.

Our backends generate text; they do not score continuations, so loglikelihood requests (multiple-choice
and perplexity tasks) fail with a clear error.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import sys
import threading
import weakref
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from lm_eval.api.model import LM
from lm_eval.api.registry import model_registry

from harness.batching import RequestBatcher
from harness.bridges import cut_at_stop, open_checkpoint
from harness.bridges.reasoning_options import answer_for_peer, backend_settings, reasoning_from_options
from harness.checkpoints import EndpointRef
from harness.errors import HarnessError, UsageError
from harness.reasoning import ReasoningSpec, split_completion
from harness.types import Completion, GenerationSettings, Message, Request

MODEL_NAME = "harness"
LM_EVAL_DEFAULT_DEVICE = "cuda:0"  # EvaluatorConfig.device's default, passed even without --device
DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's own default when a task sets no max_gen_toks
_ROLES = ("system", "user", "assistant")
_T = TypeVar("_T")

_NO_LOGLIKELIHOOD = (
    "The harness lm-eval model generates text only: its backends (llama.cpp, transformers, vLLM, "
    "Tinker, OpenAI-compatible servers) are driven through generation, and no log-probabilities of "
    "given continuations come back. Use generation tasks (output_type: generate_until), e.g. gsm8k or "
    "ifeval, or lm-eval's own hf/vllm model types for loglikelihood and multiple-choice tasks."
)


class _LoopThread:
    """One event loop for the model's lifetime: adapters hold loop-bound clients (aiohttp sessions),
    and lm-eval calls us synchronously, possibly more than once."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="harness-lm-eval", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


def chat_context(messages: Sequence[dict[str, str]]) -> Any:
    """`--apply_chat_template`: keep the messages themselves (JSON, lm-eval's JsonChatStr like its own chat
    API models), so they are sent as a chat request and the backend applies its own template."""
    from lm_eval.models.api_models import JsonChatStr

    return JsonChatStr(json.dumps(list(messages), ensure_ascii=False))


def request_for(
    context: Any, gen_kwargs: dict[str, Any], default_max: int, seed: int, sample_id: str
) -> Request:
    """One lm-eval generate_until instance -> our Request (messages when chat-templated, else a prompt)."""
    kwargs = dict(gen_kwargs)
    until = kwargs.pop("until", None) or []
    stops = (until,) if isinstance(until, str) else tuple(str(s) for s in until)
    max_tokens = next(
        (kwargs[k] for k in ("max_gen_toks", "max_new_tokens", "max_tokens") if kwargs.get(k) is not None),
        default_max,
    )
    temperature = float(kwargs.get("temperature") or 0.0)
    if kwargs.get("do_sample") is False:
        temperature = 0.0  # lm-eval's rule: do_sample=False means greedy whatever the temperature
    elif kwargs.get("do_sample") and temperature == 0.0:
        temperature = 1.0  # sampling asked for with no temperature: the usual default
    settings = GenerationSettings(
        max_tokens=int(max_tokens),
        temperature=temperature,
        top_p=float(kwargs.get("top_p") or 1.0),
        stop=stops,
        n=1,
        seed=seed,
    )
    prompt = getattr(context, "prompt", context)  # JsonChatStr carries the JSON in .prompt
    if type(context).__name__ == "JsonChatStr":
        messages = json.loads(prompt)
        bad = sorted({str(m.get("role")) for m in messages} - set(_ROLES))
        if bad:
            raise UsageError(
                f"lm-eval sent chat roles {', '.join(bad)}; the harness takes {', '.join(_ROLES)}."
            )
        return Request(
            sample_id=sample_id,
            settings=settings,
            messages=tuple(Message(m["role"], str(m["content"])) for m in messages),
        )
    return Request(sample_id=sample_id, settings=settings, prompt=str(prompt))


def answer_for_lm_eval(spec: ReasoningSpec, completion: Completion, until: tuple[str, ...]) -> str:
    """What lm-eval scores: the answer with the thinking removed first, then cut at `until` (lm-eval's own
    order); "" when the thinking never closed."""
    if not spec.enabled:
        return cut_at_stop(completion.text, until)
    return answer_for_peer(split_completion(spec, completion)[0], until)


class HarnessLM(LM):  # type: ignore[misc]  # lm_eval is untyped
    def __init__(
        self,
        checkpoint: str | None = None,
        pretrained: str | None = None,
        max_gen_toks: int = DEFAULT_MAX_GEN_TOKS,
        seed: int = 0,
        batch_size: Any = None,
        max_batch_size: Any = None,
        device: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        if checkpoint is not None and pretrained is not None and str(checkpoint) != str(pretrained):
            raise UsageError(
                f"--model_args names two checkpoints: checkpoint={checkpoint} and pretrained={pretrained}.",
                "Give one of them.",
            )
        reference = str(checkpoint if checkpoint is not None else pretrained or "embedded")
        if str(batch_size).isdigit() and int(batch_size) > 1:
            options.setdefault("batch_size", int(batch_size))
        if device is not None and device != LM_EVAL_DEFAULT_DEVICE:
            options.setdefault("device", device)
        self.max_gen_toks = int(max_gen_toks)
        self.seed = int(seed)
        self.reasoning, options = reasoning_from_options(options, "--model_args")
        self._opened = open_checkpoint(reference, options, "--model_args")
        self._loop = _LoopThread()
        self._batcher = RequestBatcher(self._opened.adapter)
        self._closed = False
        _OPEN_MODELS.add(self)
        # Fail before lm-eval loads any task when an endpoint is down or a key is missing.
        self._loop.run(self._opened.adapter.preflight())

    @property
    def checkpoint(self) -> str:
        return self._opened.ref.raw

    @property
    def tokenizer_name(self) -> str:
        # Keys lm-eval's request cache for chat-templated prompts: the backend applies its own template.
        return self._opened.adapter.identity()

    def chat_template(self, chat_template: bool | str = False) -> str:
        return f"the backend's own chat template ({self._opened.adapter.identity()})"

    def apply_chat_template(
        self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> Any:
        return chat_context(chat_history)

    def get_model_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"harness_checkpoint": self.checkpoint, "harness_adapter": self.tokenizer_name}
        if self.reasoning.enabled:  # lm-eval's results record how the answers were cut out
            info["harness_reasoning"] = self.reasoning.pinned()["reasoning"]
        if self._opened.lineage is not None:
            info["harness_lineage"] = dict(self._opened.lineage)
        return info

    def _requests(self, instances: Sequence[Any]) -> list[Request]:
        seen: Counter[str] = Counter()
        requests = []
        for instance in instances:
            context, gen_kwargs = instance.args
            # lm-eval repeats (`repeats: N`) send the same instance N times: with sampling, each copy gets
            # its own seed so the samples differ; greedy copies stay identical, as they should.
            key = json.dumps(
                [str(getattr(context, "prompt", context)), gen_kwargs], sort_keys=True, default=str
            )
            seed = self.seed + seen[key]
            seen[key] += 1
            sample_id = f"{instance.task_name}/{instance.doc_id}"
            requests.append(request_for(context, gen_kwargs or {}, self.max_gen_toks, seed, sample_id))
        adapter, ref = self._opened.adapter, self._opened.ref
        if (
            adapter.api == "chat"
            and isinstance(ref, EndpointRef)
            and any(r.prompt is not None for r in requests)
        ):
            raise UsageError(
                f"{ref.raw} is a chat endpoint, but lm-eval sent plain-text prompts.",
                "Pass --apply_chat_template, or use the server's completions API: "
                "add ?api=text to the reference.",
            )
        return requests

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        ours = self._requests(requests)
        texts = self._loop.run(self._generate_all(ours, disable_tqdm or self.rank != 0))
        for instance, text in zip(requests, texts, strict=True):
            self.cache_hook.add_partial("generate_until", instance.args, text)
        return texts

    async def _generate_all(self, requests: list[Request], quiet: bool) -> list[str]:
        from tqdm import tqdm

        with tqdm(total=len(requests), desc=f"harness {self.checkpoint}", disable=quiet) as bar:

            async def one(request: Request) -> str:
                sent = replace(request, settings=backend_settings(self.reasoning, request.settings))
                completion = await self._batcher.submit(sent)
                bar.update(1)
                return answer_for_lm_eval(self.reasoning, completion, request.settings.stop)

            return list(await asyncio.gather(*(one(r) for r in requests)))

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        raise NotImplementedError(_NO_LOGLIKELIHOOD)

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError(_NO_LOGLIKELIHOOD)

    def close(self) -> None:
        """Close the adapter and its event loop. lm-eval has no close hook for models, so the launcher
        and an exit handler call this for every model still open."""
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.run(self._opened.adapter.aclose())
        finally:
            self._loop.stop()


_OPEN_MODELS: weakref.WeakSet[HarnessLM] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for model in list(_OPEN_MODELS):
        model.close()


def register() -> None:
    """Make `--model harness` known to lm-eval (idempotent)."""
    # lm-eval fills its built-in table only while the registry is empty: fill it first, or registering
    # ours would hide hf, vllm and the rest.
    import lm_eval.models  # noqa: F401

    if MODEL_NAME not in model_registry:
        model_registry.register(MODEL_NAME, target=HarnessLM)


def main(argv: Sequence[str] | None = None) -> None:
    """lm-eval's CLI with the "harness" model type registered; arguments are lm-eval's own."""
    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    # Run under this module's real name, not __main__, so lm-eval sees one HarnessLM class.
    from harness.bridges import lm_eval_model

    lm_eval_model.register()
    try:
        cli_evaluate()
    except HarnessError as error:  # our own errors are for people: no traceback, the harness's exit codes
        print(f"error: {error.message}", file=sys.stderr)
        raise SystemExit(int(error.exit_code)) from None
    finally:
        lm_eval_model._close_all()


if __name__ != "__main__":
    register()

if __name__ == "__main__":
    main()
