"""The `tinker` training backend: SFT, DPO and RLVR on Tinker's servers through the official SDK.

NOTHING HERE HAS BEEN RUN AGAINST THE REAL TINKER SERVICE: the machines this was written on have no
network and no API key. The tests drive it through an in-process stand-in built on the SDK's real types
with the SDK's method signatures (tests/support/tinker_training_standin.py).

The recipes are tinker-cookbook 0.5.8's, rebuilt on the SDK's primitives in training/tinker_recipes.py
(tinker-cookbook itself cannot be installed next to this project, see adapters/tinker.py); the
session (bounded SDK calls, token accounting, the RL policy) is in training/tinker_session.py:

- start: `ServiceClient().create_lora_training_client(base_model, rank=lora.rank, seed=seed)` for
  `tinker-base:MODEL`; for a checkpoint an earlier tinker stage made, `create_training_client_from_state(
  state_path)` (weights only, a fresh optimizer, as the cookbook's `load_checkpoint_path` does), with the
  `tinker_state_path` that stage recorded. A sampler path with no recorded state cannot be trained on.
- SFT (`supervised/train.py`; data as `conversation_to_datum`: all assistant turns, per-example mean
  weights): per step, `forward_backward(batch, loss_fn="cross_entropy")` then
  `optim_step(AdamParams(lr, 0.9, 0.95, 1e-8, weight_decay))` submitted together, lr from the harness
  schedule; logged loss = the batch's mean NLL per trained token from the returned logprobs.
- DPO (`preference/train_dpo.py`): the reference is a sampling client of the start weights
  (`save_weights_and_get_sampling_client()`, before any step), its logprobs from `compute_logprobs`;
  `forward_backward_custom(data, dpo_loss_fn)`; logs loss, accuracy, margin and the two rewards.
- RLVR: training/rl.py's GRPO/DAPO loop over `TinkerPolicy`: rollouts from
  `save_weights_and_get_sampling_client()` (refreshed after every update), `sample(prompt, num_samples,
  SamplingParams(max_tokens, temperature, top_p, seed, stop=renderer stops))`; updates are
  `forward_backward(data, loss_fn="ppo", loss_fn_config={"clip_low_threshold": 1 - clip_low,
  "clip_high_threshold": 1 + clip_high})` with advantages scaled for the aggregation, then `optim_step`.
- end: `save_state(name)` (`tinker://RUN/weights/NAME`, recorded for the next stage) and
  `save_weights_for_sampler(name)` (`tinker://RUN/sampler_weights/NAME`: the new checkpoint reference).

Every SDK call runs in a daemon thread and is awaited under a deadline (creating a client: 120 s, other
calls: `operation_timeout_s`); with a key but no network the SDK alone retries for minutes. The service
client, the credentials check, the daemon thread and the mapping of the SDK's errors are shared with
the sampling adapter, in adapters/tinker_service.py.

Cost: Tinker bills training tokens (every token of every datum sent to forward_backward; a custom loss
sends them twice, for its forward and its backward pass), prompt tokens (sampling prompts and
`compute_logprobs` sequences) and sampled tokens. Prompt and sample prices come from harness.pricing;
the train price from training/tinker_session.py's TRAIN_PRICES (the only two models whose train price
the transcribed price list carries). Without a price for a kind of token that was used, cost_usd is None; the token counts
are recorded either way.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters import tinker_service
from adapters.tinker_service import CONNECT_TIMEOUT_S
from harness.errors import UsageError
from training.backend import StartPoint, StepLog, TrainResult, learning_rate_at, steps_for
from training.config import TrainRequest
from training.data import ChatExample, PreferencePair
from training.prompts import RlPrompt
from training.tinker_session import Origin, Session, TinkerPolicy

if TYPE_CHECKING:
    from adapters.tinker_renderers import Renderer

log = logging.getLogger("harness.tinker.train")

OPERATION_TIMEOUT_S = 1800.0  # one step, save or sampling call (the service may queue work)
START_FORMS = (
    "The tinker backend starts from tinker-base:MODEL (a model Tinker serves, e.g. "
    "tinker-base:meta-llama/Llama-3.2-1B) or from a checkpoint an earlier tinker stage made (its registry "
    "tag such as sft:latest, or its tinker://RUN/sampler_weights/ID)."
)


def resolve_start(start: StartPoint) -> Origin:
    details = start.details
    recorded = details.get("tinker_base_model")
    root = (
        start.base_model.removeprefix("tinker-base:") if start.base_model.startswith("tinker-base:") else None
    )
    if start.reference.startswith("tinker-base:"):
        model = start.reference.removeprefix("tinker-base:")
        if not model:
            raise UsageError("The start point tinker-base: names no model.", START_FORMS)
        return Origin(model, None, None)
    if start.reference.startswith("tinker://"):
        state = details.get("tinker_state_path")
        if not isinstance(state, str) or not re.match(r"^tinker://[^/\s]+/weights/[^/\s]+$", state):
            raise UsageError(
                f"The start point {start.reference} is a sampler checkpoint, and its registry entry records "
                "no Tinker training state (tinker://RUN/weights/ID): Tinker continues training only from a "
                "training state.",
                "Start from a checkpoint made by a tinker stage of this harness (it records "
                "tinker_state_path), or from tinker-base:MODEL.",
            )
        rank = details.get("lora_rank")
        return Origin(str(recorded) if recorded else root, state, rank if isinstance(rank, int) else None)
    raise UsageError(f"The tinker backend cannot start from '{start.reference}'.", START_FORMS)


class TinkerBackend:
    name = "tinker"

    def __init__(
        self,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        operation_timeout_s: float = OPERATION_TIMEOUT_S,
        service_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.operation_timeout_s = operation_timeout_s
        self.service_factory = service_factory

    def check(self, request: TrainRequest, start: StartPoint) -> None:
        from adapters import require_extra

        require_extra("tinker", "tinker", "The tinker training backend")
        origin = resolve_start(start)
        from adapters.tinker_renderers import renderer_name_for

        tinker_service.check_credentials()
        if origin.base_model is not None:
            renderer_name_for(origin.base_model)
        if origin.parent_rank is not None and origin.parent_rank != request.config.lora.rank:
            log.warning(
                "lora.rank %d is ignored: the training state it continues has rank %d",
                request.config.lora.rank,
                origin.parent_rank,
            )

    # -- the three stages --------------------------------------------------------------------------

    def train_sft(
        self,
        request: TrainRequest,
        start: StartPoint,
        examples: Sequence[ChatExample],
        out_dir: Path,
        log: StepLog,
    ) -> TrainResult:
        def prepare(renderer: Renderer) -> list[Any]:
            from training.tinker_recipes import conversation_datum

            max_length = request.config.optim.max_length
            return [conversation_datum(renderer, e.messages, max_length) for e in examples]

        return self._run(
            request, start, out_dir, "cross_entropy", prepare, functools.partial(self._sft, log=log)
        )

    def train_dpo(
        self,
        request: TrainRequest,
        start: StartPoint,
        pairs: Sequence[PreferencePair],
        out_dir: Path,
        log: StepLog,
    ) -> TrainResult:
        def prepare(renderer: Renderer) -> list[Any]:
            from training.tinker_recipes import preference_data

            return [preference_data(renderer, p, request.config.optim.max_length) for p in pairs]

        return self._run(
            request, start, out_dir, "custom (DPO)", prepare, functools.partial(self._dpo, log=log)
        )

    def train_rlvr(
        self,
        request: TrainRequest,
        start: StartPoint,
        prompts: Sequence[RlPrompt],
        out_dir: Path,
        log: StepLog,
    ) -> TrainResult:
        return self._run(
            request,
            start,
            out_dir,
            "ppo",
            lambda renderer: list(prompts),
            functools.partial(self._rlvr, log=log),
        )

    def _run(
        self,
        request: TrainRequest,
        start: StartPoint,
        out_dir: Path,
        loss_fn: str,
        prepare: Callable[[Renderer], list[Any]],
        body: Callable[[Session, list[Any]], Awaitable[tuple[int, int]]],
    ) -> TrainResult:
        """Check, render the data (before anything is created on the service, when the base model is
        known), open the session, train, save both checkpoints, close the session whatever happened."""
        self.check(request, start)
        factory = self.service_factory or tinker_service.service_client_factory
        origin = resolve_start(start)
        session = Session(request, origin, factory, self.connect_timeout_s, self.operation_timeout_s)
        data = prepare(session.setup_renderer()) if session.base_model else None

        async def go() -> TrainResult:
            status = "errored"
            try:
                await session.open()
                items = prepare(session.setup_renderer()) if data is None else data
                steps, examples = await body(session, items)
                sampler_path, state_path = await session.finish(_save_name(out_dir))
                status = "success"
            except (KeyboardInterrupt, asyncio.CancelledError):
                status = "interrupted"
                raise
            finally:
                await session.close(status)
            assert session.renderer is not None
            details = {
                "tinker_base_model": session.base_model,
                "tinker_state_path": state_path,
                "tinker_sampler_path": sampler_path,
                "started_from": session.origin.state_path or start.reference,
                "renderer": session.renderer.name,
                "lora_rank": session.rank,
                "loss_fn": loss_fn,
                **session.usage.record(),
            }
            cost = session.usage.cost(session.base_model)
            (out_dir / "tinker.json").write_text(
                json.dumps({"reference": sampler_path, "cost_usd": cost, **details}, indent=2) + "\n"
            )
            return TrainResult(sampler_path, steps, examples, cost, details)

        return asyncio.run(go())

    async def _sft(self, session: Session, data: list[Any], log: StepLog) -> tuple[int, int]:
        from training.tinker_recipes import adam_params, datum_tokens, mean_nll

        config, client = session.request.config, session.client
        optim = config.optim
        step, seen = 0, 0
        for batch, lr, epoch in _batches(data, config.seed, optim):
            adam = adam_params(lr, optim.weight_decay)
            output = await session.submit(functools.partial(_step, client, batch, adam), "training a step")
            tokens = sum(datum_tokens(d) for d in batch)
            session.usage.train_tokens += tokens
            weights = [d.loss_fn_inputs["weights"] for d in batch]
            nll = mean_nll([o["logprobs"] for o in output.loss_fn_outputs], weights)
            step, seen = step + 1, seen + len(batch)
            log.step(step, loss=nll, learning_rate=lr, epoch=epoch, examples=len(batch), tokens=tokens)
        return step, seen

    async def _dpo(self, session: Session, data: list[Any], log: StepLog) -> tuple[int, int]:
        from training.tinker_recipes import (
            adam_params,
            datum_tokens,
            dpo_loss_fn,
            full_sequence,
            reference_logprobs,
        )

        config, client = session.request.config, session.client
        optim = config.optim
        reference = await session.sampler("creating the reference model's sampler")
        step, seen = 0, 0
        for batch_pairs, lr, epoch in _batches(data, config.seed, optim):
            batch = [d for pair in batch_pairs for d in pair]  # chosen, rejected, chosen, ...
            sequences = [full_sequence(d) for d in batch]
            answers = await asyncio.gather(
                *(
                    session.call(functools.partial(reference.compute_logprobs, s), "reference logprobs")
                    for s in sequences
                )
            )
            session.usage.prefill_tokens += sum(s.length for s in sequences)
            metrics: dict[str, float] = {}
            loss_fn = dpo_loss_fn([reference_logprobs(a) for a in answers], config.dpo.beta, metrics)
            adam = adam_params(lr, optim.weight_decay)
            await session.submit(
                functools.partial(_custom_step, client, batch, loss_fn, adam), "training a step"
            )
            session.usage.train_tokens += 2 * sum(datum_tokens(d) for d in batch)  # forward + backward
            step, seen = step + 1, seen + len(batch_pairs)
            log.step(
                step,
                loss=metrics["dpo_loss"],
                accuracy=metrics["accuracy"],
                margin=metrics["margin"],
                chosen_reward=metrics["chosen_reward"],
                rejected_reward=metrics["rejected_reward"],
                learning_rate=lr,
                epoch=epoch,
                pairs=len(batch_pairs),
            )
        return step, seen

    async def _rlvr(self, session: Session, prompts: list[Any], log: StepLog) -> tuple[int, int]:
        from training.rl import run_grpo

        reference = None
        if session.request.config.rl.kl_coef > 0:  # the start policy, frozen
            reference = await session.sampler("creating the reference policy's sampler")
        summary = await run_grpo(TinkerPolicy(session, reference), prompts, session.request.config, log)
        return summary.steps, summary.completions


def _step(client: Any, batch: list[Any], adam: Any) -> tuple[Any, Any]:
    return client.forward_backward(batch, loss_fn="cross_entropy"), client.optim_step(adam)


def _custom_step(client: Any, batch: list[Any], loss_fn: Any, adam: Any) -> tuple[Any, Any]:
    return client.forward_backward_custom(batch, loss_fn), client.optim_step(adam)


def _batches(items: Sequence[Any], seed: int, optim: Any) -> list[tuple[list[Any], float, int]]:
    """(batch, learning rate, epoch) per optimizer step: each epoch in its own seeded order, batches of
    optim.batch_size (the last one may be short), stopping at steps_for(...)."""
    total = steps_for(len(items), optim.batch_size, optim.epochs, optim.max_steps)
    out: list[tuple[list[Any], float, int]] = []
    for epoch in range(optim.epochs):
        order = list(range(len(items)))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        for begin in range(0, len(order), optim.batch_size):
            if len(out) == total:
                return out
            lr = learning_rate_at(len(out), total, optim.learning_rate, optim.lr_schedule, optim.warmup_steps)
            out.append(([items[i] for i in order[begin : begin + optim.batch_size]], lr, epoch))
    return out


def _save_name(out_dir: Path) -> str:
    """The checkpoint's name (its folder) as a Tinker checkpoint name."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", out_dir.name) or "final"
