"""Token prices, per-request cost, and the pre-run cost estimate behind `--max-cost`.

Prices are USD per 1M tokens, two numbers per base model: prompt (Tinker calls it "prefill") and
sampled tokens. The built-in table holds the published Tinker prices; `--price-table FILE` adds or
overrides models with a JSON object `{"MODEL": {"prompt": USD, "sample": USD}}`.

Only adapters that can price their own requests take part (the `Priced` protocol: today the Tinker
adapter). For every other backend `--max-cost` is not applied and the CLI says so: local models cost
nothing per token, and an endpoint's price is unknown to the harness. The estimate never builds a model
for those backends: it is skipped before any request is looked at.

The estimate is an upper bound: every pending request's prompt tokens at the prompt price plus
`max_tokens x n` at the sample price, as if every response ran to the limit. Requests already answered
by the run's samples file or the response cache are not pending and cost nothing.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from harness.errors import UsageError
from harness.types import ApiKind, Request

if TYPE_CHECKING:
    from harness.runner import EvalSpec

log = logging.getLogger("harness.pricing")
PER_TOKENS = 1_000_000

# Tinker sampling prices, USD per 1M tokens: (prompt/prefill, sample). Source: the "Models & Pricing"
# page of the Tinker docs (tinker-docs.thinkingmachines.ai/tinker/models/), prices effective 2026-07-17,
# as transcribed by public price trackers read in 2026-10 (not checked against the live page from this
# machine, which has no internet). Prompt tokens served from Tinker's prefix cache are billed 80% lower;
# the harness charges the full prompt price, so its numbers err high. The page lists no Llama models;
# give their prices with --price-table (see README).
BUILTIN_PRICES: Mapping[str, tuple[float, float]] = {
    "thinkingmachines/Inkling": (1.87, 4.68),
    "thinkingmachines/Inkling:peft:262144": (3.74, 9.36),
    "nvidia/NVIDIA-Nemotron-3-Ultra-550B-A55B-BF16": (2.49, 6.225),
    "nvidia/NVIDIA-Nemotron-3-Ultra-550B-A55B-BF16:peft:262144": (3.32, 8.30),
    "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-BF16": (0.57, 1.44),
    "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-BF16:peft:262144": (0.76, 1.92),
    "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16": (0.195, 0.495),
    "moonshotai/Kimi-K2.6": (2.205, 5.49),
    "moonshotai/Kimi-K2.6:peft:131072": (5.15, 12.81),
    "Qwen/Qwen3.6-35B-A3B": (0.54, 1.335),
    "Qwen/Qwen3.6-27B": (1.86, 5.595),
    "Qwen/Qwen3.5-397B-A17B": (3.00, 7.50),
    "Qwen/Qwen3.5-397B-A17B:peft:262144": (4.00, 10.00),
    "Qwen/Qwen3.5-35B-A3B-Base": (0.54, 1.335),
    "Qwen/Qwen3.5-9B": (0.66, 1.995),
    "Qwen/Qwen3.5-9B-Base": (0.66, 1.995),
    "Qwen/Qwen3.5-4B": (0.33, 1.005),
    "Qwen/Qwen3-8B": (0.195, 0.60),
    "openai/gpt-oss-120b": (0.33, 0.84),
    "openai/gpt-oss-120b:peft:131072": (0.78, 1.94),
    "openai/gpt-oss-20b": (0.18, 0.45),
    "deepseek-ai/DeepSeek-V3.1": (1.695, 4.215),
}
BUILTIN_SOURCE = "built-in (Tinker docs, effective 2026-07-17)"
TABLE_FORMAT = (
    "Expected a JSON object mapping each base model to its USD prices per 1M tokens, e.g. "
    '{"meta-llama/Llama-3.2-1B": {"prompt": 0.03, "sample": 0.09}}.'
)


@dataclass(frozen=True)
class Price:
    prompt: float  # USD per 1M prompt (prefill) tokens
    sample: float  # USD per 1M sampled tokens
    source: str = BUILTIN_SOURCE

    def cost(self, prompt_tokens: int, sampled_tokens: int) -> float:
        return (prompt_tokens * self.prompt + sampled_tokens * self.sample) / PER_TOKENS


@dataclass(frozen=True)
class PriceTable:
    prices: Mapping[str, Price]

    def lookup(self, model: str) -> Price | None:
        if model in self.prices:
            return self.prices[model]
        folded = {name.lower(): price for name, price in self.prices.items()}
        return folded.get(model.lower())


def builtin_table() -> PriceTable:
    return PriceTable({name: Price(p, s) for name, (p, s) in BUILTIN_PRICES.items()})


def _bad_table(path: Path, problem: str) -> UsageError:
    return UsageError(f"The price table {path}: {problem}.", TABLE_FORMAT)


def _usd(path: Path, field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise _bad_table(path, f"field '{field}' must be a number of USD >= 0, not {json.dumps(value)}")
    return float(value)


def load_price_table(path: str | None) -> PriceTable:
    """The built-in prices, overridden and extended by the user's JSON file when one is given."""
    table = dict(builtin_table().prices)
    if path is None:
        return PriceTable(table)
    file = Path(path).expanduser()
    try:
        payload = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _bad_table(file, "the file does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise _bad_table(file, f"the file cannot be read ({error})") from None
    except json.JSONDecodeError as error:
        raise _bad_table(file, f"not valid JSON (line {error.lineno}: {error.msg})") from None
    if not isinstance(payload, dict) or not payload:
        raise _bad_table(file, "the top level must be a non-empty JSON object")
    for model, entry in payload.items():
        if not isinstance(entry, dict):
            raise _bad_table(file, f"field '{model}' must be an object with 'prompt' and 'sample'")
        unknown = sorted(set(entry) - {"prompt", "sample"})
        if unknown:
            raise _bad_table(file, f"field '{model}.{unknown[0]}' is not known (use 'prompt' and 'sample')")
        for key in ("prompt", "sample"):
            if key not in entry:
                raise _bad_table(file, f"field '{model}.{key}' is missing")
        table[model] = Price(
            _usd(file, f"{model}.prompt", entry["prompt"]),
            _usd(file, f"{model}.sample", entry["sample"]),
            source=str(file),
        )
    return PriceTable(table)


@runtime_checkable
class Priced(Protocol):
    """An adapter that knows what its requests cost. `price`, `priced_model` and
    `count_prompt_tokens` are valid after `preflight()`."""

    api: ApiKind

    def identity(self) -> str: ...

    async def preflight(self) -> None: ...

    def price(self) -> Price | None:
        """The price of the model behind the adapter; None when no table lists it."""
        ...

    def priced_model(self) -> str:
        """The model name the price is looked up by (a Tinker base model)."""
        ...

    def count_prompt_tokens(self, request: Request) -> int: ...


@dataclass(frozen=True)
class SuiteEstimate:
    suite: str
    requests: int  # pending requests (not in the samples file or the response cache)
    prompt_tokens: int
    max_sampled_tokens: int  # sum of max_tokens x n
    usd: float


@dataclass(frozen=True)
class CostEstimate:
    model: str
    price: Price
    suites: tuple[SuiteEstimate, ...]

    @property
    def usd(self) -> float:
        return sum(s.usd for s in self.suites)

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.suites)

    def describe(self) -> str:
        prompt = sum(s.prompt_tokens for s in self.suites)
        sampled = sum(s.max_sampled_tokens for s in self.suites)
        return (
            f"at most ${self.usd:.4f} for {self.requests} pending requests on {self.model} "
            f"({prompt:,} prompt tokens x ${self.price.prompt}/1M + up to {sampled:,} sampled tokens "
            f"x ${self.price.sample}/1M; prices from {self.price.source}). This is an upper bound: it "
            "assumes every response runs to max_tokens"
        )


def pending_requests(spec: EvalSpec, api: ApiKind, identity: str) -> list[Request]:
    """The requests `evaluate(spec)` would send: not finished in the run, not in the response cache."""
    from harness.runner import run_dir_for
    from harness.runs.cache import ResponseCache
    from harness.runs.store import SAMPLES, SamplesFile

    loaded = spec.suite.load(spec.data, spec.limit)
    samples_path = run_dir_for(spec) / SAMPLES
    done = set() if spec.fresh else {r.id for r in SamplesFile(samples_path).load(repair=False).records}
    unique: dict[str, Request] = {}
    for sample in loaded.samples:
        if sample.id not in done:
            for request in spec.suite.requests(sample, spec.settings, api):
                unique.setdefault(request.key(), request)
    cache_path = spec.runs_root / ".cache" / "responses.sqlite"
    if spec.use_cache and cache_path.exists() and unique:
        cache = ResponseCache(cache_path)
        try:
            unique = {k: r for k, r in unique.items() if cache.get(identity, k) is None}
        finally:
            cache.close()
    return list(unique.values())


async def estimate_cost(
    adapter: object, specs: Sequence[EvalSpec], require_price: bool = False
) -> CostEstimate | None:
    """Upper bound on what this invocation will spend; None for adapters without prices (and for a
    model missing from the price table, unless `require_price`: then that is a UsageError).

    The adapter is only contacted (preflight: for Tinker, the sampling session and the tokenizer) when
    some request is actually pending, so a fully cached re-run still works offline.
    """
    if not isinstance(adapter, Priced):
        return None
    identity = adapter.identity()
    pending = [(spec, pending_requests(spec, adapter.api, identity)) for spec in specs]
    if not any(requests for _, requests in pending):
        return CostEstimate("", Price(0.0, 0.0, "nothing pending"), tuple(
            SuiteEstimate(spec.suite.name, 0, 0, 0, 0.0) for spec in specs
        ))  # fmt: skip
    await adapter.preflight()
    price = adapter.price()
    if price is None:
        if not require_price:
            return None
        raise UsageError(
            f"No price is known for the Tinker model '{adapter.priced_model()}', so --max-cost cannot "
            "bound what this run spends.",
            "Give its USD prices per 1M tokens in a JSON file and pass --price-table FILE, e.g. "
            f'{{"{adapter.priced_model()}": {{"prompt": 0.03, "sample": 0.09}}}} (check the current '
            "prices on the Tinker models page).",
        )
    suites = []
    for spec, requests in pending:
        prompt = sum(adapter.count_prompt_tokens(r) for r in requests)
        sampled = sum(r.settings.max_tokens * r.settings.n for r in requests)
        suites.append(
            SuiteEstimate(spec.suite.name, len(requests), prompt, sampled, price.cost(prompt, sampled))
        )
    return CostEstimate(adapter.priced_model(), price, tuple(suites))


def check_budget(estimate: CostEstimate | None, max_cost: float | None, adapter_identity: str) -> None:
    """Refuse to start (UsageError, exit 2) when the upper bound exceeds --max-cost."""
    if max_cost is None:
        return
    if estimate is None:
        log.warning(
            "--max-cost is not applied: %s has no per-token prices (only Tinker checkpoints are priced).",
            adapter_identity,
        )
        return
    if estimate.usd > max_cost:
        raise UsageError(
            f"Refusing to start: the estimated cost is {estimate.describe()}; --max-cost is ${max_cost:g}.",
            "Lower --limit, --max-tokens or --samples, or raise --max-cost.",
        )


def with_estimates(specs: Sequence[EvalSpec], estimate: CostEstimate | None) -> list[EvalSpec]:
    """Each suite's spec carries its share of the estimate, recorded in its run manifest."""
    if estimate is None:
        return list(specs)
    return [
        replace(spec, cost_estimate_usd=round(share.usd, 6))
        for spec, share in zip(specs, estimate.suites, strict=True)
    ]
