"""The report's efficiency section: latency, throughput, token usage and cost per run, and a paired
comparison of consecutive checkpoints (e.g. SFT vs SFT+DPO) on the same samples.

Per run (`run_efficiency`):
- latency percentiles p50/p90/p99 over requests (each SampleRecord completion is one request);
- tokens per second: completion tokens / latency per request, then its median; and overall, the sum of
  completion tokens over the sum of latencies;
- prompt and completion tokens per sample (a sample's requests summed): mean, p50, p95;
- cost: the sum of the records' cost_usd; None ("no price") when every cost is 0, which is what a backend
  the harness cannot price records (local models, endpoints, a Tinker model missing from the price table);
- cost per point of the primary metric: cost / (100 x primary value); None when the value is 0 or missing
  or the cost is unknown;
- tokens per correct answer: completion tokens summed / the number of correct samples (a 0/1 primary
  per-sample score: those scoring 1; a graded one: the sum of the scores); None when none is correct.

Unmeasured values are None, never 0:
- a request answered by `replay:` or by the response cache carries latency_s 0 (it was never timed), so
  latency and tokens per second use only requests with latency_s > 0; a run answered entirely from the
  cache or a replay file has latency and throughput None (shown "unmeasured");
- a backend that reports no token counts records 0 tokens: token statistics are None when every request
  of the run reports 0 (of that kind).

Parent vs child (`paired_efficiency`): per sample id both runs hold, the difference (b - a) of completion
tokens per sample and of latency per sample (samples with an untimed request drop out of the latency pairs),
each with its 95% interval from harness.gating.paired.paired_delta (a paired bootstrap from 30 pairs with
enough spread, else a small-n interval; `method` names it), and the ratio of the means (b / a).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from harness.gating.paired import pair_by_id, paired_delta
from harness.runs.catalog import SUITE_ORDER, CheckpointView, RunView
from harness.runs.scores import score_key
from harness.runs.store import SampleRecord
from harness.stats import percentile

SamplesOf = Callable[[RunView], Sequence[SampleRecord]]


@dataclass(frozen=True)
class Spread:
    """Mean, median and 95th percentile of a per-sample count."""

    mean: float
    p50: float
    p95: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread | None:
        if not values:
            return None
        return cls(sum(values) / len(values), percentile(values, 0.5) or 0.0, percentile(values, 0.95) or 0.0)


@dataclass(frozen=True)
class RunEfficiency:
    suite: str
    checkpoint: str
    samples: int
    requests: int
    timed: int  # requests with a measured latency (not from replay or the cache)
    latency_p50: float | None  # seconds per request; None: unmeasured
    latency_p90: float | None
    latency_p99: float | None
    tokens_per_s: float | None  # median over timed requests of completion tokens / latency
    tokens_per_s_overall: float | None  # sum of completion tokens / sum of latencies (timed requests)
    prompt_tokens: Spread | None  # per sample; None: the backend reported no prompt tokens
    completion_tokens: Spread | None  # per sample; None: the backend reported no completion tokens
    cost_usd: float | None  # None: no price (every request cost 0)
    primary: str
    primary_value: float | None
    cost_per_point: float | None  # USD per percentage point of the primary metric
    correct: float  # samples scoring 1 on the primary per-sample score (graded: the sum of the scores)
    tokens_per_correct: float | None

    @property
    def latency_measured(self) -> bool:
        return self.timed > 0


def _tokens(record: SampleRecord, kind: str) -> int:
    return sum(int(getattr(c, kind)) for c in record.completions)


def _correct(primary: str, records: Sequence[SampleRecord]) -> float:
    found = score_key(primary, records)
    if found is None:
        return 0.0
    return float(sum(r.scores[found[0]] for r in records))


def run_efficiency(
    suite: str,
    checkpoint: str,
    primary: str,
    primary_value: float | None,
    records: Sequence[SampleRecord],
) -> RunEfficiency:
    """The efficiency numbers of one run's records (module doc); `primary_value` is the run's primary
    metric as a fraction (0.5 = 50 points)."""
    requests = [c for r in records for c in r.completions]
    timed = [c for c in requests if c.latency_s > 0]
    latencies = [c.latency_s for c in timed]
    reported = any(c.completion_tokens > 0 for c in requests)
    speeds = [c.completion_tokens / c.latency_s for c in timed] if reported else []
    total_time = sum(latencies)
    overall = sum(c.completion_tokens for c in timed) / total_time if reported and total_time > 0 else None
    completion = [float(_tokens(r, "completion_tokens")) for r in records]
    prompt = [float(_tokens(r, "prompt_tokens")) for r in records]
    total_cost = sum(c.cost_usd for c in requests)
    cost = total_cost if total_cost > 0 else None
    per_point = cost / (100 * primary_value) if cost is not None and primary_value else None
    correct = _correct(primary, records)
    return RunEfficiency(
        suite=suite,
        checkpoint=checkpoint,
        samples=len(records),
        requests=len(requests),
        timed=len(timed),
        latency_p50=percentile(latencies, 0.5),
        latency_p90=percentile(latencies, 0.9),
        latency_p99=percentile(latencies, 0.99),
        tokens_per_s=percentile(speeds, 0.5),
        tokens_per_s_overall=overall,
        prompt_tokens=Spread.of(prompt) if any(prompt) else None,
        completion_tokens=Spread.of(completion) if reported else None,
        cost_usd=cost,
        primary=primary,
        primary_value=primary_value,
        cost_per_point=per_point,
        correct=correct,
        tokens_per_correct=sum(completion) / correct if reported and correct > 0 else None,
    )


def of_run(checkpoint: str, run: RunView, records: Sequence[SampleRecord]) -> RunEfficiency:
    metric = run.primary_metric()
    return run_efficiency(
        run.suite, checkpoint, run.primary, None if metric is None else metric.value, records
    )


@dataclass(frozen=True)
class PairedStat:
    """b - a over the paired samples, with its 95% interval and how it was made, and mean(b) / mean(a)."""

    n: int
    mean_a: float
    mean_b: float
    delta: float
    ci_low: float | None  # None: no interval (e.g. one pair)
    ci_high: float | None
    method: str
    ratio: float | None  # None when mean(a) is 0


def paired_stat(a: Mapping[str, float], b: Mapping[str, float]) -> PairedStat | None:
    """The paired statistics of per-sample values keyed by sample id; None when no id is in both."""
    ids, xs, ys = pair_by_id(a, b)
    if not ids:
        return None
    result = paired_delta(xs, ys)

    def finite(value: float) -> float | None:
        return None if math.isnan(value) else value

    return PairedStat(
        n=result.n,
        mean_a=result.mean_a,
        mean_b=result.mean_b,
        delta=result.delta,
        ci_low=finite(result.ci_low),
        ci_high=finite(result.ci_high),
        method=result.method,
        ratio=result.mean_b / result.mean_a if result.mean_a else None,
    )


def completion_tokens_by_id(records: Sequence[SampleRecord]) -> dict[str, float]:
    """Completion tokens per sample; empty when the backend reported none (every request 0)."""
    if not any(c.completion_tokens > 0 for r in records for c in r.completions):
        return {}
    return {r.id: float(_tokens(r, "completion_tokens")) for r in records}


def latency_by_id(records: Sequence[SampleRecord]) -> dict[str, float]:
    """Seconds per sample (its requests summed), only for samples whose every request was timed."""
    return {
        r.id: sum(c.latency_s for c in r.completions)
        for r in records
        if r.completions and all(c.latency_s > 0 for c in r.completions)
    }


@dataclass(frozen=True)
class PairedEfficiency:
    suite: str
    a: str  # checkpoint labels: b - a
    b: str
    completion_tokens: PairedStat | None  # None: no common sample with token counts on both sides
    latency: PairedStat | None  # None: no common sample timed on both sides


def paired_efficiency(
    suite: str, a: str, b: str, records_a: Sequence[SampleRecord], records_b: Sequence[SampleRecord]
) -> PairedEfficiency:
    return PairedEfficiency(
        suite=suite,
        a=a,
        b=b,
        completion_tokens=paired_stat(completion_tokens_by_id(records_a), completion_tokens_by_id(records_b)),
        latency=paired_stat(latency_by_id(records_a), latency_by_id(records_b)),
    )


@dataclass(frozen=True)
class EfficiencySection:
    rows: tuple[RunEfficiency, ...]  # per suite, then checkpoint in the report's order
    pairs: tuple[PairedEfficiency, ...]  # consecutive checkpoints, per suite both ran

    @property
    def any_unmeasured(self) -> bool:
        return any(not r.latency_measured for r in self.rows)


def efficiency_section(order: Sequence[CheckpointView], samples: SamplesOf) -> EfficiencySection:
    """Rows per (suite, checkpoint) and the paired comparison of each consecutive pair of checkpoints
    (order[i], order[i + 1]) on each suite both ran."""
    suites: list[str] = []
    for checkpoint in order:
        suites += [s for s in checkpoint.runs if s not in suites]
    suites.sort(key=lambda s: (SUITE_ORDER.index(s) if s in SUITE_ORDER else len(SUITE_ORDER), s))
    rows = tuple(of_run(c.label, c.runs[s], samples(c.runs[s])) for s in suites for c in order if s in c.runs)
    pairs = tuple(
        paired_efficiency(s, a.label, b.label, samples(a.runs[s]), samples(b.runs[s]))
        for a, b in pairwise(order)
        for s in suites
        if s in a.runs and s in b.runs
    )
    return EfficiencySection(rows, pairs)
