"""Price tables, per-request cost, the pending-request estimate and the --max-cost check."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from harness.checkpoints import parse_checkpoint
from harness.data import resolve_data_source
from harness.errors import ExitCode, UsageError
from harness.pricing import (
    BUILTIN_PRICES,
    CostEstimate,
    Price,
    SuiteEstimate,
    check_budget,
    estimate_cost,
    load_price_table,
    pending_requests,
    with_estimates,
)
from harness.runner import EvalSpec, record_for, run_dir_for
from harness.runs.cache import ResponseCache
from harness.runs.store import SAMPLES, SamplesFile
from harness.suite import SuiteOptions
from harness.types import ApiKind, Completion, Request, Score
from suites import get_suite


def test_builtin_prices_and_cost() -> None:
    table = load_price_table(None)
    qwen = table.lookup("Qwen/Qwen3-8B")
    assert qwen is not None and (qwen.prompt, qwen.sample) == (0.195, 0.60)
    assert table.lookup("qwen/qwen3-8b") == qwen  # model ids are matched case-insensitively
    assert table.lookup("meta-llama/Llama-3.2-1B") is None  # not on the published list: no guessed price
    assert qwen.cost(1_000_000, 1_000_000) == pytest.approx(0.795)
    assert qwen.cost(1234, 56) == pytest.approx((1234 * 0.195 + 56 * 0.60) / 1e6)
    assert all(p >= 0 and s >= p for p, s in BUILTIN_PRICES.values())  # sampling never cheaper than prefill


def test_user_table_overrides_and_extends(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"meta-llama/Llama-3.2-1B": {"prompt": 0.03, "sample": 0.09},
                                "Qwen/Qwen3-8B": {"prompt": 1, "sample": 2}}))  # fmt: skip
    table = load_price_table(str(path))
    assert table.lookup("meta-llama/Llama-3.2-1B") == Price(0.03, 0.09, source=str(path))
    assert table.lookup("Qwen/Qwen3-8B") == Price(1.0, 2.0, source=str(path))
    assert table.lookup("openai/gpt-oss-20b") == Price(0.18, 0.45)  # built-ins stay


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not valid JSON (line 1"),
        ("[]", "the top level must be a non-empty JSON object"),
        ('{"m": 3}', "field 'm' must be an object"),
        ('{"m": {"prompt": 1}}', "field 'm.sample' is missing"),
        ('{"m": {"prompt": 1, "sample": 2, "train": 3}}', "field 'm.train' is not known"),
        ('{"m": {"prompt": -1, "sample": 2}}', "field 'm.prompt' must be a number of USD >= 0, not -1"),
        (
            '{"m": {"prompt": "0.1", "sample": 2}}',
            "field 'm.prompt' must be a number of USD >= 0, not \"0.1\"",
        ),
        ('{"m": {"prompt": 1, "sample": true}}', "field 'm.sample' must be a number of USD >= 0, not true"),
        ('{"m": {"prompt": NaN, "sample": 1}}', "field 'm.prompt' must be a number of USD >= 0, not NaN"),
    ],
)
def test_bad_price_table_names_file_and_field(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(UsageError) as info:
        load_price_table(str(path))
    assert info.value.exit_code == ExitCode.USAGE
    assert f"The price table {path}: {expected}" in info.value.message
    assert '"prompt"' in info.value.message  # the hint shows the expected format


def test_missing_price_table_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_price_table(str(tmp_path / "nope.json"))


def _estimate(usd_prompt: float, usd_sample: float) -> CostEstimate:
    price = Price(1.0, 2.0)
    return CostEstimate(
        "Qwen/Qwen3-8B",
        price,
        (SuiteEstimate("gsm8k", 3, int(usd_prompt * 1e6), 0, usd_prompt),
         SuiteEstimate("ifeval", 2, 0, int(usd_sample * 5e5), usd_sample)),
    )  # fmt: skip


def test_check_budget_refuses_above_the_limit_with_the_estimate() -> None:
    estimate = _estimate(0.25, 0.5)
    check_budget(estimate, None, "tinker:x")  # no limit
    check_budget(estimate, 0.75, "tinker:x")  # exactly at the limit is allowed
    with pytest.raises(UsageError) as info:
        check_budget(estimate, 0.7, "tinker:x")
    message = info.value.message
    assert info.value.exit_code == ExitCode.USAGE
    assert message.startswith(
        "Refusing to start: the estimated cost is at most $0.7500 for 5 pending requests"
    )
    assert "upper bound" in message and "--max-cost is $0.7" in message


def test_check_budget_notes_unpriced_backends(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="harness.pricing"):
        check_budget(None, 0.01, "llama.cpp:embedded")
    assert "--max-cost is not applied: llama.cpp:embedded has no per-token prices" in caplog.text


FAKE_PRICE = Price(0.5, 2.0)


class FakePriced:
    """A priced adapter whose prompt tokens are characters: the estimate's arithmetic is checkable."""

    api: ApiKind = "chat"

    def __init__(self, price: Price | None = FAKE_PRICE) -> None:
        self.preflights = 0
        self._price = price

    def identity(self) -> str:
        return "fake:priced"

    async def preflight(self) -> None:
        self.preflights += 1

    def price(self) -> Price | None:
        return self._price

    def priced_model(self) -> str:
        return "fake/model"

    def count_prompt_tokens(self, request: Request) -> int:
        assert request.messages is not None
        return sum(len(m.content) for m in request.messages)


class Unpriced:
    api: ApiKind = "chat"

    def identity(self) -> str:
        raise AssertionError("the estimate must not touch an unpriced adapter")

    async def preflight(self) -> None:
        raise AssertionError("the estimate must not load an unpriced model")


def _spec(tmp_path: Path, data_dir: Path, limit: int = 3, n: int = 1) -> EvalSpec:
    suite = get_suite("gsm8k", SuiteOptions())
    settings = replace(suite.default_settings(), n=n)
    return EvalSpec(parse_checkpoint("tinker-base:fake/model"), suite, settings, limit,
                    resolve_data_source(str(data_dir)), tmp_path)  # fmt: skip


def test_estimate_counts_only_pending_requests(tmp_path: Path, data_dir: Path) -> None:
    spec = _spec(tmp_path, data_dir, limit=3, n=2)
    adapter = FakePriced()
    pending = pending_requests(spec, "chat", adapter.identity())
    assert len(pending) == 3
    estimate = asyncio.run(estimate_cost(adapter, [spec]))
    assert estimate is not None and adapter.preflights == 1
    prompt = sum(adapter.count_prompt_tokens(r) for r in pending)
    assert estimate.suites[0].prompt_tokens == prompt
    assert estimate.suites[0].max_sampled_tokens == 3 * 512 * 2  # max_tokens x n for each request
    assert estimate.usd == pytest.approx((prompt * 0.5 + 3 * 512 * 2 * 2.0) / 1e6)

    # A sample finished in the run and a response in the cache are not pending any more.
    loaded = spec.suite.load(spec.data, spec.limit)
    first, second = loaded.samples[0], loaded.samples[1]
    run_dir = run_dir_for(spec)
    run_dir.mkdir(parents=True)
    reqs = spec.suite.requests(first, spec.settings, "chat")
    done = Completion(texts=("a", "b"), finish_reasons=("stop", "stop"))
    SamplesFile(run_dir / SAMPLES).append(record_for(first, reqs, [done], Score(values={"x": 1.0})))
    cache = ResponseCache(tmp_path / ".cache" / "responses.sqlite")
    cache.put(adapter.identity(), spec.suite.requests(second, spec.settings, "chat")[0].key(), done)
    cache.close()
    assert len(pending_requests(spec, "chat", adapter.identity())) == 1
    assert len(pending_requests(spec, "chat", "another:adapter")) == 2  # the cache is per adapter
    assert len(pending_requests(replace(spec, use_cache=False), "chat", adapter.identity())) == 2
    assert len(pending_requests(replace(spec, fresh=True, use_cache=False), "chat", adapter.identity())) == 3


def test_nothing_pending_never_contacts_the_adapter(tmp_path: Path, data_dir: Path) -> None:
    spec = _spec(tmp_path, data_dir, limit=1)
    adapter = FakePriced()
    loaded = spec.suite.load(spec.data, spec.limit)
    run_dir_for(spec).mkdir(parents=True)
    reqs = spec.suite.requests(loaded.samples[0], spec.settings, "chat")
    done = Completion(texts=("a",), finish_reasons=("stop",))
    SamplesFile(run_dir_for(spec) / SAMPLES).append(
        record_for(loaded.samples[0], reqs, [done], Score({"x": 1}))
    )
    estimate = asyncio.run(estimate_cost(adapter, [spec], require_price=True))
    assert estimate is not None and estimate.usd == 0 and adapter.preflights == 0


def test_unpriced_adapters_and_unknown_models(tmp_path: Path, data_dir: Path) -> None:
    spec = _spec(tmp_path, data_dir, limit=2)
    assert asyncio.run(estimate_cost(Unpriced(), [spec], require_price=True)) is None
    assert asyncio.run(estimate_cost(FakePriced(price=None), [spec])) is None
    with pytest.raises(
        UsageError, match=r"No price is known for the Tinker model 'fake/model'.*--price-table"
    ):
        asyncio.run(estimate_cost(FakePriced(price=None), [spec], require_price=True))


def test_each_suite_records_its_share(tmp_path: Path, data_dir: Path) -> None:
    specs = [_spec(tmp_path, data_dir, limit=2), _spec(tmp_path, data_dir, limit=1)]
    estimate = asyncio.run(estimate_cost(FakePriced(), specs))
    assert estimate is not None
    shares = [s.cost_estimate_usd for s in with_estimates(specs, estimate)]
    assert shares == [round(s.usd, 6) for s in estimate.suites] and shares[0] > shares[1] > 0
    assert with_estimates(specs, None) == specs
