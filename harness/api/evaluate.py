"""`harness.evaluate`: score one checkpoint on suites; resumes and reuses cached responses.

    results = harness.evaluate("embedded", suites=["gsm8k"], limit=20)
    results["gsm8k"].metrics["exact_match"].value
    results.metrics_df()

The order of work is the CLI's: resolve the checkpoint (a STAGE:TAG runs as the concrete reference it
names today), build the suites (and a model judge once, when a suite takes one), create the adapter,
estimate and check the cost of the whole invocation before anything generates, evaluate the suites,
close the adapter and the judge. The suites run at once: their requests share one bounded queue
(harness.scheduler), so the server has no idle tail between suites. `harness.evaluate_many` does the
same for several checkpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from harness.checkpoints import CheckpointRef
from harness.data import DataSource, resolve_data_source
from harness.errors import UsageError
from harness.lineage import CheckpointEntry, resolve_checkpoint
from harness.reasoning_stats import ReasoningSummary
from harness.runs.manifest import Invocation
from harness.runs.store import runs_root
from harness.scheduler import RequestQueue, endpoint_key, loads_model_here, run_all, using_queue
from harness.suite import Suite, SuiteOptions
from harness.types import GenerationSettings, Metric

if TYPE_CHECKING:
    import pandas

    from adapters.options import AdapterOptions
    from harness.runner import EvalOutcome, Shard

log = logging.getLogger("harness")
T = TypeVar("T")


@dataclass(frozen=True)
class Generation:
    """What a user may change about a suite's pinned decoding; None keeps the pinned value."""

    seed: int = 0  # sent with every request
    samples: int = 1  # responses per prompt (pass@k); more than 1 samples at temperature 0.8 by default
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None  # for the answer: with reasoning on, the thinking budget comes on top
    thinking_budget: int | None = None  # reasoning runs: tokens of thinking (None: the suite's default)
    logprobs: bool = False  # ask for each generated token's log-probability (calibration)

    def for_suite(self, suite: Suite) -> GenerationSettings:
        """The suite's pinned decoding with these overrides; with reasoning on, max_tokens is the answer's
        budget plus the thinking budget, which is recorded beside it (both are in the settings hash)."""
        settings = self.apply(suite.default_settings())
        if not suite.reasoning.enabled:
            if self.thinking_budget is not None:
                raise UsageError(
                    "A thinking budget was given, but reasoning is off (--reasoning none).",
                    "Pass --reasoning think-tags|auto|field with --thinking-budget, or drop the budget.",
                )
            return settings
        budget = suite.thinking_budget if self.thinking_budget is None else self.thinking_budget
        return replace(settings, max_tokens=settings.max_tokens + budget, thinking_budget=budget)

    def apply(self, pinned: GenerationSettings) -> GenerationSettings:
        temperature = self.temperature
        if temperature is None:  # N identical greedy samples would say nothing about pass@k
            temperature = 0.8 if self.samples > 1 else pinned.temperature
        return replace(
            pinned,
            seed=self.seed,
            n=self.samples,
            temperature=temperature,
            top_p=pinned.top_p if self.top_p is None else self.top_p,
            max_tokens=self.max_tokens or pinned.max_tokens,
            logprobs=self.logprobs,
        )

    @classmethod
    def like(cls, settings: GenerationSettings) -> Generation:
        """The overrides that reproduce `settings` on any suite with the same pins."""
        budget = settings.thinking_budget
        answer_tokens = settings.max_tokens - (budget or 0)
        return cls(
            settings.seed or 0,
            settings.n,
            settings.temperature,
            settings.top_p,
            answer_tokens,
            budget,
            settings.logprobs,
        )


@dataclass(frozen=True)
class SuiteRun:
    """One suite's run of an evaluation: where it is on disk and what it measured."""

    suite: str
    suite_version: str
    run_dir: Path
    n_samples: int
    primary: str
    headline: tuple[str, ...]  # what the CLI prints by default (the primary first)
    metrics: Mapping[str, Metric]
    invocation: Invocation  # this call's counts: generated, cache hits, resumed, retries
    reasoning: ReasoningSummary | None = None  # reasoning runs: ended inside reasoning, thinking tokens

    def primary_value(self) -> float | None:
        metric = self.metrics.get(self.primary)
        return None if metric is None else metric.value

    def to_record(self) -> dict[str, Any]:
        """The JSON `harness eval --json` prints per suite."""
        inv = self.invocation
        return {
            "suite": self.suite,
            "suite_version": self.suite_version,
            "run_dir": str(self.run_dir),
            "n_samples": self.n_samples,
            "primary": self.primary,
            "metrics": {name: m.to_record() for name, m in self.metrics.items()},
            "invocation": {
                "generated": inv.generated,
                "cache_hits": inv.cache_hits,
                "resumed": inv.resumed,
                "retries": inv.retries,
                "repaired_bytes": inv.repaired_bytes,
                "extended_from": inv.extended_from,
            },
            "reasoning": None if self.reasoning is None else self.reasoning.to_record(),
        }


@dataclass(frozen=True)
class EvalResults:
    checkpoint: str  # the concrete reference evaluated (as stored in the runs' manifests)
    runs: tuple[SuiteRun, ...]

    def __getitem__(self, suite: str) -> SuiteRun:
        for run in self.runs:
            if run.suite == suite:
                return run
        raise KeyError(f"no run of suite '{suite}' (suites: {', '.join(r.suite for r in self.runs)})")

    def to_records(self) -> list[dict[str, Any]]:
        return [run.to_record() for run in self.runs]

    def metrics_df(self) -> pandas.DataFrame:
        """One row per (suite, metric): value, stderr, 95% CI, n, primary (fractions, not %)."""
        from harness.api.frames import metrics_frame

        return metrics_frame(self._views())

    def samples_df(self) -> pandas.DataFrame:
        """One row per sample: prompt, target, response, `score.*` and `extracted.*` columns."""
        from harness.api.frames import samples_frame

        return samples_frame(self._views())

    def _views(self) -> list[Any]:
        from harness.runs.catalog import load_run

        return [load_run(run.run_dir) for run in self.runs]


def run_sync(coroutine: Coroutine[Any, Any, T], name: str) -> T:
    """asyncio.run, with a clear error where an event loop already runs (a notebook cell)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    coroutine.close()
    raise UsageError(
        f"harness.{name}() was called where an event loop is already running (a notebook cell?).",
        f"Use `await harness.{name}_async(...)` there.",
    )


def evaluate(
    checkpoint: str,
    suites: Sequence[str] | str | None = None,
    *,
    limit: int | None = None,
    runs: str | Path | None = None,
    data_dir: str | Path | None = None,
    generation: Generation | None = None,
    backend: AdapterOptions | None = None,
    scoring: SuiteOptions | None = None,
    max_cost: float | None = None,
    cache: bool = True,
    fresh: bool = False,
    progress: bool = True,
    shard: Shard | None = None,
) -> EvalResults:
    """Score `checkpoint` (any checkpoint reference, or STAGE:TAG) on `suites` (default: one of each
    benchmark). `limit`: the first N samples of each suite. `runs`: the runs folder (default
    $HARNESS_RUNS_DIR or ./runs). `data_dir`: local upstream data (default $HARNESS_DATA_DIR, else the
    hub). `max_cost`: refuse to start when the cost estimate exceeds this many USD (priced backends).
    `cache=False` neither reads nor writes the response cache; `fresh=True` discards finished samples.
    `progress`: per suite, a bar on stderr when it is a terminal, else a line every
    $HARNESS_PROGRESS_INTERVAL seconds (default 30) or 10% of the suite; False prints nothing.
    `shard`: only that shard of each suite's samples (harness.shards merges the shards of a run)."""
    work = evaluate_async(
        checkpoint, suites, limit=limit, runs=runs, data_dir=data_dir, generation=generation,
        backend=backend, scoring=scoring, max_cost=max_cost, cache=cache, fresh=fresh, progress=progress,
        shard=shard,
    )  # fmt: skip
    return run_sync(work, "evaluate")


async def evaluate_async(
    checkpoint: str,
    suites: Sequence[str] | str | None = None,
    *,
    limit: int | None = None,
    runs: str | Path | None = None,
    data_dir: str | Path | None = None,
    generation: Generation | None = None,
    backend: AdapterOptions | None = None,
    scoring: SuiteOptions | None = None,
    max_cost: float | None = None,
    cache: bool = True,
    fresh: bool = False,
    progress: bool = True,
    shard: Shard | None = None,
) -> EvalResults:
    """`evaluate` for code that already runs an event loop."""
    from suites import build_suites, default_suites

    if limit is not None and limit < 1:
        raise UsageError(f"limit must be at least 1, got {limit}.")
    root = runs_root(None if runs is None else str(runs))
    ref, entry = resolve_checkpoint(checkpoint, root)
    data = resolve_data_source(None if data_dir is None else str(data_dir))
    names = [suites] if isinstance(suites, str) else list(suites or default_suites(data))
    suite_set = build_suites(names, scoring)
    try:
        overrides = generation or Generation()
        plans = [(suite, overrides.for_suite(suite)) for suite in suite_set.suites]
        return await evaluate_suites(
            ref, entry, plans, limit=limit, root=root, data=data, backend=backend, max_cost=max_cost,
            cache=cache, fresh=fresh, progress=progress, shard=shard,
        )  # fmt: skip
    finally:
        await suite_set.aclose()


async def evaluate_suites(
    ref: CheckpointRef,
    entry: CheckpointEntry | None,
    plans: Sequence[tuple[Suite, GenerationSettings]],
    *,
    limit: int | None,
    root: Path,
    data: DataSource,
    backend: AdapterOptions | None = None,
    max_cost: float | None = None,
    cache: bool = True,
    fresh: bool = False,
    progress: bool = False,
    shard: Shard | None = None,
) -> EvalResults:
    """Suite objects with their settings (curation's and training's own prompt suites included) on one
    checkpoint: one adapter for all, the cost of all checked first, every suite at once through one
    request queue (harness.scheduler), the adapter closed at the end."""
    (results,) = await evaluate_prepared(
        [PreparedCheckpoint(ref, entry, tuple(plans), backend)], limit=limit, root=root, data=data,
        max_cost=max_cost, cache=cache, fresh=fresh, progress=progress, shard=shard,
    )  # fmt: skip
    return results


@dataclass(frozen=True)
class PreparedCheckpoint:
    """A resolved checkpoint with its suites built and their settings chosen."""

    ref: CheckpointRef
    entry: CheckpointEntry | None
    plans: tuple[tuple[Suite, GenerationSettings], ...]
    backend: AdapterOptions | None = None


async def evaluate_prepared(
    checkpoints: Sequence[PreparedCheckpoint],
    *,
    limit: int | None,
    root: Path,
    data: DataSource,
    max_cost: float | None = None,
    cache: bool = True,
    fresh: bool = False,
    progress: bool = False,
    shard: Shard | None = None,
) -> list[EvalResults]:
    """Every suite of every checkpoint at once, through one request queue; an adapter per checkpoint, the
    cost of all checked first, every adapter closed at the end. Checkpoints whose model loads into this
    process (harness.scheduler.loads_model_here) take turns instead, each closed before the next."""
    from adapters import create_adapter
    from harness.pricing import check_budget, estimate_cost, with_estimates
    from harness.progress import progress_interval
    from harness.runner import EvalSpec
    from harness.runner import evaluate as evaluate_spec

    if progress:
        progress_interval()  # a bad $HARNESS_PROGRESS_INTERVAL fails before the checkpoint loads
    queue = RequestQueue()
    async with contextlib.AsyncExitStack() as adapters:
        work = []
        for checkpoint in checkpoints:
            lineage = None if checkpoint.entry is None else checkpoint.entry.to_record()
            specs = [
                EvalSpec(checkpoint.ref, suite, settings, limit, data, root, cache, fresh, lineage=lineage,
                         shard=shard)
                for suite, settings in checkpoint.plans
            ]  # fmt: skip
            options = _with_reasoning(checkpoint)
            adapter = create_adapter(checkpoint.ref, options)
            adapters.push_async_callback(adapter.aclose)
            queue.register(adapter, endpoint_key(checkpoint.ref, () if options is None else options.replicas))
            work.append((specs, adapter))
        # The whole invocation is estimated (and refused) before any suite generates anything.
        total = 0.0
        for index, (specs, adapter) in enumerate(work):
            estimate = await estimate_cost(adapter, specs, require_price=max_cost is not None)
            check_budget(estimate, max_cost, adapter.identity())
            if estimate is not None and estimate.requests:
                log.info("cost estimate: %s.", estimate.describe())
            total += 0.0 if estimate is None else estimate.usd
            work[index] = (with_estimates(specs, estimate), adapter)
        if max_cost is not None and len(work) > 1 and total > max_cost:
            raise UsageError(
                f"Refusing to start: the estimated cost of all checkpoints is ${total:.4f}; --max-cost is "
                f"${max_cost:g}.",
                "Evaluate fewer checkpoints at once, lower --limit, --max-tokens or --samples, or raise --max-cost.",
            )

        async def in_turn(group: list[int]) -> list[list[EvalOutcome]]:
            """The checkpoints of `group` one after another (each one's suites at once); a model loaded
            here is freed when its suites are done (closed again at the end: adapters close idempotently)."""
            done = []
            for index in group:
                specs, adapter = work[index]
                done.append(await run_all([evaluate_spec(spec, adapter, progress) for spec in specs]))
                if index in local:
                    await adapter.aclose()
            return done

        # Models loaded into this process take its memory (a GPU's, for vLLM): they take turns, each
        # freed before the next loads. Every other checkpoint runs beside them, all at once.
        local = [i for i, c in enumerate(checkpoints) if loads_model_here(c.ref)]
        groups = [[i] for i in range(len(work)) if i not in local] + ([local] if local else [])
        with using_queue(queue):
            parts = await run_all([in_turn(group) for group in groups])
    outcomes = {
        i: o for group, part in zip(groups, parts, strict=True) for i, o in zip(group, part, strict=True)
    }
    results = []
    for index, (checkpoint, (specs, _)) in enumerate(zip(checkpoints, work, strict=True)):
        done = []
        for spec, outcome in zip(specs, outcomes[index], strict=True):
            suite = spec.suite
            done.append(SuiteRun(
                suite.name, suite.version, outcome.run_dir, outcome.n_samples, suite.primary_metric,
                tuple(suite.headline_metrics), dict(outcome.metrics), outcome.invocation, outcome.reasoning,
            ))  # fmt: skip
        results.append(EvalResults(checkpoint.ref.raw, tuple(done)))
    return results


def _with_reasoning(checkpoint: PreparedCheckpoint) -> AdapterOptions | None:
    """The backend options; local templates mark a prompt that ends inside the reasoning's open tag."""
    reasoning = next((suite.reasoning for suite, _ in checkpoint.plans if suite.reasoning.enabled), None)
    if reasoning is None:
        return checkpoint.backend
    from adapters.options import AdapterOptions

    return replace(checkpoint.backend or AdapterOptions(), think_open_tag=reasoning.open_tag)
