"""Planning a run's generation: which unfinished samples need which requests, what the response cache
already answers, and one request per distinct key (two samples asking the same thing share a response).
`Answers` then tracks the responses as they arrive and says which samples each one completes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from harness.types import Completion, Request, Sample


@dataclass(frozen=True)
class GenerationPlan:
    samples: Mapping[str, Sample]  # the unfinished samples by id, in data order
    requests: Mapping[str, tuple[Request, ...]]  # each unfinished sample's requests, by sample id
    cached: Mapping[str, Completion]  # request key -> the response the cache already holds
    to_generate: tuple[Request, ...]  # what the cache lacks, one request per key, in first-asked order
    waiting_on: Mapping[str, tuple[str, ...]]  # key in to_generate -> ids of the samples it completes, sorted

    @property
    def answered_by_cache(self) -> tuple[str, ...]:
        """Samples whose every request the cache answered (they need no generation), in data order."""
        return tuple(
            sample_id
            for sample_id, requests in self.requests.items()
            if all(r.key() in self.cached for r in requests)
        )


def plan_generation(
    samples: Sequence[Sample],
    finished_ids: Collection[str],
    requests_for: Callable[[Sample], Sequence[Request]],
    lookup: Callable[[str], Completion | None] | None,
) -> GenerationPlan:
    """`lookup(key)` asks the response cache (None: no cache); it is asked at most once per key that it
    answers, so counting its hits counts each cached response once."""
    pending = [s for s in samples if s.id not in finished_ids]
    requests = {s.id: tuple(requests_for(s)) for s in pending}  # every sample's requests before any lookup
    cached: dict[str, Completion] = {}
    if lookup is not None:
        for request in (r for reqs in requests.values() for r in reqs):
            key = request.key()
            if key not in cached and (hit := lookup(key)) is not None:
                cached[key] = hit
    to_generate: dict[str, Request] = {}
    waiting_on: dict[str, set[str]] = defaultdict(set)
    for sample_id, reqs in requests.items():
        for request in reqs:
            if (key := request.key()) not in cached:
                to_generate.setdefault(key, request)
                waiting_on[key].add(sample_id)
    return GenerationPlan(
        samples={s.id: s for s in pending},
        requests=requests,
        cached=cached,
        to_generate=tuple(to_generate.values()),
        waiting_on={key: tuple(sorted(ids)) for key, ids in waiting_on.items()},
    )


class Answers:
    """The responses a plan has so far: the cached ones, then each generated one as it arrives."""

    def __init__(self, plan: GenerationPlan) -> None:
        self._plan = plan
        self._by_key: dict[str, Completion] = dict(plan.cached)
        self._waiting = dict(plan.waiting_on)

    def add(self, key: str, completion: Completion) -> list[str]:
        """Records a generated response; returns the samples it completed (sorted by id)."""
        self._by_key[key] = completion
        return [
            sample_id
            for sample_id in self._waiting.pop(key, ())
            if all(r.key() in self._by_key for r in self._plan.requests[sample_id])
        ]

    def completions_for(self, sample_id: str) -> list[Completion]:
        return [self._by_key[r.key()] for r in self._plan.requests[sample_id]]
