"""Tinker: `tinker://RUN/sampler_weights/ID` (a sampler checkpoint) and `tinker-base:MODEL` (a base model).

Requests go through the official SDK's `SamplingClient`, created with
`ServiceClient().create_sampling_client(model_path=... | base_model=...)`. Chat messages become tokens
through the model's renderer; the renderer's stop sequences end each turn and its `parse_response`
turns the sampled tokens back into text. `n > 1` is ONE request with `num_samples=n`. Up to
`concurrency` requests are in flight (default 64).

Renderers: a minimal layer with tinker-cookbook's interface (`build_generation_prompt`,
`get_stop_sequences`, `parse_response`) and token-for-token the same prompts as its `llama3`,
`qwen3`, `qwen3_instruct`, `qwen3_disable_thinking` and `role_colon` renderers (checked against
tinker-cookbook 0.5.8 on GSM8K/IFEval/Alice prompts; the Qwen3 ones fit any ChatML tokenizer). Why not tinker-cookbook itself: 0.6.x needs
`tml-renderers>=0.4.1`, which the package index here lacks; 0.5.8 installs, but pins
`transformers<=5.5.4`, and with that pin in the environment transformers converts the embedded
model's GGUF tokenizer wrongly (every space and newline becomes <|endoftext|>; 5.23 converts it
right), which breaks `hf:`/`export-hf` for everyone who installs the tinker extra. tml-renderers
0.2.1 has no Llama-3 renderer and brings its own tokenizers.

Renderer choice: `HARNESS_TINKER_RENDERER` if set; else `llama3` for `meta-llama/*` (tinker-cookbook
recommends `role_colon` for base Llama checkpoints; the suites are chat-formatted and every Llama-3
tokenizer has the chat tokens, so the harness uses the Llama-3 chat format; set the variable to
`role_colon` for a model trained with that renderer); `qwen3_instruct` for `Qwen/*-Instruct-2507`,
`role_colon` for `Qwen/*-Base`, else `qwen3` for `Qwen/*`. The tokenizer comes from the Hugging Face
hub (Llama-3 from Tinker's ungated copy, as tinker-cookbook does), or from a local folder named by
`HARNESS_TINKER_TOKENIZER` (offline machines).

Reasoning: a request whose thinking budget is 0 on the `qwen3` renderer is rendered with
`qwen3_disable_thinking` (tinker-cookbook's pair for hybrid Qwen3 models: an empty think block ends the
prompt); its cache key differs (the budget is in the settings), so identity() keeps the configured renderer.
A budget > 0 is inside max_tokens (Tinker has no separate thinking limit). The thinking that the renderer
leaves out of the text (`<think>...</think>` of a finished turn) is kept as the completion's reasoning, and
a prompt that ends inside an open think tag marks it `opened_in_prompt`.

Accounting per request: prompt tokens = the prompt's `ModelInput.length`; completion tokens = the sum
of the sampled sequences' lengths; `cost_usd` from harness.pricing (built-in Tinker prices, or
`--price-table`). Without credentials the factory fails before any work; an unreachable service fails
after the connect timeout instead of blocking (the SDK otherwise retries for minutes). The service
client, the credentials check, the deadlines and the mapping of the SDK's errors are shared with the
training backend: adapters/tinker_service.py.

Log-probabilities: every `SampledSequence` carries its sampled tokens' `logprobs` (nothing extra is asked
for); with GenerationSettings.logprobs they are placed in the text by decoding the tokens with the
tokenizer (adapters/logprobs.py). A chat text the renderer rebuilt (thinking left out) is not the decoded
tokens, so it gets none.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from adapters import tinker_service
from adapters.common import truncate_at_stop
from adapters.logprobs import from_token_ids, token_cap
from adapters.options import opens_thinking
from adapters.tinker_renderers import (
    RENDERER_ENV,
    Renderer,
    load_tokenizer,
    renderer_name_for,
)
from adapters.tinker_service import (
    CLOSE_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    check_credentials,
    close_session,
    endpoint_error,
    in_daemon_thread,
    within,
)
from harness.checkpoints import TinkerBaseRef, TinkerRef
from harness.errors import EndpointError
from harness.pricing import Price, PriceTable, load_price_table
from harness.types import ApiKind, Completion, Request, TokenLogprobs

if TYPE_CHECKING:
    from adapters.options import AdapterOptions

log = logging.getLogger("harness.tinker")
T = TypeVar("T")

DEFAULT_CONCURRENCY = 64
THINKING_OFF_RENDERER = "qwen3_disable_thinking"  # for thinking budget 0 on `qwen3` (tinker-cookbook's name)
PROMPT_TAIL_TOKENS = 16  # decoded to see whether a prompt ends inside an open think tag
# After "Check the network...": creating a session waits at most CONNECT_TIMEOUT_S, capped by --timeout.
TIMEOUT_ADVICE = (
    f"if it is only slow, raise --timeout (creating a session waits at most {CONNECT_TIMEOUT_S:g} s)."
)


class TinkerAdapter:
    api: ApiKind = "chat"
    batch_size = 1  # one request per generate() call; the runner keeps `concurrency` of them in flight

    def __init__(
        self,
        ref: TinkerRef | TinkerBaseRef,
        *,
        prices: PriceTable,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout_s: float = 600.0,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        service_factory: Callable[[], Any] | None = None,
        think_open_tag: str = "<think>",
    ) -> None:
        self.ref = ref
        self.think_open_tag = think_open_tag
        self._thinking_off: Renderer | None = None
        self.concurrency = max(1, concurrency)
        self.timeout_s = timeout_s
        self.connect_timeout_s = min(connect_timeout_s, timeout_s)
        self.prices = prices
        self._service_factory = service_factory or tinker_service.service_client_factory
        self._base_model = ref.model if isinstance(ref, TinkerBaseRef) else None
        # Fixed before connecting: identity() must not change once the run has started. A sampler
        # checkpoint's base model (and so its default renderer) is only known from the service.
        if isinstance(ref, TinkerBaseRef) or os.environ.get(RENDERER_ENV, "").strip():
            self._renderer_name = renderer_name_for(ref.model if isinstance(ref, TinkerBaseRef) else ref.raw)
        else:
            self._renderer_name = "auto"
        self._service: Any = None
        self._client: Any = None
        self._renderer: Renderer | None = None
        self._tokenizer: Any = None
        self._stop: list[int] | list[str] = []
        self._ready: asyncio.Lock | None = None
        self._gate: asyncio.Semaphore | None = None
        self._warned_no_price = False

    def identity(self) -> str:
        return f"tinker:{self.ref.raw}#renderer={self._renderer_name}"

    # -- connection -------------------------------------------------------------------------------

    def _open(self) -> tuple[Any, Any]:
        service = self._service_factory()
        if isinstance(self.ref, TinkerRef):
            return service, service.create_sampling_client(model_path=self.ref.raw)
        return service, service.create_sampling_client(base_model=self.ref.model)

    async def _bounded(self, awaitable: Awaitable[T], deadline: float, what: str) -> T:
        """Await until `deadline` (time.monotonic()); past it, an EndpointError that says what hung."""
        remaining = deadline - time.monotonic()
        return await within(awaitable, remaining, what, TIMEOUT_ADVICE, shown=self._limit(what))

    async def preflight(self) -> None:
        """Create the sampling session and the renderer once; later calls return at once."""
        if self._ready is None:
            self._ready = asyncio.Lock()
        async with self._ready:
            if self._client is not None:
                return
            if self._base_model is not None:
                self._setup_renderer(self._base_model)  # fail on a missing tokenizer before the network
            deadline = time.monotonic() + self.connect_timeout_s
            what = "creating the sampling session"
            try:
                # The SDK connects synchronously inside create_sampling_client (it fetches its config
                # with retries, for minutes when the service is unreachable), so that call runs in a
                # daemon thread: a timeout can then return, and the process can exit.
                service, future = await self._bounded(in_daemon_thread(self._open), deadline, what)
                client = await self._bounded(future, deadline, what)
            except EndpointError:
                raise
            except Exception as error:
                raise endpoint_error(error, what, self.ref.raw) from None
            self._service = service
            base = str(client.get_base_model())
            if self._renderer is None:
                self._setup_renderer(base)
            self._base_model = base
            self._client = client
            if self.price() is None and not self._warned_no_price:
                self._warned_no_price = True
                log.warning(
                    "no price is known for %s; cost_usd is recorded as 0 (add it with --price-table)", base
                )

    def _setup_renderer(self, base_model: str) -> None:
        name = renderer_name_for(base_model) if self._renderer_name == "auto" else self._renderer_name
        self._tokenizer = load_tokenizer(base_model)
        self._renderer = Renderer(name, self._tokenizer)
        self._stop = self._renderer.get_stop_sequences()

    def _ready_renderer(self, request: Request | None = None) -> Renderer:
        """The renderer for `request`: qwen3's disable-thinking twin when its thinking budget is 0."""
        if self._renderer is None:
            raise RuntimeError("TinkerAdapter used before preflight()")
        if request is not None and request.settings.thinking_budget == 0 and self._renderer.name == "qwen3":
            if self._thinking_off is None:
                self._thinking_off = Renderer(THINKING_OFF_RENDERER, self._tokenizer)
            return self._thinking_off
        return self._renderer

    def _limit(self, what: str) -> float:
        return self.connect_timeout_s if what.startswith("creating") else self.timeout_s

    # -- pricing (harness.pricing.Priced) ---------------------------------------------------------

    def priced_model(self) -> str:
        return self._base_model or self.ref.raw

    def price(self) -> Price | None:
        return None if self._base_model is None else self.prices.lookup(self._base_model)

    def count_prompt_tokens(self, request: Request) -> int:
        return int(self._prompt(request).length)

    # -- sampling ---------------------------------------------------------------------------------

    def _prompt(self, request: Request) -> Any:
        import tinker

        if request.messages is not None:
            return self._ready_renderer(request).build_generation_prompt(request.messages)
        return tinker.ModelInput.from_ints(list(self._tokenizer.encode(request.prompt or "")))

    def _params(self, request: Request) -> tuple[Any, tuple[str, ...]]:
        """SamplingParams, and the request's stop strings to apply here (the service cannot mix
        the renderer's stop tokens with stop strings in one list)."""
        import tinker

        s = request.settings
        stop: list[int] | list[str] | None
        local: tuple[str, ...] = ()
        if request.messages is None:
            stop = list(s.stop) or None  # None keeps the model's own end-of-sequence stop
            local = s.stop
        elif s.stop and all(isinstance(x, str) for x in self._stop):
            stop = [*(str(x) for x in self._stop), *s.stop]
        else:
            stop = self._stop
            local = s.stop
        params = tinker.SamplingParams(
            max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p, seed=s.seed, stop=stop
        )
        return params, local

    def _text(
        self, request: Request, tokens: list[int], local_stops: Sequence[str]
    ) -> tuple[str, str | None]:
        """(text, the thinking the renderer left out of it)."""
        reasoning = None
        if request.messages is not None:
            text, reasoning, _ = self._ready_renderer(request).parse_reasoned(tokens)
        else:
            text = str(self._tokenizer.decode(tokens, skip_special_tokens=True))
        return (truncate_at_stop(text, local_stops)[0] if local_stops else text), reasoning

    def _decode(self, tokens: list[int]) -> str:
        return str(self._tokenizer.decode(tokens, skip_special_tokens=True))

    def _opens_thinking(self, request: Request, prompt: Any) -> bool:
        if request.messages is None or not self.think_open_tag:
            return False
        tail = self._tokenizer.decode(list(prompt.to_ints())[-PROMPT_TAIL_TOKENS:])
        return opens_thinking(str(tail), self.think_open_tag)

    def _semaphore(self) -> asyncio.Semaphore:
        if self._gate is None:
            self._gate = asyncio.Semaphore(self.concurrency)
        return self._gate

    async def _sample(self, request: Request) -> Completion:
        prompt = self._prompt(request)
        params, local_stops = self._params(request)
        n = request.settings.n
        async with self._semaphore():
            start = time.perf_counter()
            try:
                response = await self._bounded(
                    self._client.sample(prompt=prompt, num_samples=n, sampling_params=params),
                    time.monotonic() + self.timeout_s,
                    "sampling",
                )
            except EndpointError:
                raise
            except Exception as error:
                raise endpoint_error(error, "sampling", self.ref.raw) from None
            latency = time.perf_counter() - start
        sequences = list(response.sequences)
        if len(sequences) != n:
            raise EndpointError(f"Tinker returned {len(sequences)} sequences for num_samples={n}.", None)
        token_lists = [list(seq.tokens) for seq in sequences]
        prompt_tokens = int(prompt.length)
        completion_tokens = sum(len(t) for t in token_lists)
        price = self.price()
        parsed = [self._text(request, t, local_stops) for t in token_lists]
        reasonings = tuple(reasoning for _, reasoning in parsed)
        logprobs: tuple[TokenLogprobs | None, ...] = ()
        if request.settings.logprobs:
            cap = token_cap(request.settings.max_tokens)
            logprobs = tuple(
                from_token_ids(self._decode, tokens, seq.logprobs, text, cap)
                for tokens, seq, (text, _) in zip(token_lists, sequences, parsed, strict=True)
            )
        return Completion(
            texts=tuple(text for text, _ in parsed),
            finish_reasons=tuple("length" if seq.stop_reason == "length" else "stop" for seq in sequences),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=latency,
            cost_usd=0.0 if price is None else price.cost(prompt_tokens, completion_tokens),
            reasonings=reasonings if any(r is not None for r in reasonings) else (),
            opened_in_prompt=self._opens_thinking(request, prompt),
            logprobs=logprobs if any(lp is not None for lp in logprobs) else (),
        )

    async def generate(self, requests: Sequence[Request]) -> list[Completion]:
        await self.preflight()
        return list(await asyncio.gather(*(self._sample(r) for r in requests)))

    async def aclose(self) -> None:
        service, self._service, self._client = self._service, None, None
        await close_session(service, "success", CLOSE_TIMEOUT_S)


def create_tinker_adapter(ref: TinkerRef | TinkerBaseRef, options: AdapterOptions) -> TinkerAdapter:
    """The registry's factory: credentials and the price table are checked here, before any work."""
    check_credentials()
    prices = load_price_table(options.price_table)
    return TinkerAdapter(
        ref,
        prices=prices,
        concurrency=options.concurrency or DEFAULT_CONCURRENCY,
        timeout_s=options.timeout_s,
        think_open_tag=options.think_open_tag,
    )
