"""inspect-ai model provider: `inspect eval TASK --model harness/<checkpoint-ref>`.

inspect loads this module through the `inspect_ai` entry-point group (pyproject.toml) on every run, so
it imports only inspect_ai and the light harness modules; the backend loads when the model is created.

inspect splits `--model` on the first "/" only (inspect_ai/model/_model.py, get_model), so every
reference survives as the model name: `harness/http://127.0.0.1:8080/v1#m`, `harness/gguf:/abs/x.gguf`,
`harness/sft:latest`. Model args (`-M key=value`) are AdapterOptions fields plus `runs_dir` (where the
checkpoint registry lives for STAGE:TAG references); see harness.bridges.KNOWN_OPTIONS.

Reasoning models: `-M reasoning=think-tags|auto|field` (and `-M think_open=... -M think_close=...`) split
each response (harness.bridges.reasoning_options): the thinking comes back as a `ContentReasoning` part
and the answer as a `ContentText` part, so scorers read the answer (`output.completion`) and the log shows
both. A response whose thinking never closed has the answer "" and `stop_details` saying so.

Lifecycle: the adapter is built in the constructor (a bad reference or missing extra fails at once),
preflighted on the first generate, and bound to that event loop. inspect does not close models that
`inspect eval` creates, so a run-end hook closes every open adapter; a later run (a memoized model in
`eval_set` or a second `eval()`) reopens it on its own loop.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from inspect_ai.hooks import Hooks, RunEnd, hooks
from inspect_ai.model import (
    ChatCompletionChoice,
    ChatMessage,
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
    Content,
    ContentReasoning,
    ContentText,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    ModelUsage,
    StopDetails,
    StopReason,
    modelapi,
)
from inspect_ai.tool import ToolChoice, ToolInfo

from harness.batching import RequestBatcher
from harness.bridges import OpenedCheckpoint, cut_at_stop, open_checkpoint
from harness.bridges.reasoning_options import answer_for_peer, backend_settings, reasoning_from_options
from harness.errors import UsageError
from harness.reasoning import NO_REASONING, ReasonedText, ReasoningSpec, split_completion
from harness.types import Completion, GenerationSettings, Message, Request

# inspect leaves max_tokens to the provider when the task and CLI say nothing; its own hf provider
# uses 2048 for evals. Ours is lower: most of our checkpoints are ~1B models on modest hardware.
DEFAULT_MAX_TOKENS = 1024
_TEXT_CONTENT = {"text", "reasoning"}  # reasoning parts of earlier turns are dropped, not sent

_STOP_REASONS: dict[str, StopReason] = {
    "stop": "stop",
    "eos": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "length": "max_tokens",
    "max_tokens": "max_tokens",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
}


def to_messages(input: list[ChatMessage]) -> tuple[Message, ...]:
    """inspect's chat messages -> ours. Tool turns and non-text content have no equivalent: clear errors."""
    messages: list[Message] = []
    for message in input:
        if isinstance(message, ChatMessageTool) or (
            isinstance(message, ChatMessageAssistant) and message.tool_calls
        ):
            raise UsageError(
                "The harness bridge got a tool call or tool result: our backends generate plain text only.",
                "Run this task without tools, or use an inspect provider that supports tool calling.",
            )
        if not isinstance(message.content, str):
            kinds = sorted({part.type for part in message.content} - _TEXT_CONTENT)
            if kinds:
                raise UsageError(
                    f"The harness bridge got a {message.role} message with {', '.join(kinds)} content: "
                    "our backends take text only.",
                    "Use a text-only task with --model harness/...",
                )
        if isinstance(message, ChatMessageSystem):
            messages.append(Message("system", message.text))
        elif isinstance(message, ChatMessageUser):
            messages.append(Message("user", message.text))
        elif isinstance(message, ChatMessageAssistant):
            messages.append(Message("assistant", message.text))
        else:  # pragma: no cover - inspect's ChatMessage union has exactly these four members
            raise UsageError(f"Unsupported chat message role '{message.role}'.", None)
    return tuple(messages)


def to_settings(config: GenerateConfig, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> GenerationSettings:
    """inspect's GenerateConfig -> our GenerationSettings. Unset fields take the harness defaults: greedy,
    top_p 1, seed 0 (reproducible by default, like `harness eval`)."""
    if config.logprobs or config.top_logprobs:
        raise UsageError(
            "The task asks for logprobs, which the harness bridge does not return.",
            "Use a task that scores generated text.",
        )
    return GenerationSettings(
        max_tokens=config.max_tokens if config.max_tokens is not None else default_max_tokens,
        temperature=config.temperature if config.temperature is not None else 0.0,
        top_p=config.top_p if config.top_p is not None else 1.0,
        stop=tuple(config.stop_seqs or ()),
        n=config.num_choices if config.num_choices is not None else 1,
        seed=config.seed if config.seed is not None else 0,
    )


def stop_reason(finish_reason: str) -> StopReason:
    return _STOP_REASONS.get(finish_reason.lower(), "unknown")


# inspect's StopReason literal has no "ended inside reasoning": the backend's reason stays ("max_tokens"
# when it hit the limit) and stop_details says why there is no answer.
ENDED_INSIDE_REASONING = "ended_inside_reasoning"
_ENDED_INSIDE_EXPLANATION = "The response ended inside its reasoning (the thinking never closed): no answer."


def _choice(model: str, part: ReasonedText, reason: str, stops: tuple[str, ...]) -> ChatCompletionChoice:
    """One split response: thinking as ContentReasoning, then the answer (the only text scorers read)."""
    content: list[Content] = [ContentText(text=answer_for_peer(part, stops))]
    if part.reasoning:
        content.insert(0, ContentReasoning(reasoning=part.reasoning))
    return ChatCompletionChoice(
        message=ChatMessageAssistant(content=content, model=model, source="generate"),
        stop_reason=stop_reason(reason),
        stop_details=StopDetails(type=ENDED_INSIDE_REASONING, explanation=_ENDED_INSIDE_EXPLANATION)
        if part.ended_inside_reasoning
        else None,
    )


def to_output(
    model: str,
    identity: str,
    completion: Completion,
    stops: tuple[str, ...],
    reasoning: ReasoningSpec = NO_REASONING,
) -> ModelOutput:
    if reasoning.enabled:
        parts = split_completion(reasoning, completion)
        choices = [
            _choice(model, part, reason, stops)
            for part, reason in zip(parts, completion.finish_reasons, strict=True)
        ]
    else:
        choices = [
            ChatCompletionChoice(
                message=ChatMessageAssistant(
                    content=cut_at_stop(text, stops), model=model, source="generate"
                ),
                stop_reason=stop_reason(reason),
            )
            for text, reason in zip(completion.texts, completion.finish_reasons, strict=True)
        ]
    return ModelOutput(
        model=model,
        choices=choices,
        usage=ModelUsage(
            input_tokens=completion.prompt_tokens,
            output_tokens=completion.completion_tokens,
            total_tokens=completion.prompt_tokens + completion.completion_tokens,
            reasoning_tokens=completion.reasoning_tokens,
            total_cost=completion.cost_usd or None,
        ),
        time=completion.latency_s,
        metadata={"harness_adapter": identity},
    )


class HarnessModelAPI(ModelAPI):
    """Any harness checkpoint reference as an inspect model."""

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig = GenerateConfig(),  # noqa: B008 - inspect's own signature
        **model_args: Any,
    ) -> None:
        super().__init__(model_name=model_name, base_url=base_url, api_key=api_key, config=config)
        if base_url or api_key:
            raise UsageError(
                "--model-base-url / --model-api-key do not apply to --model harness/<reference>.",
                "Put the endpoint in the reference (harness/http://HOST:PORT/v1#MODEL) and name the key's "
                "variable with -M api_key_env=VAR.",
            )
        self._reasoning, self._model_args = reasoning_from_options(model_args, "-M")
        self._opened: OpenedCheckpoint | None = open_checkpoint(model_name, self._model_args, "-M")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batcher: RequestBatcher | None = None
        self._ready_lock: asyncio.Lock | None = None
        _OPEN_MODELS.add(self)
        _register_close_hook()

    def _checkpoint(self) -> OpenedCheckpoint:
        if self._opened is None:  # closed by an earlier run: reopen (cheap; weights load on first use)
            self._opened = open_checkpoint(self.model_name, self._model_args, "-M")
        return self._opened

    async def _ready(self) -> tuple[OpenedCheckpoint, RequestBatcher]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # adapters hold loop-bound clients: one adapter per event loop
            if self._loop is not None:
                self._opened = None
            self._loop, self._batcher, self._ready_lock = loop, None, asyncio.Lock()
        assert self._ready_lock is not None
        async with self._ready_lock:
            opened = self._checkpoint()
            if self._batcher is None:
                await opened.adapter.preflight()
                self._batcher = RequestBatcher(opened.adapter)
        return opened, self._batcher

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        if tools:
            raise UsageError(
                f"The task offers {len(tools)} tool(s), but the harness bridge generates plain text only.",
                "Run this task without tools, or use an inspect provider that supports tool calling.",
            )
        settings = to_settings(config, self.max_tokens() or DEFAULT_MAX_TOKENS)
        sent = backend_settings(self._reasoning, settings)  # stops cut the answer, not the thinking
        request = Request(sample_id=_sample_id(), settings=sent, messages=to_messages(input))
        opened, batcher = await self._ready()
        completion = await batcher.submit(request)
        identity = opened.adapter.identity()
        return to_output(self.model_name, identity, completion, settings.stop, self._reasoning)

    async def aclose(self) -> None:
        opened, same_loop = self._opened, self._loop is not None and self._loop is _running_loop()
        self._opened, self._batcher, self._loop = None, None, None
        if opened is not None and same_loop:
            await opened.adapter.aclose()

    def close(self) -> None:
        # Sync close (a `with model:` block): an async client cannot be closed without its loop; drop it.
        self._opened, self._batcher, self._loop = None, None, None

    def max_tokens(self) -> int | None:
        return DEFAULT_MAX_TOKENS

    def max_connections(self) -> int:
        # Enough samples in flight to fill every batch slot the adapter has; it queues the rest itself.
        adapter = self._checkpoint().adapter
        return max(1, int(adapter.batch_size) * int(adapter.concurrency))

    def collapse_user_messages(self) -> bool:
        return True  # many chat templates require alternating turns

    def canonical_name(self) -> str:
        return self.model_name


def _sample_id() -> str:
    """The inspect sample being generated for (keys `replay:` files and error messages); inspect exposes
    it only through an internal module, so anything unexpected falls back to a constant."""
    try:
        from inspect_ai.log._samples import sample_active

        active = sample_active()
        return "inspect" if active is None or active.sample.id is None else str(active.sample.id)
    except Exception:
        return "inspect"


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_OPEN_MODELS: weakref.WeakSet[HarnessModelAPI] = weakref.WeakSet()


class CloseAdaptersHook(Hooks):
    async def on_run_end(self, data: RunEnd) -> None:
        for model in list(_OPEN_MODELS):
            await model.aclose()


_hook_registered = False


def _register_close_hook() -> None:
    # Registered with the first harness model, not at import: inspect imports this module on every run and
    # would otherwise announce "hooks enabled" on runs that never touch the harness.
    global _hook_registered
    if not _hook_registered:
        hooks(name="harness_bridge", description="Closes harness checkpoint adapters after each run.")(
            CloseAdaptersHook
        )
        _hook_registered = True


@modelapi(name="harness")
def harness() -> type[ModelAPI]:
    return HarnessModelAPI
