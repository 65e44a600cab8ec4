"""A Tinker training run: the SDK clients with every call under a deadline, token accounting, and the
RL policy (training/rl.py's `RlPolicy`) over a TrainingClient. Used by training/tinker_backend.py, whose
docstring says what was and was not run against the real service (nothing was).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapters.tinker_service import (
    CLOSE_TIMEOUT_S,
    call_in_daemon_thread,
    close_session,
    endpoint_error,
    in_daemon_thread,
    within,
)
from harness.errors import EndpointError, UsageError
from harness.types import GenerationSettings, Message
from training.config import RlConfig, TrainRequest
from training.rl import RolloutDatum, SampledCompletion

if TYPE_CHECKING:
    from adapters.tinker_renderers import Renderer

TIMEOUT_ADVICE = "the SDK on its own would keep retrying for minutes."  # after "Check the network..."

# Train prices, USD per 1M tokens, from the same transcription of Tinker's price list as
# harness.pricing's sampling prices (effective 2026-07-17, read 2026-10-07; not checked against the live
# page from this machine). The transcription has no other model's train price.
TRAIN_PRICES: Mapping[str, float] = {"Qwen/Qwen3-8B": 0.44, "thinkingmachines/Inkling": 5.61}


@dataclass(frozen=True)
class Origin:
    """Where a run starts: the Tinker base model (None: ask the service), and the state to load."""

    base_model: str | None
    state_path: str | None
    parent_rank: int | None


@dataclass
class Usage:
    train_tokens: int = 0
    prefill_tokens: int = 0
    sampled_tokens: int = 0

    def cost(self, base_model: str) -> float | None:
        from harness.pricing import load_price_table

        price = load_price_table(None).lookup(base_model)
        train = {k.lower(): v for k, v in TRAIN_PRICES.items()}.get(base_model.lower())
        if (self.train_tokens and train is None) or (
            (self.prefill_tokens or self.sampled_tokens) and price is None
        ):
            return None
        sampling = 0.0 if price is None else price.cost(self.prefill_tokens, self.sampled_tokens)
        return sampling + self.train_tokens * (train or 0.0) / 1_000_000

    def record(self) -> dict[str, int]:
        return {
            "train_tokens": self.train_tokens,
            "prefill_tokens": self.prefill_tokens,
            "sampled_tokens": self.sampled_tokens,
        }


class Session:
    """One training run on the service: the clients, the renderer, every SDK call under a deadline."""

    def __init__(
        self,
        request: TrainRequest,
        origin: Origin,
        factory: Callable[[], Any],
        connect_timeout_s: float,
        operation_timeout_s: float,
    ) -> None:
        self.request, self.origin, self.factory = request, origin, factory
        self.connect_timeout_s, self.operation_timeout_s = connect_timeout_s, operation_timeout_s
        self.usage = Usage()
        self.service: Any = None
        self.client: Any = None
        self.base_model = origin.base_model or ""
        self.renderer: Renderer | None = None
        self.rank = origin.parent_rank if origin.state_path else request.config.lora.rank

    def setup_renderer(self) -> Renderer:
        from adapters.tinker_renderers import Renderer, load_tokenizer, renderer_name_for

        if self.renderer is None:
            self.renderer = Renderer(renderer_name_for(self.base_model), load_tokenizer(self.base_model))
        return self.renderer

    # -- bounded SDK calls -------------------------------------------------------------------------

    async def wait(
        self, awaitable: Awaitable[Any], what: str, limit: float | None = None, shown: float | None = None
    ) -> Any:
        """Await within `limit` seconds; past it, an EndpointError naming the call (and `shown`, the
        limit the user knows, when part of it was spent already)."""
        import tinker

        limit = self.operation_timeout_s if limit is None else limit
        try:
            return await within(awaitable, limit, what, TIMEOUT_ADVICE, shown)
        except (tinker.TinkerError, OSError) as error:
            raise endpoint_error(error, what) from None

    async def call(self, fn: Callable[[], Any], what: str, limit: float | None = None) -> Any:
        """fn() in a daemon thread (SDK calls may block while connecting), then its result awaited."""
        import tinker

        limit = self.operation_timeout_s if limit is None else limit
        try:
            return await call_in_daemon_thread(fn, limit, what, TIMEOUT_ADVICE)
        except (tinker.TinkerError, OSError) as error:
            raise endpoint_error(error, what) from None

    async def submit(self, fn: Callable[[], tuple[Any, Any]], what: str) -> Any:
        """A forward_backward and its optim_step, submitted together in order (as the cookbook does),
        then both awaited; returns the ForwardBackwardOutput."""
        backward, optim = await self.wait(in_daemon_thread(fn), what)
        output = await self.wait(backward, what)
        await self.wait(optim, what)
        return output

    # -- lifecycle ---------------------------------------------------------------------------------

    async def open(self) -> None:
        self.service = await self.call(self.factory, "connecting", self.connect_timeout_s)
        config = self.request.config
        if self.origin.state_path is not None:
            create = functools.partial(self.service.create_training_client_from_state, self.origin.state_path)
            what = f"loading the training state {self.origin.state_path}"
        else:
            create = functools.partial(
                self.service.create_lora_training_client,
                base_model=self.base_model,
                rank=config.lora.rank,
                seed=config.seed,
            )
            what = f"creating a LoRA training client for {self.base_model}"
        self.client = await self.call(create, what, self.connect_timeout_s)
        if not self.base_model:  # a state whose base model nobody recorded: the service knows it
            info = await self.call(self.client.get_info, "asking for the model's info")
            self.base_model = str(info.model_data.model_name or info.model_name)
            self.rank = info.lora_rank or self.rank

    async def sampler(self, what: str) -> Any:
        return await self.call(self.client.save_weights_and_get_sampling_client, what)

    async def finish(self, name: str) -> tuple[str, str]:
        from harness.checkpoints import TinkerRef, parse_checkpoint

        state = await self.call(functools.partial(self.client.save_state, name), "saving the training state")
        saved = await self.call(
            functools.partial(self.client.save_weights_for_sampler, name), "saving the sampler weights"
        )
        try:
            ok = isinstance(parse_checkpoint(str(saved.path)), TinkerRef)
        except UsageError:
            ok = False
        if not ok:
            raise EndpointError(f"Tinker answered with an unexpected sampler path '{saved.path}'.", None)
        return str(saved.path), str(state.path)

    async def close(self, status: str) -> None:
        await close_session(self.service, status, min(CLOSE_TIMEOUT_S, self.connect_timeout_s))


class TinkerPolicy:
    """training/rl.py's RlPolicy on Tinker: samples from the current weights, updates with "ppo"."""

    def __init__(self, session: Session, reference: Any) -> None:
        self.session, self.reference = session, reference
        self.renderer = session.setup_renderer()
        self.current: Any = None  # a sampling client of the current weights (None: stale)
        self._kl: tuple[int, list[list[float]], float] | None = None

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        return list(self.renderer.build_generation_prompt(messages).to_ints())

    async def sample(
        self, prompts: Sequence[Sequence[int]], settings: GenerationSettings
    ) -> list[list[SampledCompletion]]:
        import tinker

        from adapters.common import truncate_at_stop

        if self.current is None:
            self.current = await self.session.sampler("publishing the policy's weights for sampling")
        stops = self.renderer.get_stop_sequences()
        local: tuple[str, ...] = settings.stop
        stop: list[int] | list[str] = stops
        if settings.stop and all(isinstance(s, str) for s in stops):
            stop, local = [*(str(s) for s in stops), *settings.stop], ()
        params = tinker.SamplingParams(
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            seed=settings.seed,
            stop=stop,
        )
        calls = [
            functools.partial(
                self.current.sample,
                prompt=tinker.ModelInput.from_ints(list(p)),
                num_samples=settings.n,
                sampling_params=params,
            )
            for p in prompts
        ]
        responses = await asyncio.gather(*(self.session.call(c, "sampling rollouts") for c in calls))
        out = []
        for prompt, response in zip(prompts, responses, strict=True):
            self.session.usage.prefill_tokens += len(prompt)
            group = []
            for seq in response.sequences:
                tokens, logprobs = list(seq.tokens), seq.logprobs
                if logprobs is None or len(logprobs) != len(tokens):
                    raise EndpointError("Tinker returned sampled tokens without their logprobs.", None)
                self.session.usage.sampled_tokens += len(tokens)
                text = self.renderer.parse_response(tokens)[0]
                text = truncate_at_stop(text, local)[0] if local else text
                finish = "length" if seq.stop_reason == "length" else "stop"
                group.append(
                    SampledCompletion(tuple(tokens), tuple(float(x) for x in logprobs), text, finish)
                )
            out.append(group)
        return out

    async def _kl_penalties(
        self, batch: Sequence[RolloutDatum], kl_coef: float
    ) -> tuple[list[list[float]], float]:
        import tinker

        from training.tinker_recipes import kl_penalties

        if self._kl is None or self._kl[0] != id(batch):  # updates_per_batch > 1 reuse the same batch
            sequences = [tinker.ModelInput.from_ints([*d.prompt_tokens, *d.completion_tokens]) for d in batch]
            base = await asyncio.gather(
                *(
                    self.session.call(
                        functools.partial(self.reference.compute_logprobs, s), "reference logprobs"
                    )
                    for s in sequences
                )
            )
            self.session.usage.prefill_tokens += sum(s.length for s in sequences)
            self._kl = (id(batch), *kl_penalties(batch, base, kl_coef))
        return self._kl[1], self._kl[2]

    async def update(
        self, batch: Sequence[RolloutDatum], config: RlConfig, learning_rate: float
    ) -> Mapping[str, float]:
        from training.tinker_recipes import adam_params, datum_tokens, ppo_loss_config, ppo_stats, rl_data

        client, extra = self.session.client, {}
        penalties = None
        if config.kl_coef > 0:
            penalties, extra["kl_policy_base"] = await self._kl_penalties(batch, config.kl_coef)
        data = rl_data(batch, config, penalties)
        adam = adam_params(learning_rate, self.session.request.config.optim.weight_decay)
        output = await self.session.submit(
            lambda: (
                client.forward_backward(data, loss_fn="ppo", loss_fn_config=ppo_loss_config(config)),
                client.optim_step(adam),
            ),
            "training on the rollouts",
        )
        self.session.usage.train_tokens += sum(datum_tokens(d) for d in data)
        self.current = None  # the weights moved: the next rollouts need a fresh sampler
        return {**ppo_stats(data, batch, output.loss_fn_outputs, config), **extra}
