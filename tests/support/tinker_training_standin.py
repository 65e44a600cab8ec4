"""An in-process STAND-IN for Tinker's training service (the real one cannot be reached from tests).

It speaks the installed SDK's own types: it takes `tinker.Datum` / `ModelInput` / `TensorData` /
`AdamParams` and answers with `tinker.ForwardBackwardOutput`, `OptimStepResponse`, `SaveWeightsResponse`,
`SaveWeightsForSamplerResponse`, `SampleResponse` / `SampledSequence`; its methods copy the signatures of
`ServiceClient.create_lora_training_client` / `create_training_client_from_state` /
`create_sampling_client` / `close`, of `TrainingClient.forward_backward` / `forward_backward_custom` /
`optim_step` / `save_state` / `save_weights_for_sampler` / `save_weights_and_get_sampling_client` /
`get_info`, and of `SamplingClient.sample` / `compute_logprobs` / `get_base_model`, and
tests/unit/test_tinker_training.py checks them with `inspect.signature`.

The "model" is small but real: a bigram table of logits (previous token -> next token, the previous
token hashed into a few rows), initialized from the base model's name, so every log-probability, loss,
DPO margin and PPO ratio is a number computed by torch. forward_backward computes the loss the docs
give for `cross_entropy` (-sum(logprob * weight)), `importance_sampling` and `ppo` (token sums, ppo's
ratio clipped to the loss_fn_config thresholds), with autograd; forward_backward_custom does what the SDK
does (a forward pass, the caller's loss on logprob tensors, then a linear surrogate with weights =
-dLoss/dlogprob); optim_step is torch's AdamW with the AdamParams given (Tinker documents its Adam as
identical to torch.optim.AdamW). A new LoRA starts equal to the base model (LoRA's B matrix starts at
zero). Saved states, sampler weights and sampling clients are frozen copies of the table.

Sampling: the *text* of each sample comes from `responder(prompt_text, index)` (so tests control the
rewards), tokenized, cut at max_tokens or ended with the first stop token id; its logprobs are the
snapshot model's own log-probabilities of those tokens, as a sampler's would be.

Every call is recorded (`TrainingStandin.calls`, `.optim_steps`, `SamplingStandin.calls`,
`ServiceStandin.created`) so tests can assert the exact data, loss names, configs and Adam parameters.
Not modelled: chunking, queueing, rate limits, server-side validation beyond the checks below, billing.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future as ConcurrentFuture
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import tinker
import torch
import torch.nn.functional as F

Responder = Callable[[str, int], str]
ROWS = 16  # bigram rows: the previous token id modulo ROWS
REQUIRED_INPUTS = {
    "cross_entropy": {"target_tokens", "weights"},
    "importance_sampling": {"target_tokens", "logprobs", "advantages"},
    "ppo": {"target_tokens", "logprobs", "advantages"},
}
CONFIG_KEYS = {
    "cross_entropy": set(),
    "importance_sampling": set(),
    "ppo": {"clip_low_threshold", "clip_high_threshold"},
}
PPO_DEFAULT = (0.8, 1.2)  # the docs: clipping "currently fixed to 0.2" when no thresholds are given


class Done(tinker.APIFuture[Any]):
    """A future that is already resolved (value or error), or never resolves (`hang=True`)."""

    def __init__(self, value: Any = None, error: BaseException | None = None, hang: bool = False) -> None:
        self._value, self._error, self._hang = value, error, hang

    async def result_async(self, timeout: float | None = None) -> Any:
        async with asyncio.timeout(timeout):
            if self._hang:
                await asyncio.Event().wait()
            if self._error is not None:
                raise self._error
            return self._value

    def result(self, timeout: float | None = None) -> Any:
        if self._hang:
            raise TimeoutError("the stand-in never answers")
        if self._error is not None:
            raise self._error
        return self._value

    def future(self) -> ConcurrentFuture[Any]:
        raise NotImplementedError("the stand-in is async-only")


class BigramModel:
    """logprob(next | previous) = log_softmax(table[previous % ROWS])[next]."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = torch.nn.Parameter(table.clone())

    @classmethod
    def for_base(cls, base_model: str, vocab_size: int) -> BigramModel:
        seed = int.from_bytes(hashlib.sha256(base_model.encode()).digest()[:4], "little")
        generator = torch.Generator().manual_seed(seed)
        return cls(torch.randn(ROWS, vocab_size, generator=generator) * 0.5)

    def copy(self) -> BigramModel:
        return BigramModel(self.table.detach())

    def logprobs(self, inputs: Sequence[int], targets: Sequence[int]) -> torch.Tensor:
        rows = torch.tensor([int(t) % ROWS for t in inputs], dtype=torch.long)
        logits = F.log_softmax(self.table[rows], dim=-1)
        return logits.gather(1, torch.tensor([int(t) for t in targets], dtype=torch.long)[:, None])[:, 0]

    def sequence_logprobs(self, tokens: Sequence[int]) -> list[float | None]:
        """compute_logprobs: None for the first token, then each token given the one before."""
        with torch.no_grad():
            values = self.logprobs(tokens[:-1], tokens[1:]).tolist() if len(tokens) > 1 else []
        return [None, *[float(v) for v in values]]


@dataclass
class SampleCall:
    prompt: tinker.ModelInput
    num_samples: int
    sampling_params: tinker.SamplingParams
    prompt_text: str


@dataclass
class SamplingStandin:
    """`tinker.SamplingClient` over a frozen copy of a model."""

    model: BigramModel
    base_model: str
    tokenizer: Any
    responder: Responder
    path: str | None = None
    calls: list[SampleCall] = field(default_factory=list)
    logprob_calls: list[list[int]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def get_base_model(self) -> str:
        return self.base_model

    def sample(
        self,
        prompt: tinker.ModelInput,
        num_samples: int,
        sampling_params: tinker.SamplingParams,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
        topk_sample_logprobs: int = 0,
        target_prompt_logprobs: tinker.TensorData | None = None,
        prompt_alt_tokens_k: int = 0,
        prompt_logprobs_last_n: int | None = None,
    ) -> Done:
        assert isinstance(prompt, tinker.ModelInput) and isinstance(sampling_params, tinker.SamplingParams)
        text = self.tokenizer.decode(prompt.to_ints())
        self.calls.append(SampleCall(prompt, num_samples, sampling_params, text))
        sequences = [
            self._sequence(prompt.to_ints(), self.responder(text, i), sampling_params)
            for i in range(num_samples)
        ]
        return Done(tinker.SampleResponse(sequences=sequences))

    def _sequence(
        self, prompt: list[int], text: str, params: tinker.SamplingParams
    ) -> tinker.SampledSequence:
        stop = params.stop
        stop_ids = [s for s in (stop or []) if isinstance(s, int)] if not isinstance(stop, str) else []
        tokens = list(self.tokenizer.encode(text, add_special_tokens=False))
        limit = params.max_tokens if params.max_tokens is not None else 1 << 30
        reason: Literal["length", "stop"] = "stop"
        if len(tokens) >= limit:
            tokens, reason = tokens[:limit], "length"
        elif stop_ids:
            tokens.append(stop_ids[0])
        logprobs = self.model.sequence_logprobs(prompt + tokens)[len(prompt) :]
        return tinker.SampledSequence(
            stop_reason=reason,
            sequence_id=f"seq-{next(self._ids)}",
            tokens_np=np.array(tokens, dtype=np.int32),
            logprobs_np=np.array(logprobs, dtype=np.float32),
        )

    def compute_logprobs(self, prompt: tinker.ModelInput, prompt_logprobs_last_n: int | None = None) -> Done:
        tokens = prompt.to_ints()
        self.logprob_calls.append(tokens)
        return Done(self.model.sequence_logprobs(tokens))


@dataclass
class Call:
    """One forward_backward / forward_backward_custom as the service saw it."""

    kind: str
    data: list[tinker.Datum]
    loss_fn: str
    loss_fn_config: Mapping[str, float | str] | None
    logprobs: list[list[float]]  # what the forward pass computed, per datum (before this step's update)
    loss: float
    custom_metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainingStandin:
    """`tinker.TrainingClient` over a BigramModel."""

    service: ServiceStandin
    run_id: str
    base_model: str
    rank: int
    seed: int | None
    model: BigramModel
    from_state: str | None = None
    hang: set[str] = field(default_factory=set)  # method names that never answer
    calls: list[Call] = field(default_factory=list)
    optim_steps: list[tinker.AdamParams] = field(default_factory=list)
    saved: list[str] = field(default_factory=list)
    samplers: list[SamplingStandin] = field(default_factory=list)
    _optimizer: torch.optim.AdamW | None = None

    # -- gradients ---------------------------------------------------------------------------------

    def _check(self, data: Sequence[tinker.Datum], required: set[str], allowed: set[str]) -> None:
        for index, datum in enumerate(data):
            assert isinstance(datum, tinker.Datum), type(datum)
            keys = set(datum.loss_fn_inputs)
            if not required <= keys or not keys <= allowed:
                raise ValueError(f"datum {index}: loss_fn_inputs {sorted(keys)}; expected {sorted(required)}")
            for key, tensor in datum.loss_fn_inputs.items():
                if len(tensor.tolist()) != datum.model_input.length:
                    raise ValueError(
                        f"datum {index}: {key} has {len(tensor.tolist())} entries for "
                        f"{datum.model_input.length} input tokens"
                    )

    def _forward(self, data: Sequence[tinker.Datum]) -> list[torch.Tensor]:
        return [
            self.model.logprobs(
                d.model_input.to_ints(), [int(t) for t in d.loss_fn_inputs["target_tokens"].tolist()]
            )
            for d in data
        ]

    @staticmethod
    def _outputs(logprobs: Sequence[torch.Tensor]) -> list[dict[str, tinker.TensorData]]:
        return [{"logprobs": tinker.TensorData.from_torch(lp.detach().float())} for lp in logprobs]

    def forward_backward(
        self,
        data: list[tinker.Datum],
        loss_fn: Any,
        loss_fn_config: Mapping[str, float | str] | None = None,
    ) -> Done:
        if "forward_backward" in self.hang:
            return Done(hang=True)
        if loss_fn not in REQUIRED_INPUTS:
            raise ValueError(f"the stand-in does not model the loss {loss_fn!r}")
        if set(loss_fn_config or {}) - CONFIG_KEYS[loss_fn]:
            raise ValueError(f"Invalid loss_fn_config keys for {loss_fn}: {sorted(loss_fn_config or {})}")
        required = REQUIRED_INPUTS[loss_fn]
        self._check(data, required, required)
        logprobs = self._forward(data)
        total = torch.zeros(())
        for datum, lp in zip(data, logprobs, strict=True):
            inputs = {
                k: v.to_torch().float() for k, v in datum.loss_fn_inputs.items() if k != "target_tokens"
            }
            if loss_fn == "cross_entropy":
                total = total - (lp * inputs["weights"]).sum()
                continue
            ratio = torch.exp(lp - inputs["logprobs"])
            advantages = inputs["advantages"]
            if loss_fn == "importance_sampling":
                total = total - (ratio * advantages).sum()
            else:
                config = loss_fn_config or {}
                low = float(config.get("clip_low_threshold", PPO_DEFAULT[0]))
                high = float(config.get("clip_high_threshold", PPO_DEFAULT[1]))
                clipped = torch.clamp(ratio, low, high)
                total = total - torch.min(ratio * advantages, clipped * advantages).sum()
        total.backward()  # type: ignore[no-untyped-call]
        self.calls.append(
            Call(
                "forward_backward",
                list(data),
                loss_fn,
                loss_fn_config,
                [lp.detach().tolist() for lp in logprobs],
                float(total.detach()),
            )
        )
        return Done(
            tinker.ForwardBackwardOutput(
                loss_fn_output_type="ArrayRecord",
                loss_fn_outputs=self._outputs(logprobs),
                metrics={"loss:sum": float(total.detach())},
            )
        )

    def forward_backward_custom(
        self,
        data: list[tinker.Datum],
        loss_fn: Any,
        *,
        loss_type_input: Literal["logprobs"] | None = None,
    ) -> Done:
        if "forward_backward_custom" in self.hang:
            return Done(hang=True)
        self._check(data, {"target_tokens"}, {"target_tokens", "weights"})
        logprobs = self._forward(data)
        leaves = [lp.detach().clone().requires_grad_(True) for lp in logprobs]  # as the SDK hands them over
        loss, metrics = loss_fn(list(data), leaves)
        loss.backward()
        surrogate = torch.zeros(())
        for lp, leaf in zip(logprobs, leaves, strict=True):
            assert leaf.grad is not None
            surrogate = surrogate - (lp * (-leaf.grad)).sum()  # cross_entropy with weights = -dL/dlogprob
        surrogate.backward()  # type: ignore[no-untyped-call]
        self.calls.append(
            Call(
                "forward_backward_custom",
                list(data),
                "custom",
                None,
                [lp.detach().tolist() for lp in logprobs],
                float(loss.detach()),
                dict(metrics),
            )
        )
        return Done(
            tinker.ForwardBackwardOutput(
                loss_fn_output_type="TorchLossReturn",
                loss_fn_outputs=self._outputs(logprobs),
                metrics={
                    **metrics,
                    "loss:sum": float(loss.detach()),
                    "surrogate_loss:sum": float(surrogate.detach()),
                },
            )
        )

    def optim_step(
        self,
        optim_params: tinker.AdamParams | None = None,
        *,
        adam_params: tinker.AdamParams | None = None,
    ) -> Done:
        if "optim_step" in self.hang:
            return Done(hang=True)
        params = optim_params if optim_params is not None else adam_params
        assert isinstance(params, tinker.AdamParams), type(params)
        if self._optimizer is None:
            self._optimizer = torch.optim.AdamW([self.model.table])
        for group in self._optimizer.param_groups:
            group.update(
                lr=params.learning_rate,
                betas=(params.beta1, params.beta2),
                eps=params.eps,
                weight_decay=params.weight_decay,
            )
        self._optimizer.step()
        self._optimizer.zero_grad()
        self.optim_steps.append(params)
        return Done(tinker.OptimStepResponse(metrics={}))

    # -- checkpoints and samplers ------------------------------------------------------------------

    def save_state(
        self,
        name: str,
        ttl_seconds: int | None = None,
        overwrite: bool = False,
        user_metadata: dict[str, str] | None = None,
    ) -> Done:
        path = f"tinker://{self.run_id}/weights/{name}"
        self.service.states[path] = (self.model.copy(), self.base_model, self.rank)
        self.saved.append(path)
        return Done(tinker.types.SaveWeightsResponse(path=path))

    def save_weights_for_sampler(
        self,
        name: str,
        ttl_seconds: int | None = None,
        user_metadata: dict[str, str] | None = None,
    ) -> Done:
        path = f"tinker://{self.run_id}/sampler_weights/{name}"
        self.service.sampler_weights[path] = (self.model.copy(), self.base_model)
        self.saved.append(path)
        return Done(tinker.types.SaveWeightsForSamplerResponse(path=path))

    def save_weights_and_get_sampling_client(
        self,
        name: str | None = None,
        retry_config: Any = None,
        record_stability_info: bool = False,
        kind: Any = "snapshot",
    ) -> Done:
        sampler = self.service.sampler(self.model.copy(), self.base_model)
        self.samplers.append(sampler)
        return Done(sampler)

    def get_info(self) -> tinker.types.GetInfoResponse:
        return tinker.types.GetInfoResponse(
            model_data=tinker.types.ModelData(model_name=self.base_model),
            model_id=self.run_id,
            is_lora=True,
            lora_rank=self.rank,
            model_name=self.base_model,
        )


@dataclass
class ServiceStandin:
    """`tinker.ServiceClient` stand-in. `mode`: "ok", "hang" (creating anything never completes) or
    "not-found" (a state or sampler path the service does not know)."""

    tokenizer: Any
    vocab_size: int
    responder: Responder = lambda prompt, index: "ok"
    mode: str = "ok"
    created: list[TrainingStandin] = field(default_factory=list)
    created_with: list[dict[str, Any]] = field(default_factory=list)
    states: dict[str, tuple[BigramModel, str, int]] = field(default_factory=dict)
    sampler_weights: dict[str, tuple[BigramModel, str]] = field(default_factory=dict)
    closed: list[str] = field(default_factory=list)
    _runs: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def sampler(self, model: BigramModel, base_model: str, path: str | None = None) -> SamplingStandin:
        return SamplingStandin(model, base_model, self.tokenizer, self.responder, path)

    def _new_client(
        self, base_model: str, rank: int, seed: int | None, model: BigramModel, from_state: str | None
    ) -> Done:
        if self.mode == "hang":
            return Done(hang=True)
        client = TrainingStandin(
            self, f"standin-run-{next(self._runs)}", base_model, rank, seed, model, from_state
        )
        self.created.append(client)
        return Done(client)

    def create_lora_training_client(
        self,
        base_model: str,
        rank: int = 32,
        seed: int | None = None,
        train_mlp: bool = True,
        train_attn: bool = True,
        train_unembed: bool = True,
        user_metadata: dict[str, str] | None = None,
        optimizer: Any = None,
    ) -> Done:
        self.created_with.append(
            {"method": "create_lora_training_client", "base_model": base_model, "rank": rank, "seed": seed}
        )
        return self._new_client(
            base_model, rank, seed, BigramModel.for_base(base_model, self.vocab_size), None
        )

    def create_training_client_from_state(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None,
        optimizer: Any = None,
    ) -> Done:
        self.created_with.append({"method": "create_training_client_from_state", "path": path})
        if self.mode == "hang":
            return Done(hang=True)
        if path not in self.states:
            return Done(error=tinker.TinkerError(f"training state {path} not found"))
        model, base, rank = self.states[path]
        return self._new_client(base, rank, None, model.copy(), path)

    def create_sampling_client(
        self,
        model_path: str | None = None,
        base_model: str | None = None,
        retry_config: Any = None,
        record_stability_info: bool = False,
    ) -> Done:
        self.created_with.append(
            {"method": "create_sampling_client", "model_path": model_path, "base_model": base_model}
        )
        if self.mode == "hang":
            return Done(hang=True)
        if model_path is not None:
            if model_path not in self.sampler_weights:
                return Done(error=tinker.TinkerError(f"sampler weights {model_path} not found"))
            model, base = self.sampler_weights[model_path]
            return Done(self.sampler(model.copy(), base, model_path))
        assert base_model is not None
        return Done(self.sampler(BigramModel.for_base(base_model, self.vocab_size), base_model))

    def close(self, status: Literal["success", "errored", "interrupted"], detail: str | None = None) -> Done:
        self.closed.append(status)
        return Done(None)


def standin_factory(service: ServiceStandin) -> Callable[[], ServiceStandin]:
    """A replacement for `adapters.tinker_service.service_client_factory`."""
    return lambda: service
