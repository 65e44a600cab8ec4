"""An in-process STAND-IN for the Tinker service (the real one cannot be reached from tests).

It answers with the installed SDK's own types — `tinker.SampleResponse`, `tinker.SampledSequence`, and
it reads the `tinker.ModelInput` / `tinker.SamplingParams` the adapter builds — and its client classes
copy the signatures of `tinker.ServiceClient.create_sampling_client`, `ServiceClient.close` and
`SamplingClient.sample`; tests/unit/test_tinker_adapter.py checks them with `inspect.signature`, so an
SDK change breaks the tests instead of passing unnoticed.

The "model" is deterministic: `responder(prompt_text, sample_index)` returns the text of each sample,
which is tokenized with the test tokenizer; the stand-in then honours `max_tokens` (stop_reason
"length") and stop sequences (token ids or strings) the way a sampler does, appending a stop token id
when the response ends by itself.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from concurrent.futures import Future as ConcurrentFuture
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import tinker

Responder = Callable[[str, int], str]


def echo_last_line(prompt_text: str, index: int) -> str:
    """Default model: repeat the last non-empty line of the rendered prompt, numbered by sample."""
    lines = [line for line in prompt_text.splitlines() if line.strip()]
    return f"sample {index}: {lines[-1] if lines else ''}"


@dataclass
class SampleCall:
    """One `sample()` call as the service would see it."""

    prompt: tinker.ModelInput
    num_samples: int
    sampling_params: tinker.SamplingParams
    prompt_text: str


class StandinFuture(tinker.APIFuture[Any]):
    """An awaitable result, like the SDK's `APIFuture` (async use only)."""

    def __init__(self, awaitable: Any) -> None:
        self._awaitable = awaitable

    async def result_async(self, timeout: float | None = None) -> Any:
        async with asyncio.timeout(timeout):
            return await self._awaitable

    def result(self, timeout: float | None = None) -> Any:
        raise NotImplementedError("the stand-in is async-only")

    def future(self) -> ConcurrentFuture[Any]:
        raise NotImplementedError("the stand-in is async-only")


@dataclass
class StandinSamplingClient:
    base_model: str
    tokenizer: Any
    responder: Responder = echo_last_line
    delay_s: float = 0.0
    calls: list[SampleCall] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
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
    ) -> StandinFuture:
        assert isinstance(prompt, tinker.ModelInput) and isinstance(sampling_params, tinker.SamplingParams)
        text = self.tokenizer.decode(prompt.to_ints())
        self.calls.append(SampleCall(prompt, num_samples, sampling_params, text))
        return StandinFuture(self._run(text, num_samples, sampling_params))

    async def _run(self, prompt_text: str, n: int, params: tinker.SamplingParams) -> tinker.SampleResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
            sequences = [self._sequence(self.responder(prompt_text, i), params) for i in range(n)]
        finally:
            self.in_flight -= 1
        return tinker.SampleResponse(sequences=sequences)

    def _sequence(self, text: str, params: tinker.SamplingParams) -> tinker.SampledSequence:
        stop = params.stop
        stop_strings = [stop] if isinstance(stop, str) else [s for s in (stop or []) if isinstance(s, str)]
        stop_ids = [s for s in (stop or []) if isinstance(s, int)] if not isinstance(stop, str) else []
        for s in stop_strings:  # a stop string ends the sequence where it starts
            if s in text:
                text = text[: text.index(s)]
        tokens = list(self.tokenizer.encode(text, add_special_tokens=False))
        limit = params.max_tokens if params.max_tokens is not None else 1 << 30
        reason: Literal["length", "stop"] = "stop"
        if len(tokens) >= limit:
            tokens, reason = tokens[:limit], "length"
        elif stop_ids:
            tokens.append(stop_ids[0])
        return tinker.SampledSequence(
            stop_reason=reason,
            sequence_id=f"seq-{next(self._ids)}",
            tokens_np=np.array(tokens, dtype=np.int32),
        )


@dataclass
class StandinServiceClient:
    """`tinker.ServiceClient` stand-in. `mode`: "ok", "hang" (create never completes) or "not-found"."""

    sampling_client: StandinSamplingClient
    mode: str = "ok"
    created_with: list[dict[str, Any]] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)

    def create_sampling_client(
        self,
        model_path: str | None = None,
        base_model: str | None = None,
        retry_config: Any = None,
        record_stability_info: bool = False,
    ) -> StandinFuture:
        if model_path is None and base_model is None:
            raise ValueError("Either model_path or base_model must be provided")
        self.created_with.append({"model_path": model_path, "base_model": base_model})
        return StandinFuture(self._create())

    async def _create(self) -> StandinSamplingClient:
        if self.mode == "hang":
            await asyncio.Event().wait()  # like a service that never answers
        if self.mode == "not-found":
            raise tinker.TinkerError("sampler weights not found")
        return self.sampling_client

    def close(
        self, status: Literal["success", "errored", "interrupted"], detail: str | None = None
    ) -> StandinFuture:
        self.closed.append(status)
        return StandinFuture(asyncio.sleep(0))


def standin_factory(service: StandinServiceClient) -> Callable[[], StandinServiceClient]:
    """A replacement for `adapters.tinker_service.service_client_factory`."""
    return lambda: service
